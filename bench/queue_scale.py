"""Queue and ledger scale: what one submit and one start cost as the queue and the ledger grow.

Run: python bench/queue_scale.py   (a few minutes on 2 cores; no network). ``--quick`` runs
the small sizes only, in well under a minute: it proves the script works (CI runs it), its
figures are not the benchmark.

1. Submit: ``JobRunner.submit`` (rules, caps, the quota reservation in SQLite, the queue push
   and the new job's place shown to a listener) with 1k/10k/100k jobs already queued (quick:
   1k/10k) in 100 guilds. Flat means the ratio to the smallest queue stays near 1.
2. Status pass: the positions of 20 live status messages (what the status board asks for once
   a second while the queue moves), same queues.
3. Quota check: ``store.admit`` (the locked quota check and the insert) in a guild whose month
   has 1k/100k ledger rows (quick: 1k/10k). The rows are written at schema 0004 and the
   database is then upgraded, as an operator's would be.
4. Startup: ``JobRunner.start`` with 10k/100k queued jobs (quick: 1k/10k), in a subprocess so
   the bench's own data does not count: wall and CPU time, and the process's peak RSS.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bot.app import build_catalogues, open_engine, open_storage  # noqa: E402
from bot.config import (  # noqa: E402
    DatabaseSettings,
    JobsSettings,
    ProviderSettings,
    Settings,
    StorageSettings,
)
from bot.db import create_engine, upgrade_database  # noqa: E402
from bot.generation import ImageOrder  # noqa: E402
from bot.jobs import JobOrigin, JobRunner, store  # noqa: E402
from bot.jobs.fairqueue import QueuedJob  # noqa: E402
from bot.providers import Operation  # noqa: E402
from bot.quotas import estimate_cost  # noqa: E402
from bot.testing.harness import ROOMY_QUOTAS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUEUED = (1_000, 10_000, 100_000)
LEDGER = (1_000, 100_000)
STARTUP = (10_000, 100_000)
SUBMITS = 200
WARM_UP = 20
GUILDS = 100
GUILD = 4242
#: Issue 10's targets for a start.
STARTUP_SECONDS, STARTUP_MB = 2.0, 250


def settings_for(folder: Path) -> Settings:
    return Settings(
        provider=ProviderSettings(
            base_url="http://127.0.0.1:9/v1",  # nothing runs: the dispatcher is not started
            api_key="sk-bench",
            model="dall-e-2",
            max_retries=0,
            user_salt="bench",
            images_per_minute=100_000,
        ),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{folder / 'bot.db'}"),
        jobs=JobsSettings(concurrency=1, max_queued_per_member=10**9, max_queued_per_guild=10**9),
        storage=StorageSettings(spool_dir=str(folder / "spool")),
        quotas=dataclasses.replace(
            ROOMY_QUOTAS,
            images_per_day=10**9,
            images_per_month=10**9,
            member_images_per_day=10**9,
            max_images_per_day=10**9,
            max_images_per_month=10**9,
            max_member_images_per_day=10**9,
            total_spend_per_month_usd=10.0**9,
        ),
    )


class Places:
    """The runner's listener: keeps the place each new job was shown."""

    def __init__(self) -> None:
        self.shown: dict[int, Any] = {}

    async def job_queued(self, job: Any, place: Any) -> None:
        self.shown[job.id] = place

    async def job_succeeded(self, job: Any, images: Any) -> list[tuple[int | None, int]]:
        return []

    async def job_failed(self, job: Any, error: Any) -> None:
        return None

    async def job_interrupted(self, job: Any) -> None:
        return None


def origin(user: int, guild: int) -> JobOrigin:
    return JobOrigin(
        user_id=user, guild_id=guild, channel_id=5, parent_channel_id=None, role_ids=()
    )


