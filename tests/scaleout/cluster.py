"""Several bot processes on one PostgreSQL database, as an operator scales out, against the fakes.

The fake Discord and the fake image API run in the test's event loop on 127.0.0.1; every bot
process is ``python -m bot run|worker ...`` with one config file (the fakes' addresses, the
database URL, no secret: those come from the environment). A :class:`Cluster` starts processes
by name, kills them, waits until they are up, and reads what the fakes and the database saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.models import Job, Process
from bot.discord.i18n import Catalog
from bot.testing.discord import FakeChannel, FakeDiscord, FakeGuild, FakeMember, StoredMessage
from bot.testing.discord.handle import InteractionHandle
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import BotProcess, bot_env, bot_process, run_cli, write_config

CATALOG = Catalog.load()
DONE = CATALOG.text("status.done")
INTERRUPTED = CATALOG.text("status.interrupted")
CANCELLED = CATALOG.text("status.cancelled")
QUEUED_PREFIX = (CATALOG.template("status.queued") or "").split("{", 1)[0]
#: Discord's deadline for answering an interaction (a defer counts).
ANSWER_WITHIN = 3.0
#: How long a process may take to start and connect (a loaded 2-core machine, 5 processes).
START_WITHIN = 60.0


def guild_on_shard(fake: FakeDiscord, name: str, shard: int, shard_count: int) -> FakeGuild:
    """A new guild (with a channel "art") whose events travel on ``shard`` of ``shard_count``
    (the fake recommends that many shards)."""
    fake.shard_count = shard_count
    guild = fake.add_guild(name, shard=shard)
    fake.add_channel(guild, "art")
    return guild


def channel_of(member: FakeMember) -> FakeChannel:
    return member.guild.channels[0]


def cluster_config(
    folder: Path,
    fake: FakeDiscord,
    api: FakeImagesAPI,
    database_url: str,
    *,
    images_per_minute: int = 100_000,
    concurrency: int = 2,
    lease_seconds: float = 60.0,
    jobs_extra: str = "",
    quotas_extra: str = "",
) -> Path:
    """One config file for every process: the fakes, the database, roomy member limits."""
    path = write_config(
        folder,
        fake,
        api,
        provider_extra=f"images_per_minute = {images_per_minute}\n",
        jobs_extra=(
            f"concurrency = {concurrency}\nlease_seconds = {lease_seconds}\npoll_seconds = 1.0\n"
            "max_queued_per_member = 100\nmax_queued_per_guild = 1000\n"
            f"member_requests_per_minute = 1000\n{jobs_extra}"
        ),
        database_url=database_url,
    )
    if quotas_extra:
        with path.open("a", encoding="utf-8") as file:
            file.write(f"[quotas]\n{quotas_extra}")
    return path


@dataclass
class Cluster:
    fake: FakeDiscord
    api: FakeImagesAPI
    config: Path
    database_url: str
    stack: AsyncExitStack
    engine: AsyncEngine
    processes: dict[str, BotProcess] = field(default_factory=dict)
    #: Processes the test stopped or killed: the others must keep running.
    ended: set[str] = field(default_factory=set)

    # --- processes -----------------------------------------------------------------------

    async def start(self, name: str, command: str, *args: str) -> BotProcess:
        """``python -m bot COMMAND --config ... ARGS``, known as ``name`` (killed at the end)."""
        env = bot_env(self.fake.token, self.api.api_key)
        process = await self.stack.enter_async_context(bot_process(command, self.config, env, args))
        self.processes[name] = process
        return process

    async def gateway(self, name: str, shard: int, shard_count: int) -> BotProcess:
        """A gateway for one shard that runs no jobs, once its shard is connected."""
        ready = self.fake.gateway.ready_count
        process = await self.start(
            name,
            "run",
            "--shard-count",
            str(shard_count),
            "--shard-ids",
            str(shard),
            "--no-worker",
        )
        await self.until(
            lambda: self.fake.gateway.ready_count > ready and self.shard_live(shard, shard_count),
            f"shard {shard} of {shard_count} to connect ({name})",
        )
        return process

    async def worker(self, name: str) -> BotProcess:
        """A worker (jobs, no gateway), once it shows up alive in the ``processes`` table."""
        before = set(await self.live_pids())
        process = await self.start(name, "worker")
        pid = process.process.pid

        async def alive() -> bool:
            return pid in await self.live_pids() and pid not in before

        await self.until_async(alive, f"worker {name} (pid {pid}) to heartbeat")
        return process

    async def scale(self, shard_count: int, workers: int) -> None:
        """A gateway per shard (``gateway-N``, no jobs) and ``workers`` workers (``worker-N``),
        started together; until every one is up and the commands are synced."""
        await asyncio.gather(
            *(self.gateway(f"gateway-{n}", n, shard_count) for n in range(shard_count)),
            *(self.worker(f"worker-{n}") for n in range(workers)),
        )
        await self.synced()

    def shard_live(self, shard: int, shard_count: int) -> bool:
        return any(
            s.ready and s.shard == [shard, shard_count] for s in self.fake.gateway.live_sessions
        )

    async def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, as a lost machine or the OOM killer ends a process."""
        process = self.processes[name]
        self.ended.add(name)
        process.process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL

    async def stop(self, name: str) -> None:
        """SIGTERM, as ``docker stop`` does; the process must exit 0."""
        process = self.processes[name]
        self.ended.add(name)
        assert await process.stop() == 0, process.output

    async def stop_all(self) -> None:
        """SIGTERM to every process still running, together; each must exit 0."""
        running = [n for n, p in self.processes.items() if p.process.returncode is None]
        await asyncio.gather(*(self.stop(name) for name in running))

    def output(self) -> str:
        return "\n".join(
            f"===== {name} (pid {p.process.pid}) =====\n{p.output}"
            for name, p in self.processes.items()
        )

    async def check(self) -> tuple[int, str]:
        """``python -m bot check`` as the operator runs it beside the processes: exit code and
        output."""
        env = bot_env(self.fake.token, self.api.api_key)
        code, out, err = await run_cli("check", "--config", str(self.config), env=env)
        return code, out + err

    def check_running(self) -> None:
        """Fail at once, with its output, when a process ended that nobody stopped."""
        for name, process in self.processes.items():
            code = process.process.returncode
            if code is not None and name not in self.ended:
                raise AssertionError(f"{name} exited with {code}:\n{process.output}")

    # --- waiting -------------------------------------------------------------------------

    async def until(
        self,
        condition: Callable[[], bool],
        what: str,
        timeout: float = START_WITHIN,  # noqa: ASYNC109
    ) -> None:
        """Until ``condition()`` holds (checked at each change the fake Discord sees, and
        every 50 ms: a process that died fails the wait at once)."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.05)
                self.fake.state.pulse.fire()

        ticker = asyncio.create_task(tick())

        def check() -> bool | None:
            self.check_running()
            return True if condition() else None

        try:
            await self.fake.state.pulse.wait_until(check, timeout, lambda: what)
        finally:
            ticker.cancel()

    async def until_async(
        self,
        condition: Callable[[], Awaitable[object]],
        what: str,
        timeout: float = START_WITHIN,  # noqa: ASYNC109
    ) -> None:
        """Until the awaitable ``condition()`` gives a true value, looking every 50 ms (the
        database has no event the test can wait on)."""
        try:
            async with asyncio.timeout(timeout):
                while not await condition():  # the database has no event to wait on
                    self.check_running()
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    async def synced(self) -> None:
        await self.until(lambda: any(c["name"] == "imagine" for c in self.fake.commands), "sync")

    # --- the database ----------------------------------------------------------------------

    async def live_pids(self) -> list[int]:
        """The pids of the processes whose heartbeat is recent (the ``processes`` table)."""
        recent = datetime.now(UTC) - timedelta(seconds=10)
        async with create_sessionmaker(self.engine)() as session:
            rows = await session.execute(select(Process.pid).where(Process.heartbeat_at > recent))
            return [int(pid) for pid in rows.scalars()]

    async def jobs(self) -> list[Job]:
        async with create_sessionmaker(self.engine)() as session:
            return list((await session.execute(select(Job).order_by(Job.id))).scalars())

    # --- members -------------------------------------------------------------------------

    async def imagine(self, member: FakeMember, prompt: str) -> InteractionHandle:
        options = {"prompt": prompt, "size": "256x256"}
        return await self.fake.slash("imagine", options, user=member, channel=channel_of(member))

    def results(self, prompt: str) -> list[StoredMessage]:
        """The public results posted for ``prompt`` (each prompt of a test is its own)."""
        return [
            m
            for m in self.fake.state.messages.values()
            if m.attachments
            and not m.ephemeral
            and not m.deleted
            and m.embeds
            and m.embeds[0].get("description") == prompt
        ]

    def provider_prompts(self) -> list[str]:
        """The prompts the fake image API received, in the order it received them."""
        return [str(r.body.get("prompt")) for r in self.api.requests]


def shown(handle: InteractionHandle) -> list[str]:
    """Every text the member's private messages for ``handle`` showed, oldest first."""
    texts: list[str] = []
    for message in handle.messages:
        if not message.ephemeral:
            continue
        for text in [*(str(r.get("content") or "") for r in message.revisions), message.content]:
            if text and (not texts or texts[-1] != text):
                texts.append(text)
    return texts


