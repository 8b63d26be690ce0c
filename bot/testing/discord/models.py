"""The fake Discord's world: users, guilds, roles, members, channels, attachments and messages."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from .payloads import (
    ALL_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    P,
    iso_now,
    member_json,
    role_json,
    user_json,
)

USER_MENTION = re.compile(r"<@!?(\d+)>")
EPHEMERAL = 1 << 6
LOADING = 1 << 7


@dataclass(eq=False)
class FakeUser:
    id: int
    name: str
    bot: bool = False
    locale: str = "en-US"
    accepts_dms: bool = True

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_json(self) -> dict[str, Any]:
        return user_json(self.id, self.name, bot=self.bot)


@dataclass(eq=False)
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    bot_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return role_json(self.id, self.name, self.permissions, self.position, bot_id=self.bot_id)


@dataclass(eq=False)
class FakeMember:
    user: FakeUser
    guild: FakeGuild = field(repr=False)
    roles: list[FakeRole] = field(default_factory=list)
    joined_at: str = field(default_factory=iso_now)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def mention(self) -> str:
        return self.user.mention

    def permissions_in(self, channel: FakeChannel | None = None) -> int:
        return self.guild.permissions_for(self, channel)

    def to_json(
        self, channel: FakeChannel | None = None, *, with_permissions: bool = False
    ) -> dict[str, Any]:
        perms = self.permissions_in(channel) if with_permissions else None
        role_ids = [r.id for r in self.roles]
        return member_json(self.user.to_json(), role_ids, self.joined_at, permissions=perms)


@dataclass(eq=False)
class FakeChannel:
    id: int
    name: str
    guild: FakeGuild | None = field(default=None, repr=False)
    type: int = 0
    position: int = 0
    topic: str | None = None
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    recipient: FakeUser | None = None
    last_message_id: int | None = None
    #: Set for a thread (type 11): the channel it belongs to; its permissions are the parent's.
    parent: FakeChannel | None = field(default=None, repr=False)
    #: Age-restricted (Discord's ``nsfw`` channel flag); a thread has its parent's.
    nsfw: bool = False

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def to_json(self) -> dict[str, Any]:
        if self.parent is not None and self.guild is not None:
            return self._thread_json(self.parent, self.guild)
        if self.guild is None:
            recipients = [self.recipient.to_json()] if self.recipient else []
            last = str(self.last_message_id) if self.last_message_id else None
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": last,
                "recipients": recipients,
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": copy.deepcopy(self.overwrites),
            "parent_id": None,
            "topic": self.topic,
            "nsfw": self.nsfw,
            "rate_limit_per_user": 0,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "flags": 0,
        }

    def _thread_json(self, parent: FakeChannel, guild: FakeGuild) -> dict[str, Any]:
        """A public thread as Discord sends it (THREAD_CREATE, GUILD_CREATE's threads)."""
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(guild.id),
            "parent_id": str(parent.id),
            "owner_id": str(guild.owner_id),
            "name": self.name,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": "2026-11-01T00:00:00+00:00",
                "locked": False,
            },
        }