def order() -> ImageOrder:
    return ImageOrder(Operation.GENERATE, prompt="a lighthouse at dusk", n=1, size="256x256")


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def submit_times(queued: int, folder: Path) -> tuple[float, float, float]:
    """Median and p95 CPU ms of one submit with ``queued`` waiting, and of one status pass."""
    settings = settings_for(folder)
    async with open_storage(settings) as storage, open_engine(settings) as engine:
        runner = JobRunner(
            engine,
            storage.sessions,
            settings,
            prices=build_catalogues(settings).prices,
            transactions=storage.transactions,
        )
        listener = Places()
        runner.set_listener(listener)  # type: ignore[arg-type]
        queue = runner.dispatcher.queue
        for number in range(queued):
            queue.push(QueuedJob(10**9 + number, number % GUILDS, number % 1000))
        samples = []
        for number in range(-WARM_UP, SUBMITS):  # the first ones fill caches: not counted
            started = time.process_time()
            job = await runner.submit(
                order(), origin(number % 1000, number % GUILDS), command="imagine"
            )
            if number >= 0:
                samples.append(time.process_time() - started)
            assert job.id in listener.shown
        live = [10**9 + queued - 1 - step * (queued // 20) for step in range(20)]
        passes = []
        for _ in range(20):
            started = time.process_time()
            positions(runner, live)
            passes.append(time.process_time() - started)
        await runner.close()
    median, p95 = stats(samples)
    return median * 1000, p95 * 1000, statistics.median(passes) * 1000


def positions(runner: JobRunner, live: list[int]) -> dict[int, Any]:
    """The places the status board asks for: those of the jobs with a live status message."""
    return runner.dispatcher.places(live)


def fill_ledger(path: Path, rows: int, queued: int = 0) -> None:
    """``rows`` finished jobs this month in GUILD (and ``queued`` waiting jobs), written raw."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max((now - month_start).total_seconds(), 1.0)
    connection = sqlite3.connect(path)
    columns = (
        "guild_id, channel_id, user_id, operation, model, prompt, size, n_requested, "
        "n_delivered, n_charged, command, status, cost_micro_usd, possibly_billed, queued_at"
    )

    def row(number: int, status: str, charged: int) -> tuple[object, ...]:
        moment = month_start + timedelta(seconds=span * number / max(rows + queued, 1))
        return (
            GUILD if status != "queued" else number % GUILDS,
            5,
            number % 1000,
            "generate",
            "dall-e-2",
            "a lighthouse at dusk, oil on canvas, warm light over a calm sea",
            "256x256",
            1,
            charged,
            1,
            "imagine",
            status,
            16_000,
            0,
            moment.strftime("%Y-%m-%d %H:%M:%S.%f"),
        )

    with connection:
        connection.executemany(
            f"INSERT INTO jobs ({columns}) VALUES ({', '.join('?' * 15)})",
            [row(n, "delivered", 1) for n in range(rows)]
            + [row(rows + n, "queued", 0) for n in range(queued)],
        )
    connection.close()


async def prepared_database(folder: Path, rows: int, queued: int = 0) -> None:
    """A database at schema 0004 with the rows, then upgraded to the latest schema."""
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bot.db'}")
    try:
        await upgrade_database(engine, "0004")
        fill_ledger(folder / "bot.db", rows, queued)
        await upgrade_database(engine)
    finally:
        await engine.dispose()


async def admit_times(rows: int, folder: Path) -> tuple[float, float]:
    """Median and p95 CPU ms of one locked quota check and insert with ``rows`` in the month."""
    await prepared_database(folder, rows)
    settings = settings_for(folder)
    prices = build_catalogues(settings).prices
    async with open_storage(settings) as storage:
        samples = []
        for number in range(-WARM_UP, SUBMITS):
            cost = estimate_cost(prices, "dall-e-2", 1, "256x256", None, partial_images=0)
            job = store.new_job(order(), origin(number % 1000, GUILD), "dall-e-2", cost, "imagine")
            started = time.process_time()
            await store.admit(storage.transactions, settings.quotas, job)
            if number >= 0:
                samples.append(time.process_time() - started)
    median, p95 = stats(samples)
    return median * 1000, p95 * 1000


CHILD = """
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[1])
sys.argv[1:2] = []
from queue_scale import Places, settings_for
from pathlib import Path
from bot.app import build_catalogues, open_engine, open_storage
from bot.jobs import JobRunner

def peak_kb():
    # VmHWM starts again at exec (ru_maxrss would include the bench's own peak before exec)
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1])

async def main():
    settings = settings_for(Path(sys.argv[1]))
    async with open_storage(settings) as storage, open_engine(settings) as engine:
        runner = JobRunner(engine, storage.sessions, settings,
                           prices=build_catalogues(settings).prices,
                           transactions=storage.transactions)
        runner.set_listener(Places())
        before = peak_kb()
        wall, cpu = time.perf_counter(), time.process_time()
        await runner.start()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = peak_kb()
        print(json.dumps({"wall": wall, "cpu": cpu, "before_kb": before, "peak_kb": peak,
                          "queued": len(runner.dispatcher.queue)}), flush=True)
        os._exit(0)

asyncio.run(main())
"""


async def startup(queued: int, folder: Path) -> dict[str, float]:
    await prepared_database(folder, 0, queued)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHILD, str(ROOT / "bench"), str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["queued"] == queued, measured
    return measured


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "-"


async def main(quick: bool) -> None:
    queued_sizes = QUEUED[:2] if quick else QUEUED
    ledger_sizes = (1_000, 10_000) if quick else LEDGER
    startup_sizes = (1_000, 10_000) if quick else STARTUP
    mode = " (quick mode: not the benchmark)" if quick else ""
    load = os.getloadavg()[0]
    print(f"### Queue scale benchmark ({SUBMITS} submits per size, CPU time){mode}\n")
    print(f"Load average at start: {load:.2f} on {os.cpu_count()} cores.\n")
    print("| queued | submit median | submit p95 | ratio (median) | status pass, 20 live |")
    print("|---:|---:|---:|---:|---:|")
    base = None
    for queued in queued_sizes:
        with tempfile.TemporaryDirectory() as folder:
            median, p95, passed = await submit_times(queued, Path(folder))
        base = base or median
        print(
            f"| {queued:,} | {median:.2f} ms | {p95:.2f} ms | {ratio(median, base)} "
            f"| {passed:.2f} ms |"
        )
    print("\n| ledger rows this month | admit median | admit p95 | ratio (median) |")
    print("|---:|---:|---:|---:|")
    base = None
    for rows in ledger_sizes:
        with tempfile.TemporaryDirectory() as folder:
            median, p95 = await admit_times(rows, Path(folder))
        base = base or median
        print(f"| {rows:,} | {median:.2f} ms | {p95:.2f} ms | {ratio(median, base)} |")
    print(
        f"\n| queued at start | start, wall | start, CPU | peak RSS | RSS before start "
        f"| target (< {STARTUP_SECONDS:g} s, < {STARTUP_MB} MB) |"
    )
    print("|---:|---:|---:|---:|---:|---|")
    for queued in startup_sizes:
        with tempfile.TemporaryDirectory() as folder:
            measured = await startup(queued, Path(folder))
        peak_mb = measured["peak_kb"] / 1024
        met = measured["wall"] < STARTUP_SECONDS and peak_mb < STARTUP_MB
        print(
            f"| {queued:,} | {measured['wall']:.2f} s | {measured['cpu']:.2f} s "
            f"| {peak_mb:.0f} MB | {measured['before_kb'] / 1024:.0f} MB "
            f"| {'yes' if met else 'NO'} |"
        )


if __name__ == "__main__":
    asyncio.run(main(_bench.quick_mode(__doc__)))