def late(handles: Iterable[InteractionHandle]) -> list[tuple[str, float | None]]:
    """The interactions not answered within Discord's 3 seconds (with how long they took)."""
    return [
        (str(h.payload["data"].get("options")), h.responded_within)
        for h in handles
        if h.record.late_callback
        or h.responded_within is None
        or h.responded_within > ANSWER_WITHIN
    ]


@contextlib.asynccontextmanager
async def cluster(
    folder: Path, fake: FakeDiscord, api: FakeImagesAPI, database_url: str, **config: object
) -> AsyncIterator[Cluster]:
    """A cluster with no process yet (start them with :meth:`Cluster.gateway`, ``worker`` or
    ``start``). At the end every process still running is stopped (SIGTERM) and must exit 0,
    and no process may have logged a traceback; a failing test prints every process's
    output."""
    path = cluster_config(folder, fake, api, database_url, **config)  # type: ignore[arg-type]
    engine = create_engine(database_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        # Migrated before any process starts, as an operator runs `db upgrade` first: processes
        # started together never race to migrate, and the test can read the tables at once.
        await upgrade_database(engine)
        running = Cluster(fake, api, path, database_url, stack, engine)
        try:
            yield running
            await running.stop_all()
        except BaseException:
            print(running.output())
            raise
        finally:
            for process in running.processes.values():
                if process.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.process.kill()
        for name, process in running.processes.items():
            assert "Traceback" not in process.output, f"{name}:\n{process.output}"
