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
import io
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image, ImageDraw

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
from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle, StoredMessage
from bot.testing.discord.models import walk_components
from bot.testing.images import bw_mask_bytes
from bot.testing.openai_api import FakeImagesAPI

T = TypeVar("T")

#: Names a step whose image request the fake image API fails (see the module docstring).
FAIL_ENV = "IMAGEBOT_DEMO_FAIL"
#: The steps that send a request to the image API, which FAIL_ENV can name.
FAILABLE_STEPS = ("imagine", "vary", "edit", "reaction")
#: The demo's model: every operation (native variations), small sizes, quick.
MODEL = "dall-e-2"
SIZE = "256x256"
#: The per-member daily limit the admin sets: exactly what bob's requests use, so his last one
#: is refused (2 from /imagine, 2 from Vary, 1 from /edit).
MEMBER_LIMIT = 5
#: Seconds one step may take before it counts as failed.
STEP_TIMEOUT = 15.0
BOT_READY_TIMEOUT = 20.0

_MENTION = re.compile(r"<@!?(\d+)>")
_TIMESTAMP = re.compile(r"<t:(\d+)(?::[tTdDfFR])?>")


class StepFailed(Exception):
    def __init__(self, expected: str, seen: str) -> None:
        super().__init__(f"expected {expected}; seen {seen}")
        self.expected, self.seen = expected, seen


@dataclass
class Session:
    """The running demo: the fakes, the bot, and what was written."""

    fake: FakeDiscord
    api: FakeImagesAPI
    bot: ImageBot
    bot_task: asyncio.Task[None]
    out: Path
    say: Callable[[str], None]
    saved: list[Path] = field(default_factory=list)
    results: dict[str, StoredMessage] = field(default_factory=dict)

    @property
    def alice(self) -> FakeMember:
        return self.fake.admin

    @property
    def bob(self) -> FakeMember:
        return self.fake.user

    def en(self, key: str, **params: Any) -> str:
        return self.bot.catalog.text(key, "en-US", **params)

    async def guarded(self, waiter: Awaitable[T], what: str) -> T:
        """``waiter``'s result; StepFailed when the bot stops first or it takes too long."""
        task = asyncio.ensure_future(waiter)
        done, _ = await asyncio.wait(
            {task, self.bot_task}, timeout=STEP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            try:
                return task.result()
            except TimeoutError:
                raise StepFailed(what, f"nothing within {STEP_TIMEOUT:g} s") from None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await task
        if self.bot_task.done():
            raise StepFailed(what, f"the bot stopped ({_ending(self.bot_task)})")
        raise StepFailed(what, f"nothing within {STEP_TIMEOUT:g} s")

    async def new_result(
        self, before: set[int], what: str, handle: InteractionHandle | None = None
    ) -> StoredMessage:
        """The next public message with images, once the bot has recorded it (buttons and
        reactions find the job by that record); StepFailed with what the member was told
        instead (privately under ``handle``, or in the channel) when no result came."""
        progress = tuple(
            str(self.bot.catalog.template(key, "en-US")).split("{")[0]
            for key in ("status.queued", "status.working")
        )

        def outcome() -> StoredMessage | None:
            fresh = [m for m in self.fake.state.messages.values() if m.id not in before]
            for message in fresh:
                if message.attachments and not message.ephemeral and not message.deleted:
                    return message
            told = handle.messages if handle is not None else fresh
            for message in told:
                if message.deleted or message.loading or not message.content:
                    continue
                if not message.content.startswith(progress) and message.source != "user":
                    return message
            return None

        result = await self.guarded(
            self.fake.state.pulse.wait_until(outcome, STEP_TIMEOUT, lambda: what), what
        )
        if not result.attachments:
            where = "privately" if result.ephemeral else f"in #{self.fake.channel.name}"
            raise StepFailed(what, f"this, {where}: {self.text(result)!r}")
        await self.guarded(self.bot.runner.wait_idle(), "the bot to record the result")
        return result

    async def private_answer(self, handle: InteractionHandle, who: str) -> StoredMessage:
        """The member's private message (its text as it stands once the bot is idle)."""
        message = await self.guarded(
            handle.wait_message(lambda m: bool(m.content), STEP_TIMEOUT),
            f"a private answer to {who}",
        )
        await self.guarded(self.bot.runner.wait_idle(), "the bot to finish")
        if not message.ephemeral:
            raise StepFailed(f"a private answer to {who}", f"a public one: {self.text(message)!r}")
        return message

    def text(self, message: StoredMessage | str) -> str:
        """Message text as a Discord client shows it: mentions as @name, timestamps as times."""
        content = message if isinstance(message, str) else message.content
        users = self.fake.state.users

        def mention(match: re.Match[str]) -> str:
            user = users.get(int(match.group(1)))
            return f"@{user.name}" if user else match.group(0)

        def timestamp(match: re.Match[str]) -> str:
            return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(match.group(1))))

        return _TIMESTAMP.sub(timestamp, _MENTION.sub(mention, content)).replace("**", "")

    def show(self, message: StoredMessage, seen_by: str) -> None:
        """Print a message as ``seen_by`` sees it: text, embeds, attachments, buttons."""
        where = "privately" if message.ephemeral else f"in #{self.fake.channel.name}"
        lines = [self.text(message)] if message.content else []
        for embed in message.embeds:
            heading = " - ".join(
                self.text(embed[k]) for k in ("title", "description") if embed.get(k)
            )
            if heading:
                lines.append(f"[embed] {heading}")
            fields = [f"{f['name']}: {self.text(f['value'])}" for f in embed.get("fields") or []]
            if fields:
                lines.append("        " + "; ".join(fields))
        if message.attachments:
            names = [f"{a.filename} ({a.width}x{a.height})" for a in message.attachments]
            lines.append("[files] " + ", ".join(names))
        labels = [c["label"] for c in walk_components(message.components) if c.get("label")]
        if labels:
            lines.append("[buttons] " + " | ".join(labels))
        self.say(f"   {seen_by} sees {where}:")
        for line in lines or ["(nothing)"]:
            for part in line.splitlines():
                self.say(f"     {part}")

    def save(self, stem: str, message: StoredMessage, expected: int) -> None:
        """Write the result's images to the out folder; each must be a PNG a viewer opens."""
        if len(message.attachments) != expected:
            raise StepFailed(f"{expected} image(s)", f"{len(message.attachments)}")
        written = []
        for index, attachment in enumerate(message.attachments, start=1):
            try:
                with Image.open(io.BytesIO(attachment.data)) as image:
                    image.verify()
                    kind = image.format
            except Exception as exc:
                raise StepFailed(f"{attachment.filename} to be an image", repr(exc)) from None
            if kind != "PNG":
                raise StepFailed(f"{attachment.filename} to be a PNG", str(kind))
            path = self.out / f"{stem}-{index}.png"
            path.write_bytes(attachment.data)
            written.append(path)
        self.saved.extend(written)
        self.say("   saved " + ", ".join(str(p) for p in written))

    def expect_title(self, message: StoredMessage, title: str) -> None:
        seen = message.embeds[0].get("title") if message.embeds else None
        if seen != title:
            raise StepFailed(f"a result titled {title!r}", repr(seen))


