"""``python -m bot demo``: the bot seen working before any account exists.

The fake Discord and the fake image API start on 127.0.0.1; the real bot runs against them on the
path ``python -m bot run`` takes (:func:`bot.app.run_discord_bot`: the composition root, the real
discord.py client, a real SQLite database in a temporary folder, the real ImageWorker); then two
members play a short session through the fake Discord, as their clients would send it. Each step
prints what the members saw and is checked against what a member expects; the images the bot
posted are written to the out folder. No token, key or network is needed or read: the fakes make
up their own.

``IMAGEBOT_DEMO_FAIL=<step>`` makes the fake image API answer that step's request with an HTTP
500, which the tests use to see that a failed step is reported (and the exit code is 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bot.app import run_discord_bot
from bot.config import (
    DatabaseSettings,
    DiscordSettings,
    LoggingSettings,
    ProviderSettings,
    Settings,
    StorageSettings,
)
from bot.discord.bot import ImageBot
from bot.errors import UsageError
from bot.exit_codes import EXIT_FAILURE, EXIT_OK
from bot.logs import configure_logging
from bot.testing.demo_steps import MODEL, STEPS, Session, StepFailed, ending
from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI

#: Names a step whose image request the fake image API fails (see the module docstring).
FAIL_ENV = "IMAGEBOT_DEMO_FAIL"
#: The steps that send a request to the image API, which FAIL_ENV can name.
FAILABLE_STEPS = ("imagine", "vary", "edit", "reaction")
BOT_READY_TIMEOUT = 20.0


def failing_step(env: Mapping[str, str]) -> str | None:
    name = env.get(FAIL_ENV) or None
    if name is not None and name not in FAILABLE_STEPS:
        raise UsageError(f"{FAIL_ENV}={name}: must be one of {', '.join(FAILABLE_STEPS)}")
    return name


def demo_settings(fake: FakeDiscord, api: FakeImagesAPI, folder: Path, database: Path) -> Settings:
    """What ``run`` would read from a config file pointing at the fakes (the fakes' secrets)."""
    return Settings(
        discord=DiscordSettings(
            token=fake.token, api_base_url=fake.api_base, gateway_url=fake.gateway_url
        ),
        provider=ProviderSettings(
            base_url=api.base_url, api_key=api.api_key, model=MODEL, max_retries=0
        ),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"),
        storage=StorageSettings(spool_dir=str(folder / "spool")),
        logging=LoggingSettings(level="INFO"),
    )


async def run_demo(
    out: Path, database: Path | None = None, say: Callable[[str], None] = print
) -> int:
    """Play the session; EXIT_OK when every step did what a member expects."""
    fail = failing_step(os.environ)
    with tempfile.TemporaryDirectory(prefix="imagebot-demo-") as folder:
        db = database or Path(folder) / "bot.db"
        async with FakeDiscord() as fake, FakeImagesAPI() as api:
            fake.guild.name = "Demo Server"
            settings = demo_settings(fake, api, Path(folder), db)
            kept = "kept" if database else "temporary"
            say("imagebot demo: the real bot, as `python -m bot run` runs it, against a fake")
            say("Discord and a fake image API on 127.0.0.1. No token, no API key, no network.")
            say(f"  fake Discord {fake.base_url}, fake image API {api.base_url}, model {MODEL}")
            say(f"  database {db} ({kept}); images and the bot's log (bot.log) go to {out}/")
            say(f'  server "{fake.guild.name}", #{fake.channel.name}: alice (admin), bob')
            with _log_to(out / "bot.log", (fake.token, api.api_key)):
                return await _play(fake, api, settings, out, say, fail)


async def _play(
    fake: FakeDiscord,
    api: FakeImagesAPI,
    settings: Settings,
    out: Path,
    say: Callable[[str], None],
    fail: str | None,
) -> int:
    stop = asyncio.Event()
    started: asyncio.Future[ImageBot] = asyncio.get_running_loop().create_future()
    bot_task = asyncio.create_task(
        run_discord_bot(settings, stop=stop, started=started.set_result), name="demo-bot"
    )
    begun = time.monotonic()
    try:
        bot = await _ready(bot_task, started)
        if bot is None:
            why = ending(bot_task) if bot_task.done() else f"not within {BOT_READY_TIMEOUT:g} s"
            say(f"The bot was not ready ({why}); see {out}/bot.log.")
            return EXIT_FAILURE
        session = Session(fake, api, bot, bot_task, out, say)
        for number, (name, summary, step) in enumerate(STEPS, start=1):
            say(f"\n[{number}/{len(STEPS)}] {name}: {summary}")
            if name == fail:
                api.fail_next(500)
            try:
                await step(session)
            except StepFailed as exc:
                say(f"   FAILED: expected {exc.expected}")
                say(f"           seen {exc.seen}")
                say(f"\nThe demo failed at step {number} ({name}); the bot's log is {out}/bot.log.")
                return EXIT_FAILURE
            say("   ok")
        violations = fake.spec_violations + api.spec_violations
        if violations:
            say(f"\nThe bot sent requests the official API specs reject: {violations}")
            return EXIT_FAILURE
        seconds = time.monotonic() - begun
        say(
            f"\nEvery step did what a member expects ({seconds:.1f} s from the bot's start); "
            f"the {len(session.saved)} images the bot posted are in {out}/."
        )
        say("With a Discord bot token and an image API key: see the README's Setting up.")
        return EXIT_OK
    finally:
        stop.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(bot_task, 10)


async def _ready(
    bot_task: asyncio.Task[None], started: asyncio.Future[ImageBot]
) -> ImageBot | None:
    """The bot once it is connected and ready; None when it stopped before."""

    async def ready() -> ImageBot:
        bot = await started
        await bot.wait_until_ready()
        return bot

    waiter = asyncio.ensure_future(ready())
    await asyncio.wait(
        {waiter, bot_task}, timeout=BOT_READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    if waiter.done():
        return waiter.result()
    waiter.cancel()
    return None


@contextlib.contextmanager
def _log_to(path: Path, secrets: tuple[str, ...]) -> Any:
    """The bot's log goes to ``path``, not the terminal, which shows what members saw."""
    with path.open("w", encoding="utf-8") as stream:
        configure_logging("INFO", secrets=secrets, stream=stream)
        try:
            yield
        finally:
            root = logging.getLogger()
            for handler in list(root.handlers):
                root.removeHandler(handler)
