"""What every benchmark script shares: a project import path and the ``--quick`` switch.

``python bench/<script>.py`` puts bench/ first on the import path, where a script named like a
standard module shadows it (bench/queue.py once broke every ``import queue``, so the README's
``python bench/normalize.py`` failed). Each script imports this module first and calls
:func:`use_project_imports` before anything else is imported. Not a benchmark itself: the
leading underscore keeps it out of CI's ``bench/[!_]*.py`` loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def use_project_imports() -> None:
    """Take bench/ off the import path and put the project root (``bot``, ``tests``) on it."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))


@contextlib.contextmanager
def images_api_process(noise_bits: int = 2) -> Iterator[tuple[str, str]]:
    """The fake image API in a process of its own (its CPU is not the bot's): base URL and key.

    ``noise_bits = 2``: every answer is a photo-like PNG (~1.6 MB at 1024x1024), made once per
    prompt. Forked, so call it before any event loop runs."""
    with _fake_process(_images_api, noise_bits) as hello:
        yield hello


@contextlib.contextmanager
def a1111_process(step_delay: float, noise_bits: int = 2) -> Iterator[str]:
    """The fake AUTOMATIC1111 server in a process of its own: its base URL. ``noise_bits = 2``:
    its PNGs weigh what real renders do. Forked, so call it before any event loop runs."""
    with _fake_process(_a1111, step_delay, noise_bits) as base_url:
        yield base_url


@contextlib.contextmanager
def comfyui_process(step_delay: float, noise_bits: int = 2) -> Iterator[str]:
    """The fake ComfyUI in a process of its own: its base URL (see :func:`a1111_process`)."""
    with _fake_process(_comfyui, step_delay, noise_bits) as base_url:
        yield base_url


@contextlib.contextmanager
def _fake_process(fake: Callable[..., Any], *args: Any) -> Iterator[Any]:
    """Run ``fake(*args)`` (an async context manager yielding what to send back) in a forked
    process until the caller is done."""
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(
        target=_serve, args=(theirs, fake, args), daemon=True
    )
    server.start()
    try:
        yield ours.recv()
    finally:
        ours.close()
        server.join(timeout=10)


def _serve(pipe: Connection, fake: Callable[..., Any], args: tuple[Any, ...]) -> None:
    async def serve() -> None:
        async with fake(*args) as hello:
            pipe.send(hello)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv_bytes)

    with contextlib.suppress(EOFError):  # the benchmark closed the pipe: it is over
        asyncio.run(serve())


@contextlib.asynccontextmanager
async def _images_api(noise_bits: int) -> AsyncIterator[tuple[str, str]]:
    from bot.testing.openai_api import FakeImagesAPI

    async with FakeImagesAPI() as api:
        api.noise_bits = noise_bits
        yield api.base_url, api.api_key


@contextlib.asynccontextmanager
async def _a1111(step_delay: float, noise_bits: int) -> AsyncIterator[str]:
    from bot.testing.automatic1111 import FakeAutomatic1111

    async with FakeAutomatic1111(step_delay=step_delay, noise_bits=noise_bits) as server:
        yield server.base_url


@contextlib.asynccontextmanager
async def _comfyui(step_delay: float, noise_bits: int) -> AsyncIterator[str]:
    from bot.testing.comfyui import FakeComfyUI

    async with FakeComfyUI(step_delay=step_delay, noise_bits=noise_bits) as server:
        yield server.base_url


class DiscordProcess:
    """The fake Discord in a process of its own (see :func:`discord_process`), seen from the
    bot's process: the addresses for the bot's settings, and /imagine driven over a pipe.

    Real Discord is another machine: its parsing of each 1.6 MB upload is not the bot's cost, so
    the benchmarks keep it out of the bot's process. ``imagine`` blocks a thread of the executor,
    never the bot's event loop."""

    def __init__(self, pipe: Connection, hello: dict[str, str]) -> None:
        self.pipe = pipe
        self.token, self.api_base, self.gateway_url = (
            hello["token"],
            hello["api_base"],
            hello["gateway_url"],
        )
        self.base_url, self.api_key = "", ""  # read by make_settings only for the image API

    async def imagine(self, jobs: int, in_flight: int) -> tuple[list[float], int]:
        """``jobs`` /imagine sent by ``in_flight`` members, each waiting for its result before
        the next: each job's wall time as the fake saw it (interaction sent -> public result
        stored) and how many got no answer (acknowledged after Discord's 3 seconds)."""

        def exchange() -> tuple[list[float], int]:
            self.pipe.send(("imagine", jobs, in_flight))
            answer: tuple[list[float], int] = self.pipe.recv()
            return answer

        return await asyncio.get_running_loop().run_in_executor(None, exchange)


