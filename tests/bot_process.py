"""The bot as an operator starts it: ``python -m bot ...`` in a subprocess, with its config file.

The fake Discord and the fake image API run in the test's event loop; the subprocess finds them
through its config file (``[discord] api_base_url``/``gateway_url``, ``[provider] base_url``) and
gets its secrets from the environment only, as a deployment would pass them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import DATABASE_ENV, REQUIRED_ENV, scratch_database_url

ROOT = Path(__file__).resolve().parents[1]
#: How long a stopped (SIGTERM) or failed bot may take to exit.
EXIT_WITHIN = 5.0
#: Secrets the subprocess must get from the test only, never from the developer's shell; and
#: the test suite's own IMAGEBOT_ variables, which the bot would warn about as unknown settings.
_SECRETS = {"DISCORD_TOKEN", "OPENAI_API_KEY", REQUIRED_ENV, DATABASE_ENV}


def write_config(
    tmp_path: Path,
    fake: FakeDiscord,
    api: FakeImagesAPI,
    *,
    discord_extra: str = "",
    provider_extra: str = "",
    jobs_extra: str = "",
    database_url: str | None = None,
) -> Path:
    """A config file pointing at the fakes, without secrets; ``*_extra`` lines go in that table.
    The database: ``database_url``, else the suite's (``tmp_path/bot.db`` unless
    IMAGEBOT_TEST_DATABASE says otherwise)."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[discord]\n"
        f'api_base_url = "{fake.api_base}"\n'
        f'gateway_url = "{fake.gateway_url}"\n'
        f"{discord_extra}"
        "[provider]\n"
        f'base_url = "{api.base_url}"\n'
        'model = "dall-e-2"\n'
        "max_retries = 0\n"
        f"{provider_extra}"
        "[jobs]\n"
        f"{jobs_extra}"
        "shutdown_grace_seconds = 1.0\n"
        "[database]\n"
        f'url = "{database_url or scratch_database_url(tmp_path)}"\n'
        "[storage]\n"  # the test's own (on PostgreSQL the started-jobs journal lives there)
        f'spool_dir = "{tmp_path / "spool"}"\n',
        encoding="utf-8",
    )
    return path


def bot_env(token: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        DISCORD_TOKEN=token,
        OPENAI_API_KEY=api_key,
    )
    env.pop("IMAGEBOT_CONFIG", None)
    env.pop("DATABASE_URL", None)
    return env


async def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """``python -m bot ARGS`` to its end: exit code, stdout, stderr."""
    full_env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
        cwd=cwd or ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass
class BotProcess:
    process: asyncio.subprocess.Process
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def output(self) -> str:
        return (bytes(self.stdout) + bytes(self.stderr)).decode(errors="replace")

    async def wait(self, timeout: float = EXIT_WITHIN) -> int:  # noqa: ASYNC109
        """The exit code; fails the test (the process is killed later) if it takes too long."""
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            pytest.fail(f"the bot did not exit within {timeout} s; output:\n{self.output}")
        await asyncio.gather(*self.readers)
        return code

    async def stop(self, number: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(number)
        return await self.wait()


async def _drain(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    """Read a pipe as the process writes it, so a chatty process never blocks on a full pipe."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        into.extend(chunk)


@contextlib.asynccontextmanager
async def bot_process(
    command: str, config: Path, env: dict[str, str], args: Sequence[str] = ()
) -> AsyncIterator[BotProcess]:
    """``python -m bot COMMAND --config CONFIG ARGS``; killed on exit if it is still running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        command,
        "--config",
        str(config),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=config.parent,
    )
    running = BotProcess(process)
    running.readers = [
        asyncio.create_task(_drain(process.stdout, running.stdout)),
        asyncio.create_task(_drain(process.stderr, running.stderr)),
    ]
    try:
        yield running
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        for reader in running.readers:
            reader.cancel()
        await asyncio.gather(*running.readers, return_exceptions=True)
