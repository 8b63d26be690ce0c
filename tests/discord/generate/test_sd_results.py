"""Stable Diffusion results end to end on the fake AUTOMATIC1111: the options a member sets reach
the server, the seed of each image is shown, Redo (same seed) makes the same picture again,
Redo keeps a random seed random, and autocomplete offers the server's own lists.

The bot runs with ``[provider] type = "automatic1111"`` (and a second, unreachable SD backend
for the autocomplete of a backend that is down); what the server received is read from the
fake's request log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import ProviderSettings, Settings
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.automatic1111_rules import CHECKPOINTS
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.discord.models import walk_components
from bot.testing.harness import (
    Harness,
    a1111_backend,
    api_calls,
    field_value,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import bw_mask_bytes, png_bytes
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    down = ProviderSettings(**a1111_backend(a1111, base_url="http://127.0.0.1:9"))
    settings = settings_factory(
        provider=ProviderSettings(**a1111_backend(a1111, max_steps=30)),
        backends={"down": down},
    )
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []


def txt2img_bodies(a1111: FakeAutomatic1111) -> list[dict[str, Any]]:
    return [body for path, body in a1111.requests if path.endswith("/txt2img")]


async def imagine(h: Harness, **options: Any) -> StoredMessage:
    before = seen_ids(h.fake)
    await h.fake.slash("imagine", {"prompt": "a lighthouse at dusk", **options})
    return await new_result(h, before)


async def press(h: Harness, result: StoredMessage, custom_id: str) -> StoredMessage:
    before = seen_ids(h.fake)
    handle = await h.fake.click(result, custom_id)
    assert (await handle.response()).ephemeral
    return await new_result(h, before)


def seed_button(result: StoredMessage) -> str:
    (found,) = [c for c in result.custom_ids if c.startswith("ib:reseed:")]
    return found


async def test_the_options_a_member_sets_reach_the_server(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    await imagine(
        sd,
        negative="blurry, text",
        seed=77,
        steps=12,
        guidance=6.5,
        sampler="DPM++ 2M",
        checkpoint="sd_xl_base_1.0",
    )

    (body,) = txt2img_bodies(a1111)
    assert body["negative_prompt"] == "blurry, text"
    assert (body["seed"], body["steps"], body["cfg_scale"]) == (77, 12, 6.5)
    assert body["sampler_name"] == "DPM++ 2M"
    assert body["override_settings"]["sd_model_checkpoint"].startswith("sd_xl_base_1.0")
    assert a1111.runs[0].seeds == [77]


async def test_the_seed_of_each_image_is_shown_and_redo_same_seed_sends_it(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    result = await imagine(sd, count=2)
    first, second = a1111.runs[0].seeds
    assert txt2img_bodies(a1111)[0]["seed"] == -1  # none chosen: random
    assert field_value(result, "Seed") == f"1: {first}, 2: {second}"
    job_id = job_id_of(result)
    assert seed_button(result) == f"ib:reseed:{job_id}:{first}"
    labels = [c.get("label") for c in walk_components(result.components)]
    assert labels[-5:] == ["Redo", "Redo (same seed)", "Remix", "Params", "Delete"]

    again = await press(sd, result, seed_button(result))

    assert txt2img_bodies(a1111)[1]["seed"] == first
    assert a1111.runs[1].seeds == [first, second]
    assert field_value(again, "Seed") == f"1: {first}, 2: {second}"
    assert again.attachments[0].data == result.attachments[0].data  # the same picture


async def test_redo_keeps_a_random_seed_random_and_a_chosen_one_chosen(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    random_one = await imagine(sd)
    await press(sd, random_one, f"ib:redo:{job_id_of(random_one)}")
    chosen = await imagine(sd, seed=1234, steps=9)
    await press(sd, chosen, f"ib:redo:{job_id_of(chosen)}")

    seeds = [(body["seed"], body["steps"]) for body in txt2img_bodies(a1111)]
    assert seeds[0][0] == -1 and seeds[1][0] == -1
    assert seeds[2:] == [(1234, 9), (1234, 9)]


async def test_steps_beyond_this_backends_limit_are_refused_at_once(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    # Discord's bound is the loosest backend's (50, "down"); this server's allows 30.
    with pytest.raises(ValueError, match=r"outside 1\.\.50"):
        await sd.fake.slash("imagine", {"prompt": "a lighthouse", "steps": 51})

    handle = await sd.fake.slash("imagine", {"prompt": "a lighthouse", "steps": 31})

    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    assert response.data["content"] == "steps can be from 1 to 30 here, not 31."
    await sd.idle()
    assert a1111.requests == []


async def test_autocomplete_offers_the_servers_checkpoints_and_samplers(sd: Harness) -> None:
    checkpoints = await sd.fake.autocomplete(
        "imagine", {"prompt": "x", "checkpoint": ""}, focused="checkpoint"
    )
    samplers = await sd.fake.autocomplete(
        "imagine", {"prompt": "x", "sampler": "sde"}, focused="sampler"
    )

    offered = [c["value"] for c in (await checkpoints.response()).data["choices"]]
    assert offered == [c.name.removesuffix(".safetensors") for c in CHECKPOINTS][:25]
    sde = [c["value"] for c in (await samplers.response()).data["choices"]]
    assert sde and all("sde" in name.lower() for name in sde)


async def test_a_backend_that_is_down_offers_no_suggestions_and_no_error(sd: Harness) -> None:
    handle = await sd.fake.slash(
        "settings", {"name": "down"}, subcommand="server-backend", user=sd.fake.admin
    )
    await handle.wait_message()

    typed = await sd.fake.autocomplete(
        "imagine", {"prompt": "x", "sampler": ""}, focused="sampler", user=sd.fake.user
    )

    response = await typed.response()
    assert response.type == 8 and response.data["choices"] == []


async def test_remix_keeps_the_sd_options_with_the_new_prompt(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    result = await imagine(sd, negative="fog", steps=14, guidance=5.0, sampler="DPM++ SDE")
    remix = await sd.fake.click(result, f"ib:remix:{job_id_of(result)}")
    assert (await remix.response()).type == 9 and remix.modal is not None
    (text_input,) = [c for c in walk_components(remix.modal["components"]) if c.get("type") == 4]

    before = seen_ids(sd.fake)
    await sd.fake.submit_modal(remix, {text_input["custom_id"]: "a castle"})
    await new_result(sd, before)

    first, second = txt2img_bodies(a1111)
    assert second["prompt"] == "a castle"
    for key in ("negative_prompt", "steps", "cfg_scale", "sampler_name", "seed"):
        assert second[key] == first[key], key


async def test_edit_and_vary_send_their_sd_options_to_img2img(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    before = seen_ids(sd.fake)
    await sd.fake.slash(
        "edit",
        {
            "image": png_bytes(512, 512),
            "mask": bw_mask_bytes(512, 512, (100, 100, 300, 300)),
            "prompt": "a red door",
            "negative": "people",
            "seed": 5,
            "steps": 8,
        },
    )
    await new_result(sd, before)
    before = seen_ids(sd.fake)
    await sd.fake.slash("vary", {"image": png_bytes(512, 512), "seed": 6, "guidance": 4.5})
    await new_result(sd, before)

    edit, vary = [body for path, body in a1111.requests if path.endswith("/img2img")]
    assert (edit["negative_prompt"], edit["seed"], edit["steps"]) == ("people", 5, 8)
    assert (vary["seed"], vary["cfg_scale"]) == (6, 4.5)


async def test_the_vary_button_and_reaction_keep_the_sd_options_but_not_the_seed(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    result = await imagine(
        sd,
        negative="blurry, text",
        seed=77,
        steps=12,
        guidance=6.5,
        sampler="DPM++ 2M",
        checkpoint="sd_xl_base_1.0",
        count=2,
    )
    await press(sd, result, f"ib:vary:{job_id_of(result)}:0")
    before = seen_ids(sd.fake)
    await sd.fake.react(result, "🔄", user=sd.fake.user)
    await new_result(sd, before)

    button, reaction = [body for path, body in a1111.requests if path.endswith("/img2img")]
    for body in (button, reaction):
        assert body["prompt"] == "a lighthouse at dusk"
        assert body["negative_prompt"] == "blurry, text"
        assert (body["steps"], body["cfg_scale"]) == (12, 6.5)
        assert body["sampler_name"] == "DPM++ 2M"
        assert body["override_settings"]["sd_model_checkpoint"].startswith("sd_xl_base_1.0")
        assert body["seed"] == -1  # a variation is another take: new randomness


async def test_vary_of_a_result_whose_backend_this_server_lost_runs_without_its_sd_options(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    gpu = ProviderSettings(**a1111_backend(a1111))
    settings = make_settings(tmp_path, fake_discord, fake_images_api, backends={"gpu": gpu})
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as h:
        handle = await h.fake.slash(
            "settings", {"name": "gpu"}, subcommand="server-backend", user=h.fake.admin
        )
        await handle.wait_message()
        result = await imagine(h, negative="fog", steps=9, count=2)

    # The operator keeps the GPU server for another server only: this one is back on dall-e-2.
    elsewhere = dataclasses.replace(gpu, enabled_guilds=(1,))
    async with run_bot(
        fake_discord, fake_images_api, dataclasses.replace(settings, backends={"gpu": elsewhere})
    ) as h:
        varied = await press(h, result, f"ib:vary:{job_id_of(result)}:0")

    # Not refused with "Leave negative out", which no button can do: varied on dall-e-2.
    assert varied.embeds[0]["title"] == "Variation of image 1"
    assert len(api_calls(fake_images_api, "variations")) == 1
    assert len(txt2img_bodies(a1111)) == 1 and a1111.runs[1:] == []
