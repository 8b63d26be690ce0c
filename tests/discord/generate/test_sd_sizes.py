"""The size option on Stable Diffusion backends, end to end: each server is offered its own
backend's sizes (autocomplete), may type any size that backend makes, and is refused at once,
naming what is allowed, for any other.

The bot runs against the fake Discord with the default dall-e-2 backend and an AUTOMATIC1111
backend "sd" limited to 1024 px a side; a second bot runs on ComfyUI alone. What the servers
received is read from the fakes' request logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import ProviderSettings, QuotaSettings, Settings
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeDiscord
from bot.testing.harness import (
    Harness,
    a1111_backend,
    comfyui_backend,
    en,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
    synced,
)
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as fake:
        yield fake


@pytest.fixture
async def mixed(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    """dall-e-2 by default; "sd" (AUTOMATIC1111, ``max_side`` 1024) for servers that choose it."""
    backends = {"sd": ProviderSettings(**a1111_backend(a1111, max_side=1024))}
    async with run_bot(fake_discord, fake_images_api, settings_factory(backends=backends)) as h:
        yield h
    assert fake_discord.spec_violations == []


async def use_sd(h: Harness) -> None:
    handle = await h.fake.slash(
        "settings", {"name": "sd"}, subcommand="server-backend", user=h.fake.admin
    )
    message = await handle.wait_message()
    assert message.content.startswith(en(h, "settings.backend.done", backend="sd (automatic1111)"))


async def suggested(h: Harness, command: str, typed: str, **options: Any) -> list[str]:
    handle = await h.fake.autocomplete(command, {**options, "size": typed}, focused="size")
    response = await handle.response()
    assert response.type == 8
    return [choice["value"] for choice in response.data["choices"]]


async def refusal(h: Harness, command: str, options: dict[str, Any]) -> str:
    handle = await h.fake.slash(command, options)
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    return str(response.data["content"])


def bodies(a1111: FakeAutomatic1111, path: str) -> list[dict[str, Any]]:
    return [body for sent, body in a1111.requests if sent.endswith(path)]


# --- what each server is offered ---------------------------------------------------------------


async def test_the_size_option_suggests_each_servers_own_backends_sizes(mixed: Harness) -> None:
    for name in ("imagine", "edit", "vary"):
        size = {o["name"]: o for o in synced(mixed.fake, name)["options"]}["size"]
        assert size.get("autocomplete") and not size.get("choices"), name

    # This server is on dall-e-2: its three sizes, as the choices were.
    assert await suggested(mixed, "imagine", "", prompt="x") == ["256x256", "512x512", "1024x1024"]

    await use_sd(mixed)
    offered = await suggested(mixed, "imagine", "", prompt="x")
    assert offered[:3] == ["512x512", "768x768", "1024x1024"]
    assert "768x512" in offered and "512x768" in offered
    # max_side 1024: nothing with a longer side is suggested.
    assert all(max(int(side) for side in size.split("x")) <= 1024 for size in offered)
    assert "1216x832" not in offered and "256x256" not in offered
    # Those that start with what was typed first, then those that contain it.
    assert await suggested(mixed, "imagine", "76", prompt="x") == ["768x768", "768x512", "512x768"]


async def test_a_valid_typed_size_is_suggested_first_an_invalid_one_not(mixed: Harness) -> None:
    await use_sd(mixed)

    assert (await suggested(mixed, "imagine", "1000x600", prompt="x"))[0] == "1000x600"
    assert (await suggested(mixed, "imagine", "1000 × 600", prompt="x"))[0] == "1000x600"
    assert await suggested(mixed, "imagine", "1001x600", prompt="x") == []


# --- what each server may ask for --------------------------------------------------------------


@pytest.mark.parametrize("typed", ["1000x600", "1000 X 600"])
async def test_any_multiple_of_8_within_max_side_is_made_at_that_size(
    mixed: Harness, a1111: FakeAutomatic1111, typed: str
) -> None:
    await use_sd(mixed)
    before = seen_ids(mixed.fake)

    await mixed.fake.slash("imagine", {"prompt": "a lighthouse", "size": typed})
    await new_result(mixed, before)

    (body,) = bodies(a1111, "/txt2img")
    assert (body["width"], body["height"]) == (1000, 600)


@pytest.mark.parametrize("size", ["1001x600", "1536x1536", "big"])
async def test_a_size_the_servers_backend_cannot_make_is_refused_naming_what_it_can(
    mixed: Harness, a1111: FakeAutomatic1111, size: str
) -> None:
    await use_sd(mixed)

    text = await refusal(mixed, "imagine", {"prompt": "a lighthouse", "size": size})

    assert text.startswith(f"automatic1111 cannot make {size} images; sizes: 512x512, 768x768")
    assert "multiples of 8" in text and "up to 1024 px" in text
    await mixed.idle()
    assert a1111.requests == [] and mixed.api.requests == []


async def test_a_server_on_openai_is_still_held_to_its_models_sizes(mixed: Harness) -> None:
    text = await refusal(mixed, "imagine", {"prompt": "a lighthouse", "size": "768x768"})

    assert text == ("dall-e-2 cannot make 768x768 images; sizes: 256x256, 512x512, 1024x1024.")
    await mixed.idle()
    assert mixed.api.requests == []


async def test_the_operators_allowed_sizes_are_all_that_is_suggested(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> None:
    settings = settings_factory(
        provider=ProviderSettings(**a1111_backend(a1111)),
        quotas=QuotaSettings(allowed_sizes=("768x768", "832x1216")),
    )
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as h:
        assert await suggested(h, "imagine", "", prompt="x") == ["768x768", "832x1216"]
        assert await suggested(h, "imagine", "1000x600", prompt="x") == []


# --- a bot on ComfyUI alone --------------------------------------------------------------------


async def test_a_comfyui_bot_has_a_size_option_and_sends_the_typed_size(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    async with FakeComfyUI(step_delay=0.001) as comfy:
        settings = make_settings(tmp_path, fake_discord, fake_images_api, **comfyui_backend(comfy))
        async with run_bot(fake_discord, fake_images_api, settings) as h:
            assert (await suggested(h, "imagine", "1216", prompt="x"))[:1] == ["1216x832"]
            before = seen_ids(h.fake)
            await h.fake.slash("imagine", {"prompt": "a lighthouse", "size": "832x1216"})
            await new_result(h, before)

            latent = comfy.sent_inputs("imagebot:size")
            assert (latent["width"], latent["height"]) == (832, 1216)
        assert fake_discord.spec_violations == []
