"""The member session ``python -m bot demo`` plays, step by step, and how it shows what members
saw: each step acts through the fake Discord as a member's client would, prints the bot's answers
as a Discord client shows them, and raises StepFailed with what was expected and what was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image, ImageDraw

from bot.discord.bot import ImageBot
from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle, StoredMessage
from bot.testing.discord.models import walk_components
from bot.testing.images import bw_mask_bytes
from bot.testing.openai_api import FakeImagesAPI

T = TypeVar("T")

#: The demo's model: every operation (native variations), small sizes, quick.
MODEL = "dall-e-2"
SIZE = "256x256"
#: The per-member daily limit the admin sets: exactly what bob's requests use, so his last one
#: is refused (2 from /imagine, 2 from Vary, 1 from /edit).
MEMBER_LIMIT = 5
#: Seconds one step may take before it counts as failed.
STEP_TIMEOUT = 15.0

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
            raise StepFailed(what, f"the bot stopped ({ending(self.bot_task)})")
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


def ending(task: asyncio.Task[None]) -> str:
    """Why the bot's task is not running: ``run`` returns by itself only when told to stop."""
    if not task.done():
        return "still starting"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return (
        "asked to stop: Ctrl-C or SIGTERM" if error is None else f"{type(error).__name__}: {error}"
    )
