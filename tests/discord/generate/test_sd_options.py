"""The Stable Diffusion options end to end: offered where a backend takes them, refused at once
(privately, naming the option and the limit) where the server's backend does not or the value
is beyond the operator's limit.

The bot runs against the fake Discord with two AUTOMATIC1111 backends configured beside the
default OpenAI one: "sd" (up to 40 steps, guidance 12) and "small" (30 steps, guidance 9). The
commands' bounds are the loosest of them; each request is checked against its own server's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.config import ProviderSettings, Settings
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord
from bot.testing.discord.handle import InteractionHandle
from bot.testing.harness import Harness, en, run_bot, synced
from bot.testing.openai_api import FakeImagesAPI

SD_NAMES = ["negative", "seed", "steps", "guidance", "sampler", "checkpoint"]
TRANSLATED = {"ko", "ja", "zh-CN", "zh-TW"}


def sd_backend(a1111: FakeAutomatic1111, **limits: Any) -> ProviderSettings:
    return ProviderSettings(type="automatic1111", base_url=a1111.base_url, model="", **limits)


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as fake:
        yield fake


@pytest.fixture
async def sd_bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    backends = {
        "sd": sd_backend(a1111, max_steps=40, max_guidance=12.0),
        "small": sd_backend(a1111, max_steps=30, max_guidance=9.0),
    }
    async with run_bot(fake_discord, fake_images_api, settings_factory(backends=backends)) as h:
        yield h
    assert fake_discord.spec_violations == []


def options(command: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in command.get("options") or []}


async def refusal(handle: InteractionHandle) -> str:
    """The private answer, given at once (before any defer)."""
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    return str(response.data["content"])


async def use_backend(h: Harness, name: str) -> None:
    handle = await h.fake.slash(
        "settings", {"name": name}, subcommand="server-backend", user=h.fake.admin
    )
    message = await handle.wait_message()
    assert message.content.startswith(
        en(h, "settings.backend.done", backend=f"{name} (automatic1111)")
    )


# --- what Discord is told ----------------------------------------------------------------------


async def test_an_openai_only_bot_offers_no_sd_options(harness: Harness) -> None:
    for name in ("imagine", "edit", "vary"):
        assert not set(options(synced(harness.fake, name))) & set(SD_NAMES), name


async def test_the_sd_options_are_offered_when_an_sd_backend_is_configured(
    sd_bot: Harness,
) -> None:
    imagine = options(synced(sd_bot.fake, "imagine"))
    assert list(imagine)[-6:] == SD_NAMES
    assert (imagine["seed"]["min_value"], imagine["seed"]["max_value"]) == (0, 2**32 - 1)
    # The loosest of the SD backends' limits; each server's own is checked at submit.
    assert (imagine["steps"]["min_value"], imagine["steps"]["max_value"]) == (1, 40)
    assert (imagine["guidance"]["min_value"], imagine["guidance"]["max_value"]) == (1, 12)
    assert imagine["guidance"]["type"] == 10  # a number: 7.5 is a usual guidance
    assert imagine["sampler"]["autocomplete"] and imagine["checkpoint"]["autocomplete"]
    assert imagine["negative"]["max_length"] == 2000
    for option in SD_NAMES:
        assert set(imagine[option]["name_localizations"]) == TRANSLATED
        assert set(imagine[option]["description_localizations"]) == TRANSLATED
    assert list(options(synced(sd_bot.fake, "edit")))[-6:] == SD_NAMES
    # A variation keeps to its source: no sampler or checkpoint to choose.
    assert list(options(synced(sd_bot.fake, "vary")))[-4:] == SD_NAMES[:4]


async def test_discord_itself_refuses_steps_beyond_every_backends_limit(sd_bot: Harness) -> None:
    with pytest.raises(ValueError, match=r"outside 1\.\.40"):
        await sd_bot.fake.slash("imagine", {"prompt": "a lighthouse", "steps": 41})


# --- refused at once ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("negative", "blurry"),
        ("seed", 42),
        ("steps", 20),
        ("guidance", 7.5),
        ("sampler", "Euler a"),
        ("checkpoint", "sdxl"),
    ],
)
async def test_an_sd_option_on_an_openai_server_is_refused_naming_it(
    sd_bot: Harness, option: str, value: Any
) -> None:
    handle = await sd_bot.fake.slash("imagine", {"prompt": "a lighthouse", option: value})

    text = await refusal(handle)

    assert text == (
        f"The {option} option works only on Stable Diffusion backends, and this server's "
        f"(dall-e-2) is not one. Leave {option} out."
    )
    await sd_bot.idle()
    assert sd_bot.api.requests == []


async def test_the_refusal_is_in_the_members_language_option_name_included(
    sd_bot: Harness,
) -> None:
    handle = await sd_bot.fake.slash("imagine", {"prompt": "등대", "seed": 7}, locale="ko")

    text = await refusal(handle)

    # The option as Discord shows it to a Korean member ("시드"), not its English name.
    assert text == sd_bot.bot.catalog.text(
        "provider.sd_option_unavailable", "ko", option="시드", model="dall-e-2"
    )
    assert "Stable Diffusion" in text and "옵션" in text and "seed" not in text


async def test_a_bound_refusal_names_the_option_in_the_members_language(sd_bot: Harness) -> None:
    await use_backend(sd_bot, "small")

    handle = await sd_bot.fake.slash("imagine", {"prompt": "灯塔", "guidance": 9.5}, locale="zh-CN")

    text = await refusal(handle)

    assert text == sd_bot.bot.catalog.text(
        "provider.sd_option_out_of_range", "zh-CN", option="引导强度", low=1, high=9, value=9.5
    )
    assert "guidance" not in text


async def test_steps_beyond_this_servers_backend_are_refused_with_its_limit(
    sd_bot: Harness, a1111: FakeAutomatic1111
) -> None:
    await use_backend(sd_bot, "small")

    steps = await sd_bot.fake.slash("imagine", {"prompt": "a lighthouse", "steps": 35})
    guidance = await sd_bot.fake.slash("imagine", {"prompt": "a lighthouse", "guidance": 9.5})

    assert await refusal(steps) == "steps can be from 1 to 30 here, not 35."
    assert await refusal(guidance) == "guidance can be from 1 to 9 here, not 9.5."
    await sd_bot.idle()
    assert a1111.runs == [] and sd_bot.api.requests == []


async def test_vary_refuses_an_sd_option_on_an_openai_server(sd_bot: Harness) -> None:
    from bot.testing.images import png_bytes

    handle = await sd_bot.fake.slash("vary", {"image": png_bytes(256, 256), "steps": 12})

    assert (await refusal(handle)).startswith("The steps option works only on Stable Diffusion")


@pytest.mark.parametrize("option", ["sampler", "checkpoint"])
async def test_a_sampler_or_checkpoint_name_longer_than_any_server_has_is_refused(
    sd_bot: Harness, a1111: FakeAutomatic1111, option: str
) -> None:
    """A name is typed freely (autocomplete only suggests): one longer than the job row keeps
    (64 and 255 characters) is refused by Discord, on every database engine alike."""
    await use_backend(sd_bot, "sd")
    longest = {"sampler": 64, "checkpoint": 255}[option]
    with pytest.raises(ValueError, match=rf"outside 1\.\.{longest}"):
        await sd_bot.fake.slash("imagine", {"prompt": "a lighthouse", option: "x" * (longest + 1)})
    handle = await sd_bot.fake.slash("imagine", {"prompt": "a lighthouse", option: "x" * longest})
    assert (await handle.response()).type == 5  # the longest is taken: the server has no such
    await handle.wait_message(lambda message: f'"{"x" * longest}' in message.content)
    await sd_bot.idle()
    assert a1111.runs == []
