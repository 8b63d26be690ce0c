"""The fake's storage: users, guilds, channels, messages, attachments and interactions.

:class:`State` is plain data plus the rules for turning a message body into a stored message;
the REST and gateway layers call it, and tests read it through :class:`FakeDiscord`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from .checks import Upload
from .models import (
    EPHEMERAL,
    LOADING,
    USER_MENTION,
    FakeChannel,
    FakeGuild,
    FakeUser,
    StoredAttachment,
    StoredMessage,
    walk_components,
)
from .payloads import guess_content_type, image_size, iso_now, snowflake

T = TypeVar("T")
SETTABLE_FLAGS = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 15)  # no embeds/ephemeral/silent/v2


class Pulse:
    """Wakes every waiter whenever something changes (an Event that is replaced on each fire)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self,
        check: Callable[[], T | None],
        timeout: float,  # noqa: ASYNC109 - waiters report what they saw when time runs out
        describe: Callable[[], str],
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {describe()}")
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)


@dataclass(eq=False)
class InteractionRecord:
    """One interaction the fake dispatched, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any] = field(repr=False)
    channel: FakeChannel = field(repr=False)
    user: FakeUser
    attachment_size_limit: int
    source_message: StoredMessage | None = field(default=None, repr=False)
    dispatched_at: float | None = None
    responded_at: float | None = None
    response_type: int | None = None
    response_data: dict[str, Any] | None = None
    original: StoredMessage | None = field(default=None, repr=False)
    followups: list[StoredMessage] = field(default_factory=list, repr=False)
    expired: bool = False
    late_callback: bool = False
    created_wall: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[StoredMessage]:
        out = [self.original] if self.original is not None else []
        return out + [m for m in self.followups if m is not self.original]


class State:
    def __init__(self, bot_user: FakeUser, application_id: int) -> None:
        self.bot_user = bot_user
        self.application_id = application_id
        self.base_url = ""
        self.users: dict[int, FakeUser] = {bot_user.id: bot_user}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.dm_channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.blobs: dict[int, StoredAttachment] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}
        self.pulse = Pulse()

    # -- attachments ------------------------------------------------------------------------

    def store_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        folder: str,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> StoredAttachment:
        att_id = snowflake()
        expires = int(time.time()) + 86400
        query = f"?ex={expires:x}&is={int(time.time()):x}&hm={secrets.token_hex(32)}&"
        path = f"/{folder}/{att_id}/{quote(filename)}{query}"
        size = image_size(data)
        att = StoredAttachment(
            id=att_id,
            filename=filename,
            data=data,
            content_type=content_type or guess_content_type(data, filename),
            url=f"{self.base_url}/cdn{path}",
            proxy_url=f"{self.base_url}/media{path}",
            description=description,
            ephemeral=ephemeral,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        self.blobs[att_id] = att
        return att

    def _attachments(
        self,
        channel: FakeChannel,
        payload: dict[str, Any],
        files: list[Upload],
        existing: list[StoredAttachment],
        ephemeral: bool,
    ) -> list[StoredAttachment]:
        """Discord's rule: ``attachments`` lists what to keep (by id) and names new files."""
        uploads = {f.index: f for f in files}
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        folder = f"{'ephemeral-attachments' if ephemeral else 'attachments'}/{channel.id}"

        def new(upload: Upload) -> StoredAttachment:
            meta = described.get(str(upload.index), {})
            name = meta.get("filename") or upload.filename
            return self.store_attachment(
                upload.data,
                name,
                folder=folder,
                description=meta.get("description"),
                ephemeral=ephemeral,
            )

        if "attachments" not in payload or payload["attachments"] is None:
            return [*existing, *(new(u) for u in files)]
        keep = {str(a.id): a for a in existing}
        out: list[StoredAttachment] = []
        for item in payload["attachments"]:
            key = str(item.get("id"))
            if key in keep:
                out.append(keep[key])
            elif key.isdigit() and int(key) in uploads:
                out.append(new(uploads.pop(int(key))))
        return out + [new(u) for u in uploads.values()]

    # -- messages ---------------------------------------------------------------------------

    def new_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        payload: dict[str, Any],
        files: list[Upload],
        *,
        source: str,
        msg_type: int = 0,
        extra_flags: int = 0,
        interaction: InteractionRecord | None = None,
    ) -> StoredMessage:
        flags = (int(payload.get("flags") or 0) & SETTABLE_FLAGS) | extra_flags
        msg = StoredMessage(
            id=snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild.id if channel.guild else None,
            author=author.to_json(),
            source=source,
            type=msg_type,
            flags=flags,  # set before apply() so attachments know if they are ephemeral
            tts=bool(payload.get("tts")),
            bot_id=self.bot_user.id,
        )
        if interaction is not None:
            msg.interaction_id = interaction.id
            msg.webhook_id = msg.application_id = self.application_id
            msg.interaction_metadata = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user.to_json(),
                "authorizing_integration_owners": interaction.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
        if payload.get("message_reference"):
            msg.message_reference = {**payload["message_reference"], "type": 0}
            msg.type = 19
        self.apply(msg, payload, files)
        msg.flags = flags
        msg.revisions.clear()
        msg.edited_timestamp = None
        self.messages[msg.id] = msg
        channel.last_message_id = msg.id
        self.pulse.fire()
        return msg

    def apply(self, msg: StoredMessage, payload: dict[str, Any], files: list[Upload]) -> None:
        """Apply a create or edit body to ``msg`` (only the keys present change)."""
        msg.revisions.append(msg.to_json())
        channel = self.channels[msg.channel_id]
        if "content" in payload:
            msg.content = payload["content"] or ""
        if "components" in payload:
            msg.components = _with_component_ids(payload["components"] or [])
        if "allowed_mentions" in payload:
            msg.allowed_mentions = copy.deepcopy(payload["allowed_mentions"])
        msg.flags &= ~LOADING  # any edit fills in a deferred ("thinking...") message
        if payload.get("flags") is not None:  # ephemerality is fixed when a message is created
            settable = SETTABLE_FLAGS & ~EPHEMERAL
            msg.flags = (msg.flags & ~settable) | (int(payload["flags"]) & settable)
        if "attachments" in payload or files:
            msg.attachments = self._attachments(
                channel, payload, files, msg.attachments, msg.ephemeral
            )
        if "embeds" in payload:
            msg.embeds = [self._embed(e, msg.attachments) for e in payload["embeds"] or []]
        msg.mentions, msg.mention_everyone = self._mentions(msg)
        msg.edited_timestamp = iso_now()
        self.pulse.fire()

    def _embed(self, embed: dict[str, Any], attachments: list[StoredAttachment]) -> dict[str, Any]:
        out = {"type": "rich", **copy.deepcopy(embed)}
        for key in ("image", "thumbnail"):
            media = out.get(key)
            if isinstance(media, dict) and str(media.get("url", "")).startswith("attachment://"):
                name = media["url"].removeprefix("attachment://")
                for att in attachments:
                    if att.filename == name:
                        media.update(url=att.url, proxy_url=att.proxy_url)
                        if att.width is not None:
                            media.update(width=att.width, height=att.height)
        return out

    def _mentions(self, msg: StoredMessage) -> tuple[list[dict[str, Any]], bool]:
        allowed = msg.allowed_mentions
        parse = set(allowed.get("parse") or []) if allowed is not None else {"users", "everyone"}
        allowed_users = {str(u) for u in (allowed or {}).get("users") or []}
        out = []
        for raw_id in dict.fromkeys(USER_MENTION.findall(msg.content)):
            user = self.users.get(int(raw_id))
            if user is not None and ("users" in parse or raw_id in allowed_users):
                out.append(user.to_json())
        everyone = "everyone" in parse and ("@everyone" in msg.content or "@here" in msg.content)
        return out, everyone

    def delete(self, msg: StoredMessage) -> None:
        msg.deleted = True
        self.pulse.fire()

    def live_message(self, message_id: int) -> StoredMessage | None:
        msg = self.messages.get(message_id)
        return None if msg is None or msg.deleted else msg

    def find_message(self, message: StoredMessage | int) -> StoredMessage:
        message_id = message if isinstance(message, int) else message.id
        msg = self.live_message(message_id)
        if msg is None:
            raise LookupError(f"no (undeleted) message {message_id}")
        return msg


def _with_component_ids(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Discord numbers every component that has no ``id`` (1, 2, ... depth first)."""
    out = copy.deepcopy(components)
    walked = walk_components(out)
    used = {c["id"] for c in walked if isinstance(c.get("id"), int)}
    next_id = 1
    for comp in walked:
        if comp.get("id") is None:
            while next_id in used:
                next_id += 1
            comp["id"] = next_id
            used.add(next_id)
    return out
