"""`python -m bot check` on PostgreSQL: which bot processes are alive (their heartbeats), and
a warning when jobs wait with no process to run them. Run as the operator runs it."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.db import Sessions, create_engine, create_sessionmaker
from bot.db.engine import Transactions
from bot.jobs import JobOrigin, store
from bot.jobs.leases import Leases
from bot.jobs.processes import ProcessInfo
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import run_cli
from tests.jobs.test_runner import order
from tests.ops.test_check import config, result_line


@asynccontextmanager
async def migrated(url: str, cfg: str, env: dict[str, str]) -> AsyncIterator[Sessions]:
    code, _, err = await run_cli("db", "upgrade", "--config", cfg, env=env)
    assert code == 0, err
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_check_lists_the_live_processes_with_their_role_shards_host_and_pid(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {
        "DISCORD_TOKEN": fake_discord.token,
        "OPENAI_API_KEY": fake_images_api.api_key,
        "DATABASE_URL": postgres_url,
    }
    async with migrated(postgres_url, cfg, env) as sessions:
        code, out, err = await run_cli("check", "--config", cfg, env=env)
        assert code == 0, out + err
        assert result_line(out, "processes") == (
            "[ok] processes: none alive (a heartbeat in the last 120 s)"
        )
        worker = Leases(sessions, ProcessInfo("worker"), 60.0)
        gateway = Leases(sessions, ProcessInfo("gateway", (0, 1), 2), 60.0)
        await worker.start()
        await gateway.start()
        try:
            code, out, err = await run_cli("check", "--config", cfg, env=env)
        finally:
            await gateway.stop()
            await worker.stop()
    assert code == 0, out + err
    here = f"on {socket.gethostname()} pid {os.getpid()}"
    line = result_line(out, "processes")
    assert line.startswith("[ok] processes: 2 alive (a heartbeat in the last 120 s): "), line
    listed = line.split(": ", 2)[2].split(", ")
    assert [entry.split(" (heartbeat ")[0] for entry in listed] == [
        f"worker {here}",
        f"gateway shards 0,1 {here}",
    ]
    assert all(entry.endswith(" s ago)") for entry in listed), line
    assert "[WARN]" not in out


async def test_check_warns_when_jobs_wait_and_no_live_process_runs_jobs(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {
        "DISCORD_TOKEN": fake_discord.token,
        "OPENAI_API_KEY": fake_images_api.api_key,
        "DATABASE_URL": postgres_url,
        "IMAGEBOT_JOBS_LEASE_SECONDS": "30",
    }
    async with migrated(postgres_url, cfg, env) as sessions:
        origin = JobOrigin(
            user_id=1, guild_id=1001, channel_id=5, parent_channel_id=None, role_ids=()
        )
        for prompt in ("one", "two"):
            job = store.new_job(order(prompt), origin, "dall-e-2", 16_000, "imagine")
            await store.admit(Transactions(sessions), ROOMY_QUOTAS, job)
        gateway = Leases(sessions, ProcessInfo("gateway", (0,), 1), 30.0)
        await gateway.start()
        try:
            code, out, err = await run_cli("check", "--config", cfg, env=env)
        finally:
            await gateway.stop()
    # A warning, no failure: `check && restart` still deploys (the workers may be what
    # the restart starts).
    assert code == 0, out + err
    assert result_line(out, "processes").startswith(
        "[ok] processes: 1 alive (a heartbeat in the last 60 s): gateway shards 0 "
    )
    assert result_line(out, "jobs") == (
        "[WARN] jobs: 2 job(s) queued and no live process runs jobs: start "
        "`python -m bot worker` (or `python -m bot run` without --no-worker)"
    )