# --- the steps ---------------------------------------------------------------------------------


async def set_quota(s: Session) -> None:
    s.say(f"   alice (admin): /quota set member_images_per_day:{MEMBER_LIMIT}")
    handle = await s.fake.slash(
        "quota", {"member_images_per_day": MEMBER_LIMIT}, subcommand="set", user=s.alice
    )
    answer = await s.private_answer(handle, "alice")
    s.show(answer, "alice")
    saved = s.en("quota.set.done")
    if (
        answer.content.splitlines()[0] != saved
        or f"member per day: **{MEMBER_LIMIT}**" not in answer.content
    ):
        raise StepFailed(f"{saved!r} and the new limit", repr(answer.content))


async def imagine(s: Session) -> None:
    prompt = "a lighthouse at dusk"
    s.say(f'   bob: /imagine prompt:"{prompt}" count:2 size:{SIZE}')
    before = set(s.fake.state.messages)
    handle = await s.fake.slash("imagine", {"prompt": prompt, "count": 2, "size": SIZE}, user=s.bob)
    result = await s.new_result(before, "a public result with 2 images", handle)
    await expect_done(s, handle, "bob")
    s.show(result, "everyone")
    if not result.embeds or result.content != s.bob.mention:
        raise StepFailed("a result that mentions bob, with its details", s.text(result))
    s.save("1-imagine", result, 2)
    s.results["imagine"] = result


async def vary(s: Session) -> None:
    first = s.results["imagine"]
    buttons = [c for c in first.custom_ids if c.startswith("ib:vary:") and c.endswith(":0")]
    if not buttons:
        raise StepFailed('a "Vary 1" button on the result', f"the buttons {first.custom_ids}")
    s.say('   bob clicks "Vary 1" under his result')
    before = set(s.fake.state.messages)
    handle = await s.fake.click(first, buttons[0], user=s.bob)
    result = await s.new_result(before, "a public result with 2 variations", handle)
    await expect_done(s, handle, "bob")
    s.show(result, "everyone")
    s.expect_title(result, s.en("result.vary_of", index=1))
    s.save("2-vary", result, 2)


