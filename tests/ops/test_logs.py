"""Logs as an operator's collector receives them: JSON lines with job and guild, no secrets.

The bot runs at DEBUG, where discord.py logs webhook URLs (``/webhooks/{app}/{token}``) and
whole gateway payloads: interaction tokens must not survive in either.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import bot_env, bot_process, write_config

SOURCES = ("channel", "followup", "response")


async def test_json_logs_carry_job_and_guild_and_never_a_secret(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api)
    with config.open("a", encoding="utf-8") as file:
        file.write('[logging]\nlevel = "DEBUG"\nformat = "json"\n')
    async with bot_process("run", config, bot_env(fake.token, api.api_key)) as bot:
        try:
            await fake.wait_ready(timeout=15)
            await fake.state.pulse.wait_until(
                lambda: True if fake.commands else None, 10, lambda: "the command sync"
            )
            await fake.slash("imagine", {"prompt": "a lighthouse", "size": "256x256"})
            await fake.wait_for_message(lambda m: bool(m.attachments), timeout=10, sources=SOURCES)
            # The provider refuses the key: an operator problem whose details are logged.
            api.fail_next(
                status=401,
                code="invalid_api_key",
                message=f"Incorrect API key provided: {api.api_key}.",
                type="invalid_request_error",
            )
            await fake.slash("imagine", {"prompt": "a boat", "size": "256x256"})
            await fake.wait_for_message(
                lambda m: "operator" in m.content, timeout=10, sources=SOURCES
            )
        except BaseException:
            print(bot.output)
            raise
        assert await bot.stop() == 0, bot.output

    lines = bot.stderr.decode().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    job_lines = [e for e in entries if "job_id" in e]
    assert job_lines, "no log line names its job"
    assert all(e.get("guild_id") == fake.guild.id for e in job_lines if "guild_id" in e)
    assert any(e["level"] == "ERROR" and "401" in e["message"] for e in entries)
    output = bot.output
    assert any("/webhooks/" in e["message"] for e in entries), "no webhook call was logged"
    assert any("INTERACTION_CREATE" in e["message"] for e in entries), "no payload was logged"
    interaction_tokens = list(fake.state.by_token)
    assert len(interaction_tokens) == 2
    for secret in (fake.token, api.api_key, api.api_key[-8:], *interaction_tokens):
        assert secret not in output
    for token in interaction_tokens:
        assert token[-24:] not in output  # not even a part of one
