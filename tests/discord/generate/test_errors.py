"""Failures become short, private, true answers; nothing is left unanswered or posted publicly.

The provider's failures (safety, outage, rate limit, billing) reach the member through the
private status message of their command; operator problems show a generic text while the log
keeps the detail (never the API key); an unexpected exception gives a reference id that finds
its traceback in the log.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any

import discord
import pytest

from bot.config import Settings
from bot.providers import ImagesClient
from bot.testing.discord import FakeDiscord
from bot.testing.discord.handle import InteractionHandle
from bot.testing.discord.payloads import P
from bot.testing.harness import Harness, api_calls, en, run_bot
from bot.testing.openai_api import FakeImagesAPI


def nothing_public(harness: Harness) -> None:
    sources = ("channel", "followup", "response")
    public = [m for m in harness.fake.messages(sources=sources) if not m.ephemeral]
    assert public == []


async def told_privately(
    harness: Harness, handle: InteractionHandle, text: str, *, at_once: bool = False
) -> None:
    """Deferred privately, then the same private message says ``text``; nothing public.

    ``at_once``: the failure comes before the defer (the admission of a request with nothing
    to download precedes it), and the first answer is the message itself."""
    response = await handle.response()
    assert response.type == (4 if at_once else 5) and response.ephemeral
    message = await handle.wait_message(lambda m: m.content == text)
    assert message.ephemeral and not message.attachments
    await harness.idle()
    nothing_public(harness)


# --- the provider's answers ------------------------------------------------------------------


async def test_safety_rejection_is_told_privately(harness: Harness) -> None:
    harness.api.safety_next()
    handle = await harness.fake.slash("imagine", {"prompt": "something forbidden"})
    text = en(harness, "provider.safety_rejected")
    assert "safety system" in text
    await told_privately(harness, handle, text)


async def test_safety_rejection_of_an_edit_by_moderation(harness: Harness) -> None:
    from bot.testing.images import png_bytes

    harness.api.safety_next("moderation_blocked")
    upload = png_bytes(256, 256, hole=(0, 0, 127, 127))
    handle = await harness.fake.slash("edit", {"image": upload, "prompt": "a costume"})
    await told_privately(harness, handle, en(harness, "provider.safety_rejected"))
    assert len(api_calls(harness.api, "edits")) == 1


async def test_an_outage_says_the_service_is_not_responding(harness: Harness) -> None:
    harness.api.fail_next(503, times=3)
    handle = await harness.fake.slash("imagine", {"prompt": "a cat"})
    text = en(harness, "provider.unavailable")
    assert "not responding" in text
    await told_privately(harness, handle, text)
    assert len(harness.api.requests) == 1  # max_retries = 0 in these tests


async def test_rate_limited_is_busy_but_no_quota_is_an_operator_problem(harness: Harness) -> None:
    harness.api.fail_next(429, code="rate_limit_exceeded")
    handle = await harness.fake.slash("imagine", {"prompt": "a cat"})
    await told_privately(harness, handle, en(harness, "provider.rate_limited"))

    harness.api.quota_next()  # OpenAI says "no credit" with a 429 too: not "busy"
    handle = await harness.fake.slash("imagine", {"prompt": "a dog"})
    await told_privately(harness, handle, en(harness, "error.operator"))


async def test_billing_problem_shows_the_operator_text_and_logs_the_detail(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    harness.api.billing_next()
    handle = await harness.fake.slash("imagine", {"prompt": "a cat"})
    text = en(harness, "error.operator")
    await told_privately(harness, handle, text)
    everything = " ".join(m.content for m in handle.messages)
    assert "illing" not in everything and "limit" not in everything
    assert "billing_hard_limit_reached" in caplog.text
    assert harness.api.api_key not in caplog.text


async def test_a_wrong_api_key_never_reaches_the_log_or_the_member(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_factory()
    wrong = "sk-wrong-key-do-not-log-0123456789"
    settings = dataclasses.replace(
        settings, provider=dataclasses.replace(settings.provider, api_key=wrong)
    )
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        handle = await fake_discord.slash("imagine", {"prompt": "a cat"})
        await told_privately(harness, handle, en(harness, "error.operator"))
    assert "invalid_api_key" in caplog.text
    assert wrong not in caplog.text and wrong[-8:] not in caplog.text
    assert all(wrong not in m.content for m in handle.messages)
    assert fake_discord.spec_violations == []


# --- the bot's own failures -------------------------------------------------------------------


async def test_an_unexpected_error_gives_a_reference_found_in_the_log(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monkeypatches the job runner's ``submit`` to raise RuntimeError (a stand-in for a bug)."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kaboom in submit")

    monkeypatch.setattr(harness.bot.runner, "submit", broken)
    handle = await harness.fake.slash("imagine", {"prompt": "a cat"})
    response = await handle.response()
    assert response.type == 4 and response.ephemeral  # the admission comes before any defer
    message = await handle.wait_message(lambda m: "Reference" in m.content)
    match = re.fullmatch(
        r"Something went wrong on our side\. Reference: ([0-9A-F]{8})", message.content
    )
    assert match is not None and message.ephemeral
    assert "kaboom" not in message.content
    (record,) = [r for r in caplog.records if match[1] in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "kaboom in submit" in caplog.text and "Traceback" in caplog.text
    nothing_public(harness)


async def test_an_unexpected_error_inside_a_job_gives_the_jobs_reference(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monkeypatches ``ImagesClient.generate`` to raise RuntimeError (a bug inside a job)."""

    async def broken(self: ImagesClient, request: Any, **keywords: Any) -> Any:
        raise RuntimeError("kaboom in the provider client")

    monkeypatch.setattr(ImagesClient, "generate", broken)
    handle = await harness.fake.slash("imagine", {"prompt": "a cat"})
    await told_privately(harness, handle, en(harness, "error.unexpected", ref="J1"))
    assert "kaboom in the provider client" in caplog.text and "J1" in caplog.text


# --- permissions ----------------------------------------------------------------------------


async def test_a_channel_where_the_bot_may_not_post_still_gets_the_result(
    harness: Harness,
) -> None:
    """Interaction follow-ups go through the interaction's webhook, which needs no channel
    permission (Discord: "interaction responses do not require the bot to have permissions in
    the channel"), so a member can use the bot where it cannot post on its own."""
    fake = harness.fake
    quiet = fake.add_channel(fake.guild, "read-only", bot_permissions=P.VIEW_CHANNEL)
    handle = await fake.slash("imagine", {"prompt": "a quiet cat"}, channel=quiet)
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    result = await harness.result(lambda m: m.channel_id == quiet.id)
    assert result.source == "followup" and len(result.attachments) == 1
    assert not any(r.method == "POST" and f"/channels/{quiet.id}/" in r.path for r in fake.requests)


async def test_missing_permissions_reported_by_discord_are_named(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monkeypatches the job runner's ``submit`` to raise the Forbidden (50013) Discord sends
    when the bot lacks a permission: the one error handler names what to grant."""

    class Response:
        status, reason = 403, "Forbidden"

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise discord.Forbidden(Response(), {"code": 50013, "message": "Missing Permissions"})

    monkeypatch.setattr(harness.bot.runner, "submit", refused)
    handle = await harness.fake.slash("imagine", {"prompt": "a cat"})
    text = en(
        harness,
        "error.bot_missing_permissions",
        permissions="Send Messages, Attach Files, Embed Links",
    )
    await told_privately(harness, handle, text, at_once=True)
