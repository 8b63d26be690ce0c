"""The fake gateway: HELLO, heartbeats, IDENTIFY/READY/GUILD_CREATE, RESUME and dispatches.

Transport compression follows the connect query: ``compress=zlib-stream`` gives binary frames that
form ONE zlib stream, each message ending with a Z_SYNC_FLUSH (``00 00 ff ff``);
``compress=zstd-stream`` works when ``zstandard`` is installed; no ``compress`` gives text frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from .payloads import EVENT_INTENTS, PRIVILEGED_INTENTS, Intent
from .shards import InvalidShard, event_guild, placement, shard_of

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger(__name__)

NON_RESUMABLE_CLOSES = {1000, 1001, 4004, 4010, 4011, 4012, 4013, 4014}
BACKLOG = 1000


class _Compressor:
    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._zlib = zlib.compressobj() if kind == "zlib-stream" else None
        self._zstd: Any = None
        if kind == "zstd-stream":
            import zstandard  # the client only asks for zstd-stream when it has it

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def encode(self, text: str) -> bytes | str:
        if self._zlib is not None:
            return self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._zstd is not None:
            data: bytes = self._zstd.compress(text.encode()) + self._zstd.flush(self._flush_block)
            return data
        return text


@dataclass(eq=False)
class Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    connection: Connection | None = None
    resumable: bool = True
    ready: bool = False
    backlog: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shard_id(self) -> int:
        return self.shard[0] if self.shard else 0

    @property
    def shard_count(self) -> int:
        return self.shard[1] if self.shard else 1

    def carries(self, guild_id: int | None) -> bool:
        """Whether this session gets the events of ``guild_id`` (None: DMs, shard 0's)."""
        if guild_id is None:
            return self.shard_id == 0
        return shard_of(guild_id, self.shard_count) == self.shard_id

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The dispatches sent to this session (its backlog), of one event or all."""
        return [p for p in self.backlog if name is None or p["t"] == name]


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    compressor: _Compressor
    session: Session | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:  # one shared compression stream: encode and send in order
            if self.ws.closed:
                return
            frame = self.compressor.encode(json.dumps(payload, separators=(",", ":")))
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)


class Gateway:
    def __init__(self, fake: FakeDiscord, heartbeat_interval_ms: int) -> None:
        self.fake = fake
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.ready_count = 0
        #: IDENTIFYs accepted so far: each spends one of the session start limit's ``total``.
        self.identify_count = 0
        self.queries: list[dict[str, str]] = []
        self.dropped: list[tuple[str, dict[str, Any]]] = []

    @property
    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.connection is not None]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        kind = request.query.get("compress")
        self.queries.append(dict(request.query))
        if request.query.get("v", "10") != "10":
            await ws.close(code=4012, message=b"Invalid API version")
            return ws
        if request.query.get("encoding", "json") != "json" or kind not in (
            None,
            "zlib-stream",
            "zstd-stream",
        ):
            await ws.close(code=4002, message=b"Decode error")
            return ws
        conn = Connection(ws, _Compressor(kind))
        self.connections.add(conn)
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gw"]}
            await conn.send({"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                await self._on_payload(conn, payload)
        finally:
            self.connections.discard(conn)
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
                if ws.close_code in NON_RESUMABLE_CLOSES:
                    session.resumable = False
            self.fake.state.pulse.fire()
        return ws

    async def _on_payload(self, conn: Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif conn.session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif op == 8:
            await self._member_chunk(conn.session, data or {})
        elif op in (3, 4):
            self.fake.gateway_requests.append(payload)
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        self.fake.identify_payloads.append(data)
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if data.get("token") != self.fake.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        try:
            _, shard_count = placement(data.get("shard"))
        except InvalidShard:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        if self.fake.sharding_required and shard_count < self.fake.shard_count:
            await conn.ws.close(code=4011, message=b"Sharding required.")
            return
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.fake.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = Session(secrets.token_hex(16), intents, data.get("shard"))
        self.sessions[session.id] = session
        self.identify_count += 1
        session.connection = conn
        conn.session = session
        await self._send_dispatch(session, "READY", self._ready_payload(session))
        bot_id = self.fake.state.bot_user.id
        for guild in self.fake.state.guilds.values():
            if not session.carries(guild.id):
                continue
            with_members = bool(intents & Intent.GUILD_MEMBERS)
            guild_json = guild.to_json(with_members=with_members, bot_id=bot_id)
            await self._send_dispatch(session, "GUILD_CREATE", guild_json)
        session.ready = True
        self.ready_count += 1
        self.fake.state.pulse.fire()

    def _ready_payload(self, session: Session) -> dict[str, Any]:
        user = {**self.fake.state.bot_user.to_json(), "verified": True, "mfa_enabled": False}
        ready: dict[str, Any] = {
            "v": 10,
            "user": user,
            "guilds": [
                {"id": str(g), "unavailable": True}
                for g in self.fake.state.guilds
                if session.carries(g)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.fake.gateway_url,
            "application": {
                "id": str(self.fake.application_id),
                "flags": self.fake.application_flags,
            },
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "user_settings": {},
            "_trace": ["fake-gw"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self.fake.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if session is None or not session.resumable:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        previous, session.connection = session.connection, conn
        if previous is not None:  # the old socket is not closed yet on our side: replace it
            previous.session = None
            await previous.ws.close(code=4000, message=b"Session resumed elsewhere.")
        conn.session = session
        last_seen = int(data.get("seq") or 0)
        for payload in session.backlog:
            if payload["s"] > last_seen:
                await conn.send(payload)
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-gw"]})
        self.fake.state.pulse.fire()

    async def _member_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild = self.fake.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None or not session.carries(guild.id):
            return
        ids = {str(u) for u in data.get("user_ids") or []}
        members = [m.to_json() for m in guild.members.values() if not ids or str(m.id) in ids]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _send_dispatch(self, session: Session, event: str, data: Any) -> bool:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.backlog = [*session.backlog[-BACKLOG:], payload]
        if session.connection is None:
            return False
        await session.connection.send(payload)
        return True

    def _wants(self, session: Session, event: str, data: Any) -> bool:
        needed = EVENT_INTENTS.get(event)
        if needed is None or not isinstance(data, dict):
            return True
        intent = needed[0] if data.get("guild_id") else needed[1]
        return bool(session.intents & intent)

    async def dispatch(self, event: str, data: Any) -> int:
        """Send an event to every session of its guild's shard (buffered for resumable,
        disconnected ones).

        Returns how many live connections received it; events a session's intents exclude are
        not sent (they are listed in ``dropped``), as Discord does.
        """
        delivered = 0
        guild_id = event_guild(event, data)
        for session in list(self.sessions.values()):
            if not (session.connection is not None or session.resumable):
                continue
            if not session.carries(guild_id):
                continue
            if not self._wants(session, event, data):
                self.dropped.append((event, data))
                continue
            bot_id = str(self.fake.state.bot_user.id)
            if await self._send_dispatch(session, event, _redact(session, event, data, bot_id)):
                delivered += 1
        return delivered

    async def disconnect(
        self, code: int = 4000, *, resumable: bool | None = None, shard: int | None = None
    ) -> None:
        """Close every live connection (of one ``shard``) with ``code`` (4000: the client
        reconnects and resumes)."""
        for conn in list(self.connections):
            if shard is not None and (conn.session is None or conn.session.shard_id != shard):
                continue
            session, conn.session = conn.session, None
            if session is not None:
                session.connection = None
                session.resumable = (
                    code not in NON_RESUMABLE_CLOSES if resumable is None else resumable
                )
            await conn.ws.close(code=code, message=b"fake gateway closed the connection")

    async def close(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"fake gateway shutting down")


def _redact(session: Session, event: str, data: Any, bot_id: str) -> Any:
    """Without MESSAGE_CONTENT, guild messages lose their content unless they ping the bot."""
    if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        return data
    if session.intents & Intent.MESSAGE_CONTENT:
        return data
    if not isinstance(data, dict) or not data.get("guild_id"):
        return data
    author_id = (data.get("author") or {}).get("id")
    pinged = any(u.get("id") == bot_id for u in data.get("mentions") or [])
    if author_id == bot_id or pinged:
        return data
    return {**data, "content": "", "embeds": [], "attachments": [], "components": []}
