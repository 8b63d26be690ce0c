"""The fake Discord's sharding: GET /gateway/bot, IDENTIFY with ``shard``, events by shard.

Against a real discord.py AutoShardedClient (as a sharded bot process runs it) and against raw
websockets (the close codes and the routing, frame by frame).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from bot.testing.discord import FakeDiscord


class ShardClient(discord.AutoShardedClient):
    """Records the interactions and reactions it receives, with the shard they came on."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_reactions = True
        super().__init__(intents=intents, guild_ready_timeout=0.05, **options)
        self.seen: list[tuple[str, int | None]] = []
        self.tree = app_commands.CommandTree(self)

        @self.tree.command(description="Answers ok")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ok", ephemeral=True)

        self.reacted = asyncio.Event()

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No pause between the shards' IDENTIFYs (discord.py waits 5 s for Discord's sake)."""

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.seen.append(("interaction", interaction.guild_id))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.seen.append(("reaction", payload.guild_id))
        self.reacted.set()


@pytest.fixture
async def two_shards() -> AsyncIterator[FakeDiscord]:
    """A fake recommending 2 shards, with a guild (and channel, member) on each."""
    async with FakeDiscord(shard_count=2, default_setup=False) as fake:
        for shard in (0, 1):
            guild = fake.add_guild(f"Server {shard}", shard=shard)
            fake.add_channel(guild, "general")
            fake.add_member(guild, f"member{shard}")
        yield fake


def guild_on(fake: FakeDiscord, shard: int) -> Any:
    return next(g for g in fake.state.guilds.values() if fake.shard_of(g) == shard)


def member_of(guild: Any) -> Any:
    return next(m for m in guild.members.values() if not m.user.bot)


async def test_gateway_bot_reports_the_shard_count_and_session_start_limit(
    two_shards: FakeDiscord,
) -> None:
    fake = two_shards
    fake.max_concurrency = 16
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.api_base + "/gateway/bot", headers=headers) as response:
            before = await response.json()
        async with fake.running(ShardClient(shard_ids=[1], shard_count=2)):
            pass
        async with http.get(fake.api_base + "/gateway/bot", headers=headers) as response:
            after = await response.json()
    assert before["url"] == fake.gateway_url and before["shards"] == 2
    assert before["session_start_limit"] == {
        "total": 1000,
        "remaining": 1000,
        "reset_after": 86_400_000,
        "max_concurrency": 16,
    }
    assert after["session_start_limit"]["remaining"] == 999  # one IDENTIFY spent one
    assert fake.spec_violations == []


async def test_a_process_for_shard_1_gets_only_the_guilds_of_shard_1(
    two_shards: FakeDiscord,
) -> None:
    fake = two_shards
    mine, other = guild_on(fake, 1), guild_on(fake, 0)
    client = ShardClient(shard_ids=[1], shard_count=2)
    async with fake.running(client):
        assert [p["shard"] for p in fake.identify_payloads] == [[1, 2]]
        assert client.get_guild(mine.id) is not None
        assert client.get_guild(other.id) is None
        (session,) = fake.sessions_of(1)
        ready = session.events("READY")[0]["d"]
        assert ready["shard"] == [1, 2]
        assert [g["id"] for g in ready["guilds"]] == [str(mine.id)]
        assert [e["d"]["id"] for e in session.events("GUILD_CREATE")] == [str(mine.id)]

        handle = await fake.slash("ping", channel=mine.channels[0], user=member_of(mine))
        assert (await handle.response()).type == 4
        with pytest.raises(RuntimeError, match="no bot is connected"):
            await fake.slash("ping", channel=other.channels[0], user=member_of(other))
        message = fake.state.new_message(
            mine.channels[0], fake.bot_user, {"content": "hi"}, [], source="channel"
        )
        await fake.react(message, "👍", user=member_of(mine))
        other_message = fake.state.new_message(
            other.channels[0], fake.bot_user, {"content": "hi"}, [], source="channel"
        )
        await fake.react(other_message, "👍", user=member_of(other))
        await asyncio.wait_for(client.reacted.wait(), 5)
        # Events of a guild added later follow its shard too.
        late = fake.add_guild("Late", shard=0)
        await fake.flush()
    assert client.seen == [("interaction", mine.id), ("reaction", mine.id)]
    assert all(e["d"]["id"] != str(late.id) for e in session.events("GUILD_CREATE"))
    assert fake.spec_violations == []


async def test_two_shard_processes_split_the_guilds_and_dms_go_to_shard_0(
    two_shards: FakeDiscord,
) -> None:
    fake = two_shards
    zero, one = ShardClient(shard_ids=[0], shard_count=2), ShardClient(shard_ids=[1], shard_count=2)
    async with fake.running(zero), fake.running(one):
        for shard in (0, 1):
            guild = guild_on(fake, shard)
            handle = await fake.slash("ping", channel=guild.channels[0], user=member_of(guild))
            assert (await handle.response()).type == 4
        member = member_of(guild_on(fake, 1))
        handle = await fake.slash("ping", channel=fake.dm_channel(member), user=member.user)
        assert (await handle.response()).type == 4
    assert zero.seen == [("interaction", guild_on(fake, 0).id), ("interaction", None)]
    assert one.seen == [("interaction", guild_on(fake, 1).id)]
    assert {g.id for g in zero.guilds} == {guild_on(fake, 0).id}
    assert fake.spec_violations == []


async def test_auto_sharded_client_launches_every_recommended_shard(
    two_shards: FakeDiscord,
) -> None:
    fake = two_shards
    client = ShardClient()
    async with fake.running(client):
        await fake.wait_ready(count=2)
        await asyncio.wait_for(client.wait_until_ready(), 5)
        assert sorted(p["shard"] for p in fake.identify_payloads) == [[0, 2], [1, 2]]
        assert {g.id for g in client.guilds} == set(fake.state.guilds)
        assert set(client.shards) == {0, 1}
    assert ("GET", "/gateway/bot") in [(r.method, r.path) for r in fake.requests]


async def test_sharding_required_refuses_too_few_shards(two_shards: FakeDiscord) -> None:
    fake = two_shards
    fake.sharding_required = True
    with pytest.raises(discord.ConnectionClosed) as closed:
        async with fake.running(ShardClient(shard_ids=[0], shard_count=1)):
            pass
    assert closed.value.code == 4011


async def raw_identify(fake: FakeDiscord, shard: Any) -> tuple[aiohttp.ClientSession, Any]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(fake.gateway_url + "?v=10&encoding=json")
    assert (await ws.receive_json(timeout=5))["op"] == 10
    identify: dict[str, Any] = {"token": fake.token, "intents": 1, "properties": {}}
    if shard is not None:
        identify["shard"] = shard
    await ws.send_json({"op": 2, "d": identify})
    return http, ws


@asynccontextmanager
async def raw_session(fake: FakeDiscord, shard: Any) -> AsyncIterator[Any]:
    http, ws = await raw_identify(fake, shard)
    try:
        yield ws
    finally:
        await ws.close()
        await http.close()


async def close_code(fake: FakeDiscord, shard: Any) -> int:
    async with raw_session(fake, shard) as ws:
        closing = await ws.receive(timeout=5)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    return int(closing.data)


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], "0,1", [0, "2"], [True, 2]])
async def test_an_invalid_shard_is_closed_4010(two_shards: FakeDiscord, shard: Any) -> None:
    assert await close_code(two_shards, shard) == 4010
    assert two_shards.gateway.sessions == {}


@pytest.mark.parametrize("shard", [None, [0, 1]])
async def test_too_few_shards_when_required_are_closed_4011(
    two_shards: FakeDiscord, shard: Any
) -> None:
    two_shards.sharding_required = True
    assert await close_code(two_shards, shard) == 4011


async def receive_dispatches(ws: Any, seconds: float = 0.3) -> list[tuple[str, Any]]:
    """The dispatches that arrive within ``seconds`` (as event name and guild id)."""
    got: list[tuple[str, Any]] = []
    try:
        while True:
            payload = await ws.receive_json(timeout=seconds)
            if payload["op"] == 0:
                data = payload["d"]
                got.append((payload["t"], data.get("guild_id") or data.get("id")))
    except TimeoutError:
        return got


async def test_raw_connections_get_their_shards_events_only(two_shards: FakeDiscord) -> None:
    fake = two_shards
    g0, g1 = guild_on(fake, 0), guild_on(fake, 1)
    async with raw_session(fake, [0, 2]) as ws0, raw_session(fake, [1, 2]) as ws1:
        start0, start1 = await receive_dispatches(ws0), await receive_dispatches(ws1)
        assert [e for e, _ in start0] == ["READY", "GUILD_CREATE"]
        assert start0[1] == ("GUILD_CREATE", str(g0.id))
        assert start1[1] == ("GUILD_CREATE", str(g1.id))
        assert await fake.dispatch("TYPING_START", {"guild_id": str(g1.id)}) == 1
        assert await fake.dispatch("TYPING_START", {"channel_id": "5"}) == 1  # no guild: shard 0
        assert await fake.dispatch("GUILD_UPDATE", {"id": str(g0.id)}) == 1
        got0, got1 = await receive_dispatches(ws0), await receive_dispatches(ws1)
    assert got0 == [("TYPING_START", None), ("GUILD_UPDATE", str(g0.id))]
    assert got1 == [("TYPING_START", str(g1.id))]


async def test_without_shard_a_connection_gets_every_guild(two_shards: FakeDiscord) -> None:
    async with raw_session(two_shards, None) as ws:
        events = await receive_dispatches(ws)
    assert sorted(g for e, g in events if e == "GUILD_CREATE") == sorted(
        str(g) for g in two_shards.state.guilds
    )
