"""The bot as several processes, started as an operator starts them: ``python -m bot run
--shard-count N --shard-ids ... [--no-worker]`` and ``python -m bot worker``, on PostgreSQL.

The fake Discord and the fake image API run in the test's event loop; each process gets its
database from ``DATABASE_URL`` and its secrets from the environment, as a deployment does.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.db import create_engine, create_sessionmaker
from bot.db.models import JobStatus, Process
from bot.jobs import store
from bot.testing.discord import FakeDiscord, FakeGuild, FakeMember
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import BotProcess, bot_env, bot_process, run_cli, write_config

IMAGINE = {"prompt": "a lighthouse", "size": "256x256"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["worker"], "worker (a process that runs the jobs other processes queue) needs Postgre"),
        (["run", "--no-worker"], "run --no-worker (a gateway that leaves the jobs to workers) ne"),
        (["run", "--shard-count", "2", "--shard-ids", "1"], "run for some of the shards"),
        (["run", "--shard-ids", "0"], "--shard-ids needs --shard-count"),
        (["run", "--shard-count", "2", "--shard-ids", "2"], "shard 2 is not one of the 2 shards"),
        (["run", "--shard-count", "0"], "--shard-count must be 1 or more (got 0)"),
        (["run", "--shard-count", "2", "--shard-ids", "0;1"], "like 0,1 (got '0;1')"),
        (["run", "--shard-count", "2", "--shard-ids", "1,1"], "names a shard twice (1,1)"),
    ],
)
async def test_process_flags_that_cannot_work_are_one_line_and_exit_2(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    args: list[str],
    says: str,
) -> None:
    """On SQLite (the config's database) nobody else would run the jobs or the other shards."""
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"  # the split ones need PostgreSQL
    config = write_config(tmp_path, fake_discord, fake_images_api, database_url=sqlite)
    env = bot_env(fake_discord.token, fake_images_api.api_key)
    code, _, err = await run_cli(*args, "--config", str(config), env=env)
    assert code == 2, err
    line = one_error_line(err)
    assert says in line
    if "PostgreSQL" in line:
        assert 'url = "postgresql+asyncpg://..."' in line
    assert "Traceback" not in err
    assert fake_discord.requests == []  # refused before anything started


async def test_the_process_commands_have_help() -> None:
    code, out, _ = await run_cli("run", "--help")
    assert code == 0 and all(f in out for f in ("--shard-count", "--shard-ids", "--no-worker"))
    code, out, _ = await run_cli("worker", "--help")
    assert code == 0 and "connects to no gateway shard" in " ".join(out.split())


def sharded_world(fake: FakeDiscord) -> dict[int, tuple[FakeGuild, FakeMember]]:
    """A guild with a channel and a member on each of the fake's shards."""
    world = {}
    for shard in range(fake.shard_count):
        guild = fake.add_guild(f"Server {shard}", shard=shard)
        fake.add_channel(guild, "general")
        world[shard] = (guild, fake.add_member(guild, f"member{shard}"))
    return world


async def process_rows(url: str) -> list[tuple[str, str | None]]:
    """The live processes' rows (role, shards), as `check` lists them."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(Process.role, Process.shards))
            return [(role, shards) for role, shards in rows]
    finally:
        await engine.dispose()


async def queued_jobs(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        sessions = create_sessionmaker(engine)
        jobs = [await store.get_job(sessions, job_id) for job_id in (1, 2)]
        return [job for job in jobs if job is not None]
    finally:
        await engine.dispose()


async def test_a_gateway_for_shard_1_connects_it_alone_and_queues_without_running(
    tmp_path: Path, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    async with FakeDiscord(shard_count=2, default_setup=False) as fake:
        world = sharded_world(fake)
        config = write_config(tmp_path, fake, fake_images_api)
        # A gateway runs no job: it needs no image API key.
        env = bot_env(fake.token, "") | {"DATABASE_URL": postgres_url}
        args = ["--shard-count", "2", "--shard-ids", "1", "--no-worker"]
        async with bot_process("run", config, env, args) as bot:
            try:
                await fake.wait_ready(timeout=20)
                await fake.state.pulse.wait_until(
                    lambda: True if fake.commands else None, 10, lambda: "the command sync"
                )
                guild, member = world[1]
                handle = await fake.slash(
                    "imagine", IMAGINE, user=member, channel=guild.channels[0]
                )
                assert (await handle.response()).type == 5
                status = await handle.wait_message(timeout=10)  # the private status: queued
                assert status.ephemeral
                other_guild, other_member = world[0]
                with pytest.raises(RuntimeError, match="no bot is connected"):
                    await fake.slash(
                        "imagine", IMAGINE, user=other_member, channel=other_guild.channels[0]
                    )
                jobs = await queued_jobs(postgres_url)
                assert await process_rows(postgres_url) == [("gateway", "1")]
            except BaseException:
                print(bot.output)
                raise
            assert await bot.stop() == 0, bot.output
    assert [p.get("shard") for p in fake.identify_payloads] == [[1, 2]]
    assert await process_rows(postgres_url) == []
    (session,) = fake.gateway.sessions.values()
    created = [e["d"]["id"] for e in session.events("GUILD_CREATE")]
    assert created == [str(world[1][0].id)]
    assert [(j.guild_id, j.status) for j in jobs] == [(world[1][0].id, JobStatus.QUEUED)]
    assert fake_images_api.requests == []
    assert "Traceback" not in bot.output
    assert fake.token not in bot.output
    assert fake.spec_violations == []


async def healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            return response.status, await response.json()
    except aiohttp.ClientConnectionError:
        return None


async def wait_healthy(bot: BotProcess, port: int) -> dict[str, Any]:
    """The /healthz body once it says ok (polled: the process serves it as soon as it starts)."""
    for _ in range(200):
        if bot.process.returncode is not None:
            pytest.fail(f"the process ended ({bot.process.returncode}):\n{bot.output}")
        answer = await healthz(port)
        if answer is not None and answer[0] == 200:
            return answer[1]
        await asyncio.sleep(0.1)
    pytest.fail(f"/healthz never said ok:\n{bot.output}")


async def test_a_worker_logs_in_over_rest_opens_no_gateway_and_stops_on_sigterm(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api)
    port = free_port()
    env = bot_env(fake.token, api.api_key) | {
        "DATABASE_URL": postgres_url,
        "IMAGEBOT_HTTP_ENABLED": "true",
        "IMAGEBOT_HTTP_PORT": str(port),
    }
    async with bot_process("worker", config, env) as bot:
        body = await wait_healthy(bot, port)
        assert body["checks"] == {"gateway": "ok", "database": "ok", "dispatcher": "ok"}
        assert await process_rows(postgres_url) == [("worker", None)]
        assert await bot.stop() == 0, bot.output
    assert await process_rows(postgres_url) == []  # a clean stop removes its row
    assert fake.gateway.queries == [] and fake.identify_payloads == []
    paths = [(r.method, r.path) for r in fake.requests]
    assert ("GET", "/users/@me") in paths and ("GET", "/gateway/bot") not in paths
    assert "over REST only" in bot.output and "stopping" in bot.output
    assert "Traceback" not in bot.output
    assert fake.token not in bot.output and api.api_key not in bot.output


async def test_a_gateway_process_and_a_worker_process_complete_a_job(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api)
    env = bot_env(fake.token, api.api_key) | {"DATABASE_URL": postgres_url}
    port = free_port()
    worker_env = env | {"IMAGEBOT_HTTP_ENABLED": "true", "IMAGEBOT_HTTP_PORT": str(port)}
    async with bot_process("worker", config, worker_env) as worker:
        await wait_healthy(worker, port)
        async with bot_process("run", config, env, ["--no-worker"]) as gateway:
            await fake.wait_ready(timeout=20)
            handle = await fake.slash("imagine", IMAGINE)
            assert (await handle.response()).type == 5
            result = await fake.wait_for_message(
                lambda m: bool(m.attachments), timeout=10, sources=("followup", "channel")
            )
            assert await gateway.stop() == 0, gateway.output
        assert await worker.stop() == 0, worker.output
    assert result.attachments[0].filename == "image_1.png"
    assert [r.body.get("prompt") for r in api.requests] == [IMAGINE["prompt"]]
