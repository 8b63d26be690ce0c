"""The moderation pre-check (``[moderation] precheck = "block"``) as members and operators see it.

Every job's prompt (and its upload, for the omni moderation model) goes to the fake OpenAI
server's ``/v1/moderations`` once, when the job starts: a flagged request is refused with its
categories and nothing is made or charged; a failed check lets the request through ("open")
or refuses it ("closed"); with the check off nothing is asked.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from bot.app import open_bot
from bot.config import ModerationSettings, ProviderSettings, Settings, load_settings
from bot.db.models import AuditEntry, GuildSettings, Job, JobStatus
from bot.errors import ConfigError
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord
from bot.testing.discord.handle import InteractionHandle
from bot.testing.harness import (
    Harness,
    a1111_backend,
    api_calls,
    en,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI

MARKER = "forbiddenword"


@asynccontextmanager
async def checked_bot(
    fake: FakeDiscord, api: FakeImagesAPI, settings: Settings, **moderation: Any
) -> AsyncIterator[Harness]:
    """The bot with the pre-check on (``moderation`` keys replace the defaults); the fake
    moderation endpoint flags prompts with :data:`MARKER` for violence and harassment."""
    api.moderation.flag(MARKER, "violence", "harassment")
    settings = dataclasses.replace(
        settings, moderation=ModerationSettings(precheck="block", **moderation)
    )
    async with run_bot(fake, api, settings) as harness:
        yield harness
    assert fake.spec_violations == []
    assert api.spec_violations == []  # the /moderations bodies too, against the official spec


@pytest.fixture
async def checked(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    async with checked_bot(fake_discord, fake_images_api, settings_factory()) as harness:
        yield harness


async def told_privately(harness: Harness, handle: InteractionHandle, text: str) -> None:
    """Acknowledged privately at once, then told ``text`` in the same private message."""
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    message = await handle.wait_message(lambda m: m.content == text)
    assert message.ephemeral and not message.attachments
    await harness.idle()
    public = [
        m
        for m in harness.fake.messages(sources=("channel", "followup", "response"))
        if not m.ephemeral
    ]
    assert public == []


async def last_job(harness: Harness) -> Job:
    async with harness.bot.storage.sessions() as session:
        job = await session.scalar(select(Job).order_by(Job.id.desc()).limit(1))
    assert job is not None
    return job


async def refused_free(harness: Harness, code: str) -> None:
    """The last job failed with ``code``, charged nothing and reserved nothing any more."""
    job = await last_job(harness)
    assert job.status is JobStatus.FAILED and job.error_code == code
    assert job.n_charged == 0 and job.cost_micro_usd == 0 and not job.possibly_billed


# --- flagged and clean requests --------------------------------------------------------------


async def test_a_flagged_prompt_is_refused_with_its_categories_and_costs_nothing(
    checked: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    prompt = f"a knight, {MARKER.upper()} and more"  # the provider matches any case
    handle = await checked.fake.slash("imagine", {"prompt": prompt})
    text = en(checked, "moderation.precheck_flagged", categories="harassment, violence")
    assert "flagged by the content check (categories: harassment, violence)" in text
    assert "Nothing was charged" in text
    await told_privately(checked, handle, text)

    assert checked.api.requests == []  # no image request was made
    (call,) = checked.api.moderation.calls
    assert call.body == {"model": "omni-moderation-latest", "input": prompt}
    await refused_free(checked, "moderation.precheck_flagged")
    job = await last_job(checked)
    lines = [r.getMessage() for r in caplog.records if "pre-check" in r.getMessage()]
    assert lines == [
        f"job {job.id} refused by the moderation pre-check: categories harassment, violence"
    ]
    assert checked.api.api_key not in caplog.text


async def test_a_clean_prompt_goes_through_after_exactly_one_check(checked: Harness) -> None:
    before = seen_ids(checked.fake)
    await checked.fake.slash("imagine", {"prompt": "a lighthouse at dusk", "count": 2})
    result = await new_result(checked, before)
    assert len(result.attachments) == 2
    assert len(api_calls(checked.api, "generations")) == 1
    (call,) = checked.api.moderation.calls
    assert call.texts == ["a lighthouse at dusk"] and call.images == []
    assert call.headers["Authorization"] == f"Bearer {checked.api.api_key}"
    job = await last_job(checked)
    assert job.status is JobStatus.DELIVERED and job.n_charged == 2


async def test_an_edit_sends_the_normalized_upload_as_an_image_part(checked: Harness) -> None:
    upload = checked.fake.add_attachment(
        png_bytes(300, 200, (10, 200, 30), hole=(0, 0, 99, 99)), "photo.png"
    )
    before = seen_ids(checked.fake)
    await checked.fake.slash(
        "edit", {"image": upload, "prompt": "add a hot-air balloon", "size": "256x256"}
    )
    await new_result(checked, before)

    (call,) = checked.api.moderation.calls
    text_part, image_part = call.body["input"]
    assert text_part == {"type": "text", "text": "add a hot-air balloon"}
    assert image_part["type"] == "image_url"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    (edit,) = api_calls(checked.api, "edits")
    sent = edit.file("image")
    assert sent is not None
    assert call.images == [sent.data]  # the very PNG the edit sent, normalized
    with Image.open(io.BytesIO(call.images[0])) as image:
        assert image.format == "PNG" and image.size == (256, 256)


async def test_a_flagged_upload_refuses_a_variation_without_a_prompt(checked: Harness) -> None:
    checked.api.moderation.flag_images = True
    upload = checked.fake.add_attachment(png_bytes(256, 256), "photo.png")
    handle = await checked.fake.slash("vary", {"image": upload})
    text = en(checked, "moderation.precheck_flagged", categories="sexual")
    await told_privately(checked, handle, text)
    (call,) = checked.api.moderation.calls
    assert [part["type"] for part in call.body["input"]] == ["image_url"]
    assert checked.api.requests == []
    await refused_free(checked, "moderation.precheck_flagged")


async def test_the_refusal_is_written_for_the_servers_audit_channel(checked: Harness) -> None:
    fake = checked.fake
    async with checked.bot.storage.sessions() as session, session.begin():
        session.add(GuildSettings(guild_id=fake.guild.id, audit_channel_id=fake.channel.id))
    handle = await fake.slash("imagine", {"prompt": f"{MARKER} in the night"})
    await told_privately(
        checked,
        handle,
        en(checked, "moderation.precheck_flagged", categories="harassment, violence"),
    )
    async with checked.bot.storage.sessions() as session:
        entries = list(await session.scalars(select(AuditEntry)))
    (entry,) = entries
    assert entry.kind == "refusal" and entry.channel_id == fake.channel.id
    body = json.loads(entry.body)
    assert body["reason"] == "precheck" and body["outcome"] == "refused"
    assert body["categories"] == ["harassment", "violence"]
    assert body["user_id"] == fake.user.id and body["command"] == "imagine"


async def test_a_refused_job_does_not_count_against_the_image_rate_limit(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    one_a_minute = dataclasses.replace(settings.provider, images_per_minute=1)
    settings = dataclasses.replace(settings, provider=one_a_minute)
    async with checked_bot(fake_discord, fake_images_api, settings) as harness:
        handle = await fake_discord.slash("imagine", {"prompt": f"{MARKER}!"})
        await told_privately(
            harness,
            handle,
            en(harness, "moderation.precheck_flagged", categories="harassment, violence"),
        )
        # The one image a minute is still free: the next request is made at once.
        before = seen_ids(fake_discord)
        await fake_discord.slash("imagine", {"prompt": "a quiet harbour"})
        await new_result(harness, before, timeout=5.0)
        assert len(api_calls(fake_images_api, "generations")) == 1


# --- when the check fails --------------------------------------------------------------------


async def test_a_failed_check_lets_the_request_through_when_open(
    checked: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    checked.api.moderation.fail_next(503)
    before = seen_ids(checked.fake)
    await checked.fake.slash("imagine", {"prompt": f"{MARKER} unchecked"})
    await new_result(checked, before)
    assert len(api_calls(checked.api, "generations")) == 1
    assert "moderation pre-check failed" in caplog.text and "sent unchecked" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 500}, id="5xx"),
        pytest.param({"status": 429, "headers": {"retry-after": "0"}}, id="429-after-retries"),
    ],
)
async def test_a_failed_check_refuses_the_request_when_closed(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    failure: dict[str, Any],
) -> None:
    settings = settings_factory()
    retrying = dataclasses.replace(
        settings, provider=dataclasses.replace(settings.provider, max_retries=1)
    )
    async with checked_bot(
        fake_discord, fake_images_api, retrying, precheck_on_error="closed"
    ) as harness:
        harness.api.moderation.fail_next(**failure, times=2)
        handle = await fake_discord.slash("imagine", {"prompt": "a lighthouse"})
        text = en(harness, "moderation.precheck_unavailable")
        assert "content check is unavailable" in text and "Nothing was charged" in text
        await told_privately(harness, handle, text)
        assert len(harness.api.moderation.calls) == 2  # retried once, as image calls are
        assert harness.api.requests == []
        await refused_free(harness, "moderation.precheck_unavailable")


async def test_a_check_that_times_out_refuses_the_request_when_closed(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    quick = dataclasses.replace(settings.provider, read_timeout_seconds=0.2)
    async with checked_bot(
        fake_discord,
        fake_images_api,
        dataclasses.replace(settings, provider=quick),
        precheck_on_error="closed",
    ) as harness:
        harness.api.moderation.delay = 2.0
        handle = await fake_discord.slash("imagine", {"prompt": "a lighthouse"})
        await told_privately(harness, handle, en(harness, "moderation.precheck_unavailable"))
        assert harness.api.requests == []


# --- off, other backends, start-up -----------------------------------------------------------


async def test_with_the_check_off_nothing_is_asked(harness: Harness) -> None:
    harness.api.moderation.flag(MARKER)
    before = seen_ids(harness.fake)
    await harness.fake.slash("imagine", {"prompt": f"{MARKER} anyway"})
    await new_result(harness, before)
    assert harness.api.moderation.calls == []


async def test_a_stable_diffusion_job_is_checked_on_the_openai_backend(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    async with FakeAutomatic1111(step_delay=0.001) as a1111:
        settings = make_settings(tmp_path, fake_discord, fake_images_api, **a1111_backend(a1111))
        openai = ProviderSettings(
            base_url=fake_images_api.base_url,
            api_key=fake_images_api.api_key,
            model="dall-e-2",
            max_retries=0,
        )
        settings = dataclasses.replace(settings, backends={"cloud": openai})
        async with checked_bot(fake_discord, fake_images_api, settings) as harness:
            handle = await fake_discord.slash("imagine", {"prompt": f"a {MARKER} castle"})
            await told_privately(
                harness,
                handle,
                en(harness, "moderation.precheck_flagged", categories="harassment, violence"),
            )
            assert a1111.requests == []  # the GPU server was never asked
            before = seen_ids(fake_discord)
            await fake_discord.slash("imagine", {"prompt": "a sunny castle"})
            await new_result(harness, before)
            assert len(harness.api.moderation.calls) == 2
            assert fake_images_api.requests == []  # the images came from the SD server


async def test_block_without_an_openai_backend_stops_the_start(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[provider]\ntype = "automatic1111"\nbase_url = "http://127.0.0.1:7860"\n'
        '[moderation]\nprecheck = "block"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(str(config), env={})
    assert str(raised.value) == (
        'moderation.precheck: "block" needs an OpenAI-type backend for the /moderations check '
        '([provider] or a [backends.NAME] with type = "openai"; none is configured)'
    )
    # Settings made in code are held to it as well, when the bot is built.
    settings = make_settings(
        tmp_path,
        fake_discord,
        fake_images_api,
        type="automatic1111",
        base_url="http://127.0.0.1:7860",
        model="",
    )
    settings = dataclasses.replace(settings, moderation=ModerationSettings(precheck="block"))
    with pytest.raises(ConfigError, match=r"moderation\.precheck"):
        async with open_bot(settings):
            pass


async def test_a_job_failed_over_to_another_backend_is_checked_once(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    async with FakeAutomatic1111(step_delay=0.001) as a1111:
        gpu = ProviderSettings(**a1111_backend(a1111))
        settings = make_settings(
            tmp_path, fake_discord, fake_images_api, backends={"gpu": gpu}, fallback=("gpu",)
        )
        async with checked_bot(fake_discord, fake_images_api, settings) as harness:
            fake_images_api.fail_next(503)  # the OpenAI backend is down: the job moves on
            before = seen_ids(fake_discord)
            await fake_discord.slash("imagine", {"prompt": "a harbour at night"})
            await new_result(harness, before)
            assert [path for path, _ in a1111.requests if "2img" in path] == ["/sdapi/v1/txt2img"]
            assert len(harness.api.moderation.calls) == 1
