"""The bot started the way an operator starts it: ``python -m bot run|sync`` as a subprocess.

The fake Discord and the fake image API run in the test's event loop; the subprocess finds them
through its config file (``[discord] api_base_url``/``gateway_url``, ``[provider] base_url``) and
gets its secrets from the environment only, as a deployment would pass them.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest

from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord
from bot.testing.discord.rest import Rest
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import bot_env, bot_process, write_config


async def disconnected(fake: FakeDiscord) -> None:
    """The fake saw the bot's gateway connection end (its handler may run a moment later)."""
    await fake.state.pulse.wait_until(
        lambda: None if fake.connected else True, 2, lambda: "the gateway connection to end"
    )


def assert_no_secrets(output: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in output, "a secret reached the process output"


async def test_run_serves_an_imagine_and_stops_on_sigterm(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api)
    assert fake.token not in config.read_text() and api.api_key not in config.read_text()
    async with bot_process("run", config, bot_env(fake.token, api.api_key)) as bot:
        try:
            await fake.wait_ready(timeout=15)
            await fake.state.pulse.wait_until(
                lambda: True if fake.commands else None, 10, lambda: "the command sync"
            )
            handle = await fake.slash("imagine", {"prompt": "a lighthouse", "size": "256x256"})
            assert (await handle.response()).type == 5
            result = await fake.wait_for_message(
                lambda m: bool(m.attachments) and not m.ephemeral,
                timeout=10,
                sources=("channel", "followup", "response"),
            )
        except BaseException:
            print(bot.output)
            raise
        assert result.attachments[0].filename == "image_1.png"
        assert result.files["image_1.png"].startswith(b"\x89PNG")
        assert [r.body.get("prompt") for r in api.requests] == ["a lighthouse"]
        assert await bot.stop() == 0, bot.output
    await disconnected(fake)
    assert "stopping" in bot.stderr.decode()
    assert "Traceback" not in bot.output and "voice will NOT be supported" not in bot.output
    assert_no_secrets(bot.output, fake.token, api.api_key)
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_run_on_an_automatic1111_server_needs_no_api_key(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """``[provider] type = "automatic1111"`` from the environment, as a container sets it."""
    fake = fake_discord
    async with FakeAutomatic1111(step_delay=0.001) as a1111:
        config = write_config(tmp_path, fake, fake_images_api)
        env = bot_env(fake.token, "") | {
            "IMAGEBOT_PROVIDER_TYPE": "automatic1111",
            "IMAGEBOT_PROVIDER_BASE_URL": a1111.base_url,
            "IMAGEBOT_PROVIDER_MODEL": "",
        }
        del env["OPENAI_API_KEY"]
        async with bot_process("run", config, env) as bot:
            try:
                await fake.wait_ready(timeout=15)
                await fake.state.pulse.wait_until(
                    lambda: True if fake.commands else None, 10, lambda: "the command sync"
                )
                handle = await fake.slash("imagine", {"prompt": "a lighthouse"})
                assert (await handle.response()).type == 5
                result = await fake.wait_for_message(
                    lambda m: bool(m.attachments) and not m.ephemeral,
                    timeout=10,
                    sources=("channel", "followup", "response"),
                )
            except BaseException:
                print(bot.output)
                raise
            assert result.files["image_1.png"].startswith(b"\x89PNG")
            assert [path for path, _ in a1111.requests if "2img" in path] == ["/sdapi/v1/txt2img"]
            assert await bot.stop() == 0, bot.output
    assert fake_images_api.requests == []
    assert "Traceback" not in bot.output


async def test_ctrl_c_while_a_job_runs_still_stops_promptly(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """Ctrl-C (SIGINT) during a slow request: the job is cancelled, the process exits 0."""
    fake, api = fake_discord, fake_images_api
    api.delay = 60.0
    config = write_config(tmp_path, fake, api)
    async with bot_process("run", config, bot_env(fake.token, api.api_key)) as bot:
        await fake.wait_ready(timeout=15)
        await fake.state.pulse.wait_until(
            lambda: True if fake.commands else None, 10, lambda: "the command sync"
        )
        await fake.slash("imagine", {"prompt": "a slow sunrise", "size": "256x256"})
        async with asyncio.timeout(10):
            while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.02)
        assert await bot.stop(signal.SIGINT) == 0, bot.output
    assert "received SIGINT" in bot.stderr.decode()
    # The log says what stopping does: the grace period the config gave (1 s), by its key.
    assert "running jobs get up to 1 s to finish (jobs.shutdown_grace_seconds)" in bot.output
    assert "Traceback" not in bot.output
    await disconnected(fake)


async def test_sync_registers_the_commands_globally_and_exits(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api)
    async with bot_process("sync", config, bot_env(fake.token, "")) as bot:
        assert await bot.wait(15) == 0, bot.output
    names = sorted(c["name"] for c in fake.commands)
    assert names == [
        "Vary image",
        "blend",
        "edit",
        "history",
        "imagine",
        "moderation",
        "quota",
        "settings",
        "show",
        "usage",
        "vary",
    ]
    assert fake.guild_commands.get(fake.guild.id, []) == []
    assert fake.gateway.ready_count == 0  # logged in over REST only, never connected
    assert "synced" in bot.stdout.decode()
    assert_no_secrets(bot.output, fake.token)
    assert fake.spec_violations == []


async def test_sync_to_the_dev_guild_only(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api, discord_extra=f"dev_guild_id = {fake.guild.id}\n")
    async with bot_process("sync", config, bot_env(fake.token, "")) as bot:
        assert await bot.wait(15) == 0, bot.output
    assert fake.commands == []
    names = sorted(c["name"] for c in fake.guild_commands[fake.guild.id])
    assert names == [
        "Vary image",
        "blend",
        "edit",
        "history",
        "imagine",
        "moderation",
        "quota",
        "settings",
        "show",
        "usage",
        "vary",
    ]
    assert fake.spec_violations == []


@pytest.mark.parametrize(
    ("command", "refused_by"),
    [("run", "rest"), ("run", "gateway"), ("sync", "rest")],
)
async def test_a_rejected_discord_token_is_one_clear_line(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    refused_by: str,
) -> None:
    """Discord refuses a wrong token at the first REST call (401); should REST let it through,
    the gateway closes with 4004. Either way: exit 2 and one line, no traceback, no secret."""
    fake, api = fake_discord, fake_images_api
    if refused_by == "gateway":
        monkeypatch.setattr(Rest, "_check_auth", lambda self, request, path: None)
    config = write_config(tmp_path, fake, api)
    wrong = "not-the-token-but-long-enough-to-redact"
    async with bot_process(command, config, bot_env(wrong, api.api_key)) as bot:
        code = await bot.wait(15)
    stderr = bot.stderr.decode()
    assert code == 2, bot.output
    assert "Traceback" not in bot.output
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Discord rejected the bot token" in errors[0]
    assert "DISCORD_TOKEN" in errors[0]
    assert_no_secrets(bot.output, wrong, api.api_key)
    assert fake.gateway.ready_count == 0
    if refused_by == "gateway":
        assert fake.identify_payloads[-1]["token"] == wrong
    else:
        assert fake.commands == [] and fake.identify_payloads == []


async def test_an_unreachable_discord_is_one_clear_line(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api/v10"
    config = write_config(tmp_path, fake, api)
    config.write_text(config.read_text().replace(fake.api_base, closed), encoding="utf-8")
    async with bot_process("run", config, bot_env(fake.token, api.api_key)) as bot:
        code = await bot.wait(15)
    assert code == 1, bot.output
    assert "Traceback" not in bot.output
    errors = [line for line in bot.stderr.decode().splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and f"cannot reach Discord at {closed}" in errors[0]
    assert_no_secrets(bot.output, fake.token, api.api_key)