@contextlib.contextmanager
def discord_process(members: int = 1) -> Iterator[DiscordProcess]:
    """The fake Discord (one server, ``members`` members) in a forked process. Forked, so call
    it before any event loop runs; start the bot with :func:`run_client`."""
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(
        target=_discord_child, args=(theirs, members), daemon=True
    )
    server.start()
    try:
        yield DiscordProcess(ours, ours.recv())
    finally:
        ours.close()
        server.join(timeout=10)


@contextlib.asynccontextmanager
async def run_client(client: Any, token: str, timeout: float = 10.0) -> AsyncIterator[Any]:  # noqa: ASYNC109
    """Start a discord.py client (open_bot already pointed it at the fake), wait until it is
    ready, close it after: FakeDiscord.running for a fake in another process."""
    task = asyncio.create_task(client.start(token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), timeout)
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _discord_child(pipe: Connection, members: int) -> None:
    async def serve() -> None:
        from bot.testing.discord import FakeDiscord

        loop = asyncio.get_running_loop()
        async with FakeDiscord() as fake:
            who = [fake.add_member(fake.guild, f"member{i}") for i in range(members)]
            pipe.send(
                {"token": fake.token, "api_base": fake.api_base, "gateway_url": fake.gateway_url}
            )
            while True:
                _, jobs, in_flight = await loop.run_in_executor(None, pipe.recv)
                await fake.wait_ready()
                await _until_synced(fake)
                pipe.send(await _imagine(fake, who[:in_flight], jobs))

    with contextlib.suppress(EOFError):  # the benchmark closed the pipe: it is over
        asyncio.run(serve())


async def _until_synced(fake: Any) -> None:
    def synced() -> bool | None:
        return True if any(c["name"] == "imagine" for c in fake.commands) else None

    await fake.state.pulse.wait_until(synced, 10, lambda: "/imagine synced")


async def _imagine(fake: Any, members: list[Any], jobs: int) -> tuple[list[float], int]:
    import time

    left, unanswered, walls = jobs, 0, []

    async def member(who: Any) -> None:
        nonlocal left, unanswered
        while left > 0:
            left -= 1
            started = time.perf_counter()
            handle = await fake.slash("imagine", {"prompt": "a lighthouse"}, user=who)

            def answered(handle: Any = handle) -> bool | None:
                if handle.record.late_callback:  # acknowledged after 3 s: refused
                    return False
                posted = any(m.attachments and not m.ephemeral for m in handle.messages)
                return True if posted else None

            if await fake.state.pulse.wait_until(answered, 120, lambda: "result"):
                walls.append(time.perf_counter() - started)
            else:
                unanswered += 1
            for message in handle.messages:  # the fake keeps every upload: drop it
                for attachment in message.attachments:
                    fake.state.blobs.pop(attachment.id, None)

    await asyncio.gather(*(member(who) for who in members))
    return walls, unanswered


def skip_spec_checks() -> None:
    """The fakes check every request against the official OpenAPI specs (jsonschema, several
    milliseconds a request): tests want that, a benchmark of the bot's own cost does not. Call
    before ``bot.testing`` is imported."""
    os.environ["IMAGEBOT_SPECS_DIR"] = str(HERE / "no-specs-here")