async def edit(s: Session) -> None:
    picture, mask = demo_picture(), bw_mask_bytes(256, 256, (96, 40, 160, 200))
    (s.out / "3-edit-upload.png").write_bytes(picture)
    (s.out / "3-edit-mask.png").write_bytes(mask)
    s.say(
        '   bob: /edit image:harbour.png mask:mask.png prompt:"a harbour with a red lighthouse" '
        f"(the upload and mask are in {s.out}/3-edit-upload.png, 3-edit-mask.png)"
    )
    options = {
        "image": s.fake.add_attachment(picture, "harbour.png"),
        "mask": s.fake.add_attachment(mask, "mask.png"),
        "prompt": "a harbour with a red lighthouse",
        "count": 1,
        "size": SIZE,
    }
    before = set(s.fake.state.messages)
    handle = await s.fake.slash("edit", options, user=s.bob)
    result = await s.new_result(before, "a public result with the edited image", handle)
    await expect_done(s, handle, "bob")
    s.show(result, "everyone")
    sent = [r for r in s.api.requests if r.path.endswith("/images/edits")]
    if not sent or sent[-1].file("mask") is None:
        raise StepFailed("the image and the mask sent to the image API", "no mask sent")
    s.save("3-edit", result, 1)


async def react(s: Session) -> None:
    first = s.results["imagine"]
    s.say("   alice reacts 🔄 to bob's first result (🔄 varies image 1)")
    before = set(s.fake.state.messages)
    await s.fake.react(first, "🔄", user=s.alice)
    result = await s.new_result(before, "a public result with 2 variations for alice")
    s.show(result, "everyone")
    s.expect_title(result, s.en("result.vary_of", index=1))
    if result.content != s.alice.mention:
        raise StepFailed("a result that mentions alice", s.text(result))
    s.save("4-reaction", result, 2)


async def refusal(s: Session) -> None:
    s.say(f'   bob: /imagine prompt:"one more lighthouse" (he has made {MEMBER_LIMIT} today)')
    calls = len(s.api.requests)
    handle = await s.fake.slash("imagine", {"prompt": "one more lighthouse"}, user=s.bob)
    answer = await s.private_answer(handle, "bob")
    s.show(answer, "bob")
    expected = s.en("quota.member_day", limit=MEMBER_LIMIT, remaining=0, n=1, resets="\0")
    start = expected.split("\0")[0]
    if not answer.content.startswith(start) or answer.attachments:
        raise StepFailed(f"the refusal {start!r}...", repr(s.text(answer)))
    if len(s.api.requests) != calls:
        raise StepFailed("nothing sent to the image API", "a request was sent (and paid for)")


async def expect_done(s: Session, handle: InteractionHandle, who: str) -> None:
    """The requester's private status message ends as "Done"."""
    done = s.en("status.done")
    status = await s.guarded(
        handle.wait_message(lambda m: m.content == done, STEP_TIMEOUT),
        f"{who}'s private status to say {done!r}",
    )
    s.say(f"   {who} sees privately: {s.text(status)}")


STEPS: tuple[tuple[str, str, Callable[[Session], Awaitable[None]]], ...] = (
    ("quota", "an admin sets a small daily limit per member", set_quota),
    ("imagine", "a member makes two images", imagine),
    ("vary", "he presses a Vary button on the result", vary),
    ("edit", "he repaints part of an upload, marked by a mask", edit),
    ("reaction", "another member reacts to the result to vary it", react),
    ("refusal", "the member's next request is over the limit", refusal),
)


def demo_picture(side: int = 256) -> bytes:
    """A small harbour scene to upload: sky, sea and a pier (the mask marks where to paint)."""
    image = Image.new("RGB", (side, side), (120, 170, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, side * 2 // 3, side, side), fill=(30, 80, 140))
    draw.rectangle((side // 8, side * 3 // 5, side // 2, side * 2 // 3), fill=(110, 80, 50))
    draw.ellipse((side * 3 // 4, side // 10, side * 9 // 10, side // 4), fill=(250, 220, 90))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# --- running it ----------------------------------------------------------------------------------


def failing_step(env: dict[str, str] | os._Environ[str]) -> str | None:
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
            say(f"The bot did not start ({_ending(bot_task)}); see {out}/bot.log.")
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
            f"\nEvery step did what a member expects ({seconds:.1f} s); "
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


def _ending(task: asyncio.Task[None]) -> str:
    if not task.done():
        return "still starting"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return "it ended" if error is None else f"{type(error).__name__}: {error}"


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
