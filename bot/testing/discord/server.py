"""FakeDiscord: an in-process Discord (REST v10, gateway, CDN) for a real discord.py client.

    async with FakeDiscord() as fake:
        async with fake.running(bot):              # points discord.py here, starts, waits ready
            handle = await fake.slash("imagine", {"prompt": "a cat"})
            assert (await handle.response()).type == 5
            msg = await handle.wait_message(lambda m: bool(m.attachments))
        assert fake.spec_violations == []

Defaults: one guild ``fake.guild`` with one text channel ``fake.channel``, an admin member
``fake.admin`` (Manage Server + Manage Messages), an ordinary member ``fake.user``, and the bot
(``fake.bot_user``, whose id is also the application id).

Sharding: ``FakeDiscord(shard_count=2)`` makes ``GET /gateway/bot`` recommend 2 shards;
``add_guild(shard=1)`` puts a guild on shard 1 of them, and each guild's events reach only the
connections that IDENTIFYed as its shard (see :mod:`.shards`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web

from .checks import BodyChecker
from .gateway import Gateway, Session
from .handle import InteractionHandle
from .interactions import InteractionActions
from .models import FakeChannel, FakeGuild, FakeMember, FakeUser, StoredMessage
from .payloads import (
    ADMIN_PERMISSIONS,
    emoji_key,
    partial_emoji,
    snowflake,
)
from .ratelimits import RouteLimit
from .rest import FailureRule, RequestRecord, Rest
from .setup import WorldSetup
from .shards import shard_of
from .state import State
from .webhooks import Webhooks

Predicate = Callable[[StoredMessage], bool]


class FakeDiscord(WorldSetup, InteractionActions):
    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_name: str = "ImageBot",
        response_deadline: float | None = 3.0,
        privileged_intents: int = 0,
        application_flags: int = 0,
        heartbeat_interval_ms: int = 41250,
        default_setup: bool = True,
        shard_count: int = 1,
    ) -> None:
        self.token = token
        #: The shard count ``GET /gateway/bot`` recommends; with ``sharding_required`` an
        #: IDENTIFY with fewer shards is closed 4011, as Discord does past 2,500 guilds a shard.
        self.shard_count = shard_count
        self.sharding_required = False
        #: ``session_start_limit``: IDENTIFYs allowed per day, and how many shards may
        #: IDENTIFY at once (reported, not enforced).
        self.session_start_total = 1000
        self.max_concurrency = 1
        self.response_deadline = response_deadline
        self.privileged_intents = privileged_intents
        self.application_flags = application_flags
        #: The Developer Portal's "Public Bot" switch: whether anyone may add the bot.
        self.bot_public = True
        self.application_id = snowflake()
        self.bot_user = FakeUser(self.application_id, bot_name, bot=True)
        self.owner = FakeUser(snowflake(), "operator")
        self.state = State(self.bot_user, self.application_id)
        self.state.users[self.owner.id] = self.owner
        self.commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[RequestRecord] = []
        self.unhandled_requests: list[RequestRecord] = []
        self.cdn_requests: list[str] = []
        #: While set to an unset event, CDN downloads wait for it (a slow CDN, in the test's hands).
        self.cdn_gate: asyncio.Event | None = None
        #: Seconds each CDN download takes to answer (a slow CDN, to see downloads overlap).
        self.cdn_delay = 0.0
        #: CDN downloads being answered now, and the most there ever were at once.
        self.cdn_in_flight = 0
        self.cdn_max_in_flight = 0
        #: While set to an unset event, interaction callbacks are taken (Discord shows them)
        #: but their HTTP answer waits for it: a bot killed then never saw its defer answered.
        self.callback_gate: asyncio.Event | None = None
        #: While set to an unset event, follow-ups with files (results) wait for it before
        #: they are posted; one whose sender is gone by then (killed) is never posted.
        self.followup_gate: asyncio.Event | None = None
        #: Incoming webhooks (:meth:`add_webhook`): id -> (token, the channel it posts in).
        self.incoming_webhooks: dict[int, tuple[str, FakeChannel]] = {}
        self.spec_violations: list[str] = []
        self.identify_payloads: list[dict[str, Any]] = []
        self.gateway_requests: list[dict[str, Any]] = []
        self.failure_rules: list[FailureRule] = []
        #: Per-route rate limits (none by default; see :meth:`limit_route`).
        self.route_limits: list[RouteLimit] = []
        self.checker = BodyChecker(self.spec_violations)
        self.gateway = Gateway(self, heartbeat_interval_ms)
        self._pending: list[tuple[str, Any]] = []
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        if default_setup:
            self.guild = self.add_guild("Test Server")
            self.channel = self.add_channel(self.guild, "general")
            self.admin = self.add_member(self.guild, "alice", permissions=ADMIN_PERMISSIONS)
            self.user = self.add_member(self.guild, "bob")

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        rest, webhooks = Rest(self), Webhooks(self)
        app = web.Application(middlewares=[rest.middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self.gateway.handle)
        webhooks.install(app)
        rest.install(app)
        # Uploads read in big pieces (aiohttp's 64 KB default pauses the socket a dozen times
        # per 1.6 MB result, and the bot's writes wait for it), as Discord's edge takes them.
        self._runner = web.AppRunner(
            app, shutdown_timeout=1.0, access_log=None, read_bufsize=1024 * 1024
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = self.state.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this fake (restored on exit)."""
        import discord.gateway
        import discord.http
        import yarl

        old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old

    @contextlib.asynccontextmanager
    async def running(
        self,
        client: Any,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> AsyncIterator[Any]:
        """Start a discord.py client against the fake, wait until it is ready, close it after."""
        with self.patch_discord():
            ready_before = self.gateway.ready_count
            task = asyncio.create_task(client.start(self.token))
            try:
                await _until(task, self.wait_ready(count=ready_before + 1, timeout=timeout))
                await _until(task, asyncio.wait_for(client.wait_until_ready(), timeout))
                yield client
            finally:
                await client.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- gateway ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return any(s.connection is not None for s in self.gateway.sessions.values())

    def shard_of(self, guild: FakeGuild | int, count: int | None = None) -> int:
        """The shard (of ``count``, default ``shard_count``) that carries ``guild``'s events."""
        guild_id = guild if isinstance(guild, int) else guild.id
        return shard_of(guild_id, count or self.shard_count)

    def sessions_of(self, shard_id: int) -> list[Session]:
        """The gateway sessions that IDENTIFYed as ``shard_id``, oldest first."""
        return [s for s in self.gateway.sessions.values() if s.shard_id == shard_id]

    async def wait_ready(
        self,
        *,
        count: int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until READY and every GUILD_CREATE were sent (to ``count`` IDENTIFYs in total,
        or else to a connection that is open now)."""

        def check() -> bool | None:
            if count is not None:
                return True if self.gateway.ready_count >= count else None
            live = (s for s in self.gateway.sessions.values() if s.connection is not None)
            return True if any(s.ready for s in live) else None

        await self.state.pulse.wait_until(check, timeout, lambda: "a client to IDENTIFY")

    async def dispatch(self, event: str, data: Any) -> int:
        """Send a gateway event (after any queued ones); returns how many connections got it."""
        async with self._flush_lock:
            pending, self._pending = self._pending, []
            for queued_event, queued in pending:
                await self.gateway.dispatch(queued_event, queued)
            return await self.gateway.dispatch(event, data)

    async def flush(self) -> None:
        """Send events queued by the synchronous setup helpers (dispatch() does this too)."""
        async with self._flush_lock:
            pending, self._pending = self._pending, []
            for event, data in pending:
                await self.gateway.dispatch(event, data)

    def _queue(self, event: str, data: Any) -> None:
        if not self.gateway.sessions:
            return  # nobody connected yet: READY/GUILD_CREATE will carry the change
        self._pending.append((event, data))
        with contextlib.suppress(RuntimeError):  # no running loop: the next dispatch() sends it
            task = asyncio.get_running_loop().create_task(self.flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def disconnect(self, code: int = 4000, *, shard: int | None = None) -> None:
        """Drop the bot's gateway connection, or that of one ``shard`` (4000: it reconnects
        and RESUMEs)."""
        await self.gateway.disconnect(code, shard=shard)

    # -- reactions and message events -------------------------------------------------------

    async def react(
        self, message: StoredMessage | int, emoji: str, *, user: FakeMember | FakeUser | None = None
    ) -> None:
        """A member adds a reaction (MESSAGE_REACTION_ADD, with the guild_reactions intent)."""
        msg = self.state.find_message(message)
        if msg.ephemeral:
            raise ValueError("nobody can react to an ephemeral message")
        who = self._member_or_user(user, self.state.channels[msg.channel_id])
        plain = who.user if isinstance(who, FakeMember) else who
        await self.reaction_event(msg, partial_emoji(emoji), plain, add=True)

    async def unreact(
        self, message: StoredMessage | int, emoji: str, *, user: FakeMember | FakeUser | None = None
    ) -> None:
        msg = self.state.find_message(message)
        who = self._member_or_user(user, self.state.channels[msg.channel_id])
        plain = who.user if isinstance(who, FakeMember) else who
        await self.reaction_event(msg, partial_emoji(emoji), plain, add=False)

    async def reaction_event(
        self, msg: StoredMessage, emoji: dict[str, Any], user: FakeUser, *, add: bool
    ) -> None:
        key = emoji_key(emoji)
        data, users = msg.reactions.get(key, (emoji, []))
        if add == (user.id in users):
            return  # adding twice / removing what is not there: Discord sends nothing
        users = [*users, user.id] if add else [u for u in users if u != user.id]
        if users:
            msg.reactions[key] = (data, users)
        else:
            msg.reactions.pop(key, None)
        event: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "emoji": emoji,
            "burst": False,
            "type": 0,
        }
        if msg.guild_id is not None:
            event["guild_id"] = str(msg.guild_id)
            member = self.state.guilds[msg.guild_id].members.get(user.id)
            if add and member is not None:
                event["member"] = member.to_json()
        if add:
            event.update(message_author_id=msg.author["id"], burst_colors=[])
        self.state.pulse.fire()
        await self.dispatch("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", event)

    async def message_event(self, event: str, msg: StoredMessage) -> None:
        """Tell the gateway about a created/edited/deleted message (never for ephemeral ones)."""
        if msg.ephemeral or not self.gateway.sessions:
            return
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        else:
            data = msg.to_json()
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            member = self.state.guilds[msg.guild_id].members.get(int(msg.author["id"]))
            if member is not None and event != "MESSAGE_DELETE":
                data["member"] = {k: v for k, v in member.to_json().items() if k != "user"}
        await self.dispatch(event, data)

    # -- test-facing queries ----------------------------------------------------------------

    def messages(
        self,
        channel: FakeChannel | int | None = None,
        *,
        sources: Sequence[str] = ("channel", "user"),
    ) -> list[StoredMessage]:
        """Messages in ``channel`` (default fake.channel), oldest first, deleted ones included.

        ``sources``: "channel" (bot posts), "user" (member posts), "response"/"followup"
        (interaction messages, usually read through an InteractionHandle)."""
        channel_id = (channel or self.channel).id if not isinstance(channel, int) else channel
        found = self.state.messages.values()
        return [m for m in found if m.channel_id == channel_id and m.source in sources]

    async def wait_for_message(
        self,
        predicate: Predicate | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        channel: FakeChannel | None = None,
        sources: Sequence[str] = ("channel",),
    ) -> StoredMessage:
        """The first undeleted message the bot posted in a channel (not via a webhook) that
        matches ``predicate`` (messages already there count)."""

        def check() -> StoredMessage | None:
            for msg in self.state.messages.values():
                if msg.deleted or msg.source not in sources:
                    continue
                if channel is not None and msg.channel_id != channel.id:
                    continue
                if predicate is None or predicate(msg):
                    return msg
            return None

        def describe() -> str:
            seen = [
                f"{m.source} in {m.channel_id}: {m.content[:60]!r}"
                for m in self.state.messages.values()
            ]
            return f"a matching message (stored: {seen or 'none'})"

        return await self.state.pulse.wait_until(check, timeout, describe)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        code: int = 0,
        message: str = "",
        *,
        times: int = 1,
        retry_after: float = 0.05,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` ("*" for any) and
        ``path_regex`` (searched in the path after /api/v10) with a Discord error. A 429 carries
        ``retry_after`` and the headers discord.py needs to retry."""
        rule = FailureRule(method.upper(), re.compile(path_regex), status, code, message, times)
        rule.retry_after = retry_after
        self.failure_rules.append(rule)

    def limit_route(self, method: str, path_regex: str, limit: int, per: float) -> RouteLimit:
        """Let ``limit`` requests per ``per`` seconds through each bucket of the routes that
        ``method`` ("*" for any) and ``path_regex`` (searched after /api/v10) match, and answer
        the rest 429 as Discord does; ``RouteLimit.refused`` counts those answers."""
        rule = RouteLimit(method.upper(), re.compile(path_regex), limit, per)
        self.route_limits.append(rule)
        return rule

    def expire_interaction(self, interaction: InteractionHandle | str) -> None:
        """Make a token unusable (older than 15 min): callbacks 10062, webhook calls 50027."""
        token = interaction if isinstance(interaction, str) else interaction.token
        self.state.by_token[token].expired = True

    def interaction(self, token_or_id: str | int) -> InteractionHandle:
        state = self.state
        rec = state.by_token.get(str(token_or_id)) or state.interactions[int(token_or_id)]
        return InteractionHandle(self, rec)


async def _until(task: asyncio.Task[Any], waiter: Any) -> None:
    """Await ``waiter`` unless ``task`` (the client) ends first; then re-raise its error."""
    wait_task = asyncio.ensure_future(waiter)
    done, _ = await asyncio.wait({task, wait_task}, return_when=asyncio.FIRST_COMPLETED)
    if wait_task in done:
        wait_task.result()
        return
    wait_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await wait_task
    task.result()
    raise RuntimeError("the client stopped before it was ready")
