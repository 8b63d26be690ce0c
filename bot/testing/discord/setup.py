"""Building the fake's world: guilds, channels, roles, members, uploads and member posts.

Setup helpers are synchronous; when a bot is connected, the matching gateway events
(GUILD_CREATE, CHANNEL_CREATE/UPDATE, GUILD_ROLE_CREATE, GUILD_MEMBER_ADD) are queued and sent
before the next dispatch (or on ``await fake.flush()``), in order.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .checks import Upload
from .models import FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser, StoredMessage
from .payloads import (
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    EVERYONE_PERMISSIONS,
    overwrite_json,
    perm_value,
    snowflake,
)
from .shards import snowflake_on_shard

if TYPE_CHECKING:
    from .gateway import Gateway
    from .state import State


class WorldSetup:
    """Mixed into FakeDiscord."""

    if TYPE_CHECKING:  # provided by FakeDiscord
        state: State
        gateway: Gateway
        bot_user: FakeUser
        owner: FakeUser
        application_id: int
        shard_count: int
        guild: FakeGuild
        channel: FakeChannel
        incoming_webhooks: dict[int, tuple[str, FakeChannel]]

        def _queue(self, event: str, data: Any) -> None: ...

        def _member_or_user(
            self, who: FakeMember | FakeUser | None, channel: FakeChannel
        ) -> FakeMember | FakeUser: ...

        async def message_event(self, event: str, msg: StoredMessage) -> None: ...

    def add_guild(
        self,
        name: str = "Test Server",
        *,
        locale: str = "en-US",
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        bot_permissions: Any = BOT_PERMISSIONS,
        everyone_permissions: Any = EVERYONE_PERMISSIONS,
        shard: int | None = None,
    ) -> FakeGuild:
        """A guild; ``shard``: one whose id lands on that shard of ``fake.shard_count``."""
        guild_id = snowflake() if shard is None else snowflake_on_shard(shard, self.shard_count)
        guild = FakeGuild(guild_id, name, self.owner.id, locale, upload_limit)
        guild.roles.append(FakeRole(guild_id, "@everyone", perm_value(everyone_permissions)))
        bot_role = FakeRole(snowflake(), self.bot_user.name, perm_value(bot_permissions), 1)
        bot_role.bot_id = self.bot_user.id
        guild.roles.append(bot_role)
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, guild, [bot_role])
        self.state.guilds[guild.id] = guild
        if self.gateway.sessions:
            self._queue("GUILD_CREATE", guild.to_json(with_members=False, bot_id=self.bot_user.id))
        return guild

    def add_channel(
        self,
        guild: FakeGuild | None = None,
        name: str = "general",
        *,
        bot_permissions: Any = None,
        topic: str | None = None,
        nsfw: bool = False,
    ) -> FakeChannel:
        """A text channel; ``bot_permissions`` (if given) are exactly what the bot may do there;
        ``nsfw``: age-restricted."""
        guild = guild or self.guild
        channel = FakeChannel(
            snowflake(), name, guild, position=len(guild.channels), topic=topic, nsfw=nsfw
        )
        guild.channels.append(channel)
        self.state.channels[channel.id] = channel
        if bot_permissions is not None:
            self._set_bot_overwrite(channel, perm_value(bot_permissions))
        self._queue("CHANNEL_CREATE", channel.to_json())
        return channel

    def add_webhook(self, channel: FakeChannel | None = None) -> str:
        """An incoming webhook posting in ``channel`` (default fake.channel); its URL, as
        Discord shows it (discord.py sends to the fake's API base whatever the URL's host)."""
        webhook_id = snowflake()
        token = secrets.token_urlsafe(51)  # 68 characters, like Discord's
        self.incoming_webhooks[webhook_id] = (token, channel or self.channel)
        return f"https://discord.com/api/webhooks/{webhook_id}/{token}"

    def remove_channel(self, channel: FakeChannel) -> None:
        """Delete ``channel`` as an admin would (CHANNEL_DELETE): asking for it is 404 10003."""
        if channel.guild is not None and channel in channel.guild.channels:
            channel.guild.channels.remove(channel)
        self.state.channels.pop(channel.id, None)
        self._queue("CHANNEL_DELETE", channel.to_json())

    def add_thread(self, parent: FakeChannel, name: str = "a thread") -> FakeChannel:
        """A public thread in ``parent`` (THREAD_CREATE); it has the parent's permissions."""
        assert parent.guild is not None
        thread = FakeChannel(snowflake(), name, parent.guild, type=11, parent=parent)
        parent.guild.threads.append(thread)
        self.state.channels[thread.id] = thread
        self._queue("THREAD_CREATE", {**thread.to_json(), "newly_created": True})
        return thread

    def set_bot_permissions(self, channel: FakeChannel, permissions: Any) -> None:
        """Make ``permissions`` exactly what the bot may do in ``channel`` (CHANNEL_UPDATE)."""
        self._set_bot_overwrite(channel, perm_value(permissions))
        self._queue("CHANNEL_UPDATE", channel.to_json())

    def _set_bot_overwrite(self, channel: FakeChannel, allow: int) -> None:
        channel.overwrites = [o for o in channel.overwrites if o["id"] != str(self.bot_user.id)]
        deny = ALL_PERMISSIONS & ~allow
        channel.overwrites.append(overwrite_json(self.bot_user.id, 1, allow, deny))

    def add_role(self, guild: FakeGuild | None, name: str, permissions: Any = 0) -> FakeRole:
        guild = guild or self.guild
        role = FakeRole(snowflake(), name, perm_value(permissions), len(guild.roles))
        guild.roles.append(role)
        self._queue("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.to_json()})
        return role

    def add_user(self, name: str, *, locale: str = "en-US", accepts_dms: bool = True) -> FakeUser:
        user = FakeUser(snowflake(), name, locale=locale, accepts_dms=accepts_dms)
        self.state.users[user.id] = user
        return user

    def add_member(
        self,
        guild: FakeGuild | None,
        name: str,
        *,
        permissions: Any = None,
        roles: Sequence[FakeRole | str | int] = (),
        locale: str = "en-US",
        accepts_dms: bool = True,
        user: FakeUser | None = None,
    ) -> FakeMember:
        """A member; ``permissions`` become a role of their own named "<name> role".

        ``user``: an existing user joins ``guild`` too (one person in two servers)."""
        guild = guild or self.guild
        if user is None:
            user = self.add_user(name, locale=locale, accepts_dms=accepts_dms)
        member_roles = [r if isinstance(r, FakeRole) else guild.role(r) for r in roles]
        if permissions is not None:
            member_roles.append(self.add_role(guild, f"{name} role", permissions))
        member = FakeMember(user, guild, member_roles)
        guild.members[user.id] = member
        data = {**member.to_json(), "guild_id": str(guild.id)}
        self._queue("GUILD_MEMBER_ADD", data)
        return member

    def dm_channel(self, user: FakeUser | FakeMember) -> FakeChannel:
        plain = user if isinstance(user, FakeUser) else user.user
        if plain.id not in self.state.dm_channels:
            channel = FakeChannel(snowflake(), "", None, type=1, recipient=plain)
            self.state.dm_channels[plain.id] = channel
            self.state.channels[channel.id] = channel
        return self.state.dm_channels[plain.id]

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        description: str | None = None,
    ) -> dict[str, Any]:
        """A member's upload: the attachment JSON for an option (bytes served by the CDN)."""
        att = self.state.store_attachment(
            data,
            filename,
            content_type,
            folder=f"ephemeral-attachments/{self.application_id}",
            description=description,
            ephemeral=True,
        )
        return att.to_json()

    async def post_message(
        self,
        content: str = "",
        *,
        user: FakeMember | FakeUser | None = None,
        channel: FakeChannel | None = None,
        files: dict[str, bytes] | None = None,
    ) -> StoredMessage:
        """A member posts a message (MESSAGE_CREATE to the bot, if its intents ask for it)."""
        channel = channel or self.channel
        who = self._member_or_user(user, channel)
        plain = who.user if isinstance(who, FakeMember) else who
        uploads = [Upload(i, n, d) for i, (n, d) in enumerate((files or {}).items())]
        msg = self.state.new_message(channel, plain, {"content": content}, uploads, source="user")
        await self.message_event("MESSAGE_CREATE", msg)
        return msg