def quick_mode(doc: str | None) -> bool:
    """Parse the command line; True for ``--quick`` (few iterations: does it still work?)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds with few iterations, to prove the script works (figures not valid)",
    )
    return bool(parser.parse_args().quick)


class SqlCount:
    """What an engine does, counted by SQLAlchemy's events: statements, write statements,
    transactions (each session's BEGIN) and the write transactions among them (a COMMIT after
    an INSERT, UPDATE or DELETE). ``storage`` is the bot's (bot.db.engine.Storage): its async
    engine and the hot path's synchronous one, if any; divide by the jobs run."""

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self, storage: object) -> None:
        from sqlalchemy import event

        self.statements = self.writes = self.transactions = self.write_transactions = 0
        for sync in storage.sync_engines:  # type: ignore[attr-defined]
            event.listen(sync, "before_cursor_execute", self._statement)
            event.listen(sync, "begin", self._begin)
            event.listen(sync, "commit", self._commit)

    def _statement(self, conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            return  # the hot path's BEGIN IMMEDIATE on SQLite: counted as its transaction
        self.statements += 1
        if statement.lstrip().upper().startswith(self.WRITES):
            self.writes += 1
            conn.info["wrote"] = True  # type: ignore[attr-defined]

    def _begin(self, conn: object) -> None:
        self.transactions += 1
        conn.info["wrote"] = False  # type: ignore[attr-defined]

    def _commit(self, conn: object) -> None:
        if conn.info.pop("wrote", False):  # type: ignore[attr-defined]
            self.write_transactions += 1

    def snapshot(self) -> tuple[int, int, int, int]:
        return (self.statements, self.writes, self.transactions, self.write_transactions)

    @staticmethod
    def per_job(before: tuple[int, ...], after: tuple[int, ...], jobs: int) -> str:
        """ "statements (writes) / transactions (writes)" per job between two snapshots."""
        s, w, t, wt = ((b - a) / jobs for a, b in zip(before, after, strict=True))
        return f"{s:.1f} ({w:.1f} writes) / {t:.1f} ({wt:.1f} writes)"


OVERHEAD_SOURCES = ("channel", "followup", "response")


async def bot_overhead(
    backend: dict[str, Any], operation: str, runs: int
) -> tuple[list[float], list[float]]:
    """The whole bot on a self-hosted backend: its own time per /imagine, what bench/a1111.py
    and bench/comfyui.py report (issue 12: under 50 ms at the median on every backend).

    The bot runs as in production (fake Discord, the queue, SQLite, the image worker, the real
    client) with ``[provider]`` set to ``backend`` (its keys), a fake in a process of its own
    with answers of real renders' weight. Overhead: an /imagine to its result posted, minus the
    client's own time for the backend call (the ``provider_latency`` metric of ``operation``),
    as bench/e2e.py measures it for OpenAI. Returns the overheads and this process's CPU times.
    """
    import dataclasses
    import tempfile
    import time

    from bot.app import open_bot
    from bot.ops.metrics import Metrics
    from bot.testing.discord import FakeDiscord
    from bot.testing.harness import make_settings
    from bot.testing.openai_api import FakeImagesAPI

    overheads: list[float] = []
    cpu: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        async with FakeDiscord() as fake:
            api = FakeImagesAPI()  # not started: no job goes to it
            settings = make_settings(Path(folder), fake, api, **backend)
            jobs = dataclasses.replace(settings.jobs, member_requests_per_minute=10_000)
            settings = dataclasses.replace(settings, jobs=jobs)
            metrics = Metrics()
            latency = metrics.provider_latency.labels(operation=operation)
            async with (
                open_bot(settings, metrics=metrics, guild_ready_timeout=0.05) as bot,
                fake.running(bot),
            ):

                def results() -> int:
                    found = fake.messages(sources=OVERHEAD_SOURCES)
                    return sum(1 for m in found if m.attachments and not m.ephemeral)

                for index in range(runs + 1):  # the first warms up
                    seen = results()
                    before = latency._sum.get()
                    started, started_cpu = time.perf_counter(), time.process_time()
                    await fake.slash("imagine", {"prompt": "a lighthouse", "size": "1024x1024"})
                    await fake.wait_for_message(
                        lambda m, seen=seen: results() > seen, timeout=60, sources=OVERHEAD_SOURCES
                    )
                    total = time.perf_counter() - started
                    await bot.runner.wait_idle()
                    if index:
                        overheads.append(total - (latency._sum.get() - before))
                        cpu.append(time.process_time() - started_cpu)
    return overheads, cpu


def report_overhead(
    title: str, call: str, backend: str, overheads: list[float], cpu: list[float]
) -> None:
    """The table the README shows for :func:`bot_overhead`: ``call`` names what is subtracted."""
    import statistics

    median = statistics.median(overheads)
    print(f"\n### {title}\n")
    print("| measure | median |")
    print("|---|---:|")
    print(
        f"| bot overhead per job (interaction -> result posted, minus the {call}) "
        f"| {median * 1000:.1f} ms (target < 50 ms: {'yes' if median < 0.05 else 'NO'}) |"
    )
    print(
        f"| CPU per job, this process (bot + fake Discord; the fake {backend} runs in another) "
        f"| {statistics.median(cpu) * 1000:.1f} ms |"
    )


def print_timing_row(name: str, values: list[float], target: float | None) -> None:
    """One row of a "measure | median | 90th percentile" table, in ms, with the verdict on
    ``target`` (seconds) when there is one."""
    import statistics

    if not values:
        print(f"| {name} | none measured | |")
        return
    median = statistics.median(values)
    p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else median
    verdict = ""
    if target is not None:
        verdict = f" (target < {target * 1000:.0f} ms: {'yes' if median < target else 'NO'})"
    print(f"| {name} | {median * 1000:.1f} ms{verdict} | {p90 * 1000:.1f} ms |")