@dataclass(eq=False)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    roles: list[FakeRole] = field(default_factory=list)
    channels: list[FakeChannel] = field(default_factory=list)
    #: Active threads (sent in GUILD_CREATE's ``threads``, not among the channels).
    threads: list[FakeChannel] = field(default_factory=list)
    members: dict[int, FakeMember] = field(default_factory=dict)
    joined_at: str = field(default_factory=iso_now)
    features: list[str] = field(default_factory=list)

    @property
    def everyone(self) -> FakeRole:
        return self.roles[0]

    def role(self, name_or_id: str | int) -> FakeRole:
        for role in self.roles:
            if name_or_id in (role.id, role.name):
                return role
        raise LookupError(f"guild {self.name!r} has no role {name_or_id!r}")

    def member(self, name_or_id: str | int) -> FakeMember:
        for member in self.members.values():
            if name_or_id in (member.id, member.name):
                return member
        raise LookupError(f"guild {self.name!r} has no member {name_or_id!r}")

    def channel(self, name_or_id: str | int) -> FakeChannel:
        for channel in self.channels:
            if name_or_id in (channel.id, channel.name):
                return channel
        raise LookupError(f"guild {self.name!r} has no channel {name_or_id!r}")

    def permissions_for(self, member: FakeMember, channel: FakeChannel | None = None) -> int:
        """Discord's permission algorithm: roles, administrator, then channel overwrites."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role in member.roles:
            perms |= role.permissions
        if perms & P.ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel is None:
            return perms
        if channel.parent is not None:
            # A thread has the parent's permissions; posting in it is Send Messages in Threads.
            perms = self.permissions_for(member, channel.parent)
            if perms & P.SEND_MESSAGES_IN_THREADS:
                return perms | P.SEND_MESSAGES
            return perms & ~P.SEND_MESSAGES
        by_id = {(int(o["id"]), o["type"]): o for o in channel.overwrites}

        def apply(perms: int, allow: int, deny: int) -> int:
            return (perms & ~deny) | allow

        if (ow := by_id.get((self.id, 0))) is not None:
            perms = apply(perms, int(ow["allow"]), int(ow["deny"]))
        allow = deny = 0
        for role in member.roles:
            if (ow := by_id.get((role.id, 0))) is not None:
                allow, deny = allow | int(ow["allow"]), deny | int(ow["deny"])
        perms = apply(perms, allow, deny)
        if (ow := by_id.get((member.id, 1))) is not None:
            perms = apply(perms, int(ow["allow"]), int(ow["deny"]))
        if not perms & P.VIEW_CHANNEL:
            return 0
        if not perms & P.SEND_MESSAGES:
            perms &= ~(P.EMBED_LINKS | P.ATTACH_FILES | P.MENTION_EVERYONE)
        return perms

    def to_json(self, *, with_members: bool, bot_id: int) -> dict[str, Any]:
        """The GUILD_CREATE payload; only the bot's own member without the members intent."""
        members = [m for m in self.members.values() if with_members or m.id == bot_id]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": self.locale,
            "features": list(self.features),
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "roles": [r.to_json() for r in self.roles],
            "emojis": [],
            "stickers": [],
            "joined_at": self.joined_at,
            "large": len(self.members) > 250,
            "unavailable": False,
            "member_count": len(self.members),
            "members": [m.to_json() for m in members],
            "channels": [c.to_json() for c in self.channels],
            "threads": [t.to_json() for t in self.threads],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "incidents_data": None,
        }


@dataclass(eq=False)
class StoredAttachment:
    id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str
    url: str
    proxy_url: str
    description: str | None = None
    ephemeral: bool = False
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def spoiler(self) -> bool:
        return self.filename.startswith("SPOILER_")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
            "content_type": self.content_type,
        }
        if self.width is not None:
            data["width"], data["height"] = self.width, self.height
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        return data


@dataclass(eq=False)
class StoredMessage:
    """A message as the fake stores it; ``to_json()`` is what Discord would return."""

    id: int
    channel_id: int
    guild_id: int | None
    author: dict[str, Any]
    source: str  # "channel" | "response" | "followup" | "user"
    type: int = 0
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    tts: bool = False
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    interaction_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    message_reference: dict[str, Any] | None = None
    mentions: list[dict[str, Any]] = field(default_factory=list)
    mention_everyone: bool = False
    reactions: dict[str, tuple[dict[str, Any], list[int]]] = field(default_factory=dict)
    deleted: bool = False
    revisions: list[dict[str, Any]] = field(default_factory=list, repr=False)
    bot_id: int = field(default=0, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred ("thinking...") response nobody has filled in yet."""
        return bool(self.flags & LOADING)

    @property
    def files(self) -> dict[str, bytes]:
        return {a.filename: a.data for a in self.attachments}

    @property
    def mentioned_ids(self) -> list[int]:
        """User ids written as ``<@id>`` in the content (pinged or not)."""
        return [int(m) for m in USER_MENTION.findall(self.content)]

    @property
    def pinged_ids(self) -> list[int]:
        """User ids that this message actually notifies (after allowed_mentions)."""
        return [int(u["id"]) for u in self.mentions]

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    @property
    def embed(self) -> dict[str, Any] | None:
        return self.embeds[0] if self.embeds else None

    def reaction_users(self, emoji: str) -> list[int]:
        for key, (data, users) in self.reactions.items():
            if emoji in (key, data["name"]):
                return list(users)
        return []

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": copy.deepcopy(self.author),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": self.mention_everyone,
            "mentions": copy.deepcopy(self.mentions),
            "mention_roles": [],
            "attachments": [a.to_json() for a in self.attachments],
            "embeds": copy.deepcopy(self.embeds),
            "components": copy.deepcopy(self.components),
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = copy.deepcopy(self.interaction_metadata)
        if self.message_reference is not None:
            data["message_reference"] = copy.deepcopy(self.message_reference)
        if self.reactions:
            data["reactions"] = [
                {
                    "emoji": emoji,
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": self.bot_id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in self.reactions.values()
            ]
        return data


def walk_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every component, depth first (action rows, containers, sections, labels included)."""
    out: list[dict[str, Any]] = []
    for comp in components:
        out.append(comp)
        out.extend(walk_components(comp.get("components", [])))
        for key in ("component", "accessory"):
            if isinstance(comp.get(key), dict):
                out.extend(walk_components([comp[key]]))
    return out
