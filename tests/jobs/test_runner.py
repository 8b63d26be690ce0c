"""The job runner with the real engine against the fake image API and a SQLite file; no Discord.

A small recording listener stands in for the Discord layer. Every test checks the ledger (the
jobs table) as well as what the listener and the provider saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.app import build_catalogues, open_engine, open_storage
from bot.config import (
    DatabaseSettings,
    JobsSettings,
    ProviderSettings,
    Settings,
    StorageSettings,
)
from bot.db.engine import Storage
from bot.db.models import ImageRole, Job, JobImage, JobStatus
from bot.errors import BotError, ShuttingDown
from bot.generation import ImageOrder, ImageService
from bot.jobs import JobOrigin, JobRunner, Place, store
from bot.jobs.ratelimit import ImageRateLimiter
from bot.jobs.runner import BUSY
from bot.jobs.spool import Posted, inflight_dir
from bot.providers import GeneratedImage, Operation
from bot.quotas.policy import (
    GuildBudget,
    GuildQueueFull,
    ModelNotAllowed,
    QueueFull,
    SizeNotAllowed,
    TooManyAtOnce,
)
from bot.testing.harness import ROOMY_QUOTAS
from bot.testing.migrated import migrated_database_url
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import DATABASE_ENV

GUILD_A, GUILD_B = 1001, 1002
#: dall-e-2 at 256x256: $0.016 an image, in micro-dollars.
PRICE = 16_000

ROOMY = ROOMY_QUOTAS

#: Tests of the one-process queue (SQLite): its restart reads the queue, the journal and the
#: spool. On PostgreSQL the queue is shared (tests/jobs/test_shared_runner.py): a restart
#: leaves other processes' jobs to the leases, and results are posted at most once.
in_memory_queue = pytest.mark.skipif(
    os.environ.get(DATABASE_ENV) == "postgresql",
    reason="the one-process queue's restart (SQLite); the shared queue's: test_shared_runner",
)


@dataclass
class Recorder:
    """The runner's listener: remembers every event, can be told to fail deliveries."""

    events: list[tuple[str, int, Any]] = field(default_factory=list)
    fail_deliveries: bool = False
    #: The channel it "posts" results to (message id 1000 + job id); None: posted nowhere.
    post_to: int | None = None
    #: Posting never ends (what a process killed while posting leaves behind).
    hang_deliveries: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def job_queued(self, job: Job, place: Place | None) -> None:
        self._add("queued", job.id, place)

    async def job_succeeded(self, job: Job, images: list[GeneratedImage]) -> Posted:
        if self.fail_deliveries:
            raise RuntimeError("Discord is down")
        if self.hang_deliveries:
            self._add("posting", job.id, images)
            await asyncio.Event().wait()
        self._add("succeeded", job.id, images)
        if self.post_to is None:
            return []  # posted nowhere: the job stays succeeded, its images kept
        return [(self.post_to, 1000 + job.id)]

    async def job_recorded(self, job: Job) -> None:
        self._add("recorded", job.id, None)

    async def job_failed(self, job: Job, error: BotError) -> None:
        self._add("failed", job.id, error)

    async def job_interrupted(self, job: Job) -> None:
        self._add("interrupted", job.id, job)

    async def job_cancelled(self, job: Job) -> None:
        self._add("cancelled", job.id, job)

    def _add(self, kind: str, job_id: int, detail: Any) -> None:
        self.events.append((kind, job_id, detail))
        self.event.set()

    def of(self, kind: str) -> list[int]:
        return [job_id for event, job_id, _ in self.events if event == kind]

    def detail(self, kind: str, job_id: int) -> Any:
        return next(d for event, j, d in self.events if event == kind and j == job_id)

    async def wait_for(self, kind: str, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                self.event.clear()
                await self.event.wait()


@dataclass
class World:
    api: FakeImagesAPI
    engine: ImageService
    storage: Storage
    settings: Settings
    stack: AsyncExitStack

    async def runner(
        self,
        listener: Recorder | None = None,
        *,
        limiter: ImageRateLimiter | None = None,
        start: bool = True,
        **jobs: Any,
    ) -> tuple[JobRunner, Recorder]:
        """A runner on this world's engine and database (closed when the test ends)."""
        settings = dataclasses.replace(
            self.settings, jobs=dataclasses.replace(self.settings.jobs, **jobs)
        )
        prices = build_catalogues(settings).prices
        runner = JobRunner(
            self.engine,
            self.storage.sessions,
            settings,
            prices=prices,
            limiter=limiter,
            transactions=self.storage.transactions,
        )
        recorder = listener or Recorder()
        runner.set_listener(recorder)
        self.stack.push_async_callback(runner.close)
        if start:
            await runner.start()
        return runner, recorder

    async def job(self, job_id: int) -> Job:
        found = await store.get_job(self.storage.sessions, job_id)
        assert found is not None
        return found

    async def jobs(self) -> list[Job]:
        async with self.storage.sessions() as session:
            return list((await session.execute(select(Job).order_by(Job.id))).scalars())

    async def charged(self) -> tuple[int, int]:
        """Images and micro-dollars the ledger counts (reservations included)."""
        async with self.storage.sessions() as session:
            row = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(Job.n_charged), 0),
                        func.coalesce(func.sum(Job.cost_micro_usd), 0),
                    )
                )
            ).one()
        return int(row[0]), int(row[1])

    def prompts(self) -> list[str]:
        return [str(r.body.get("prompt")) for r in self.api.requests]


def make_settings(api: FakeImagesAPI, tmp_path: Path, **changes: Any) -> Settings:
    """The runner's settings; its database ``tmp_path/bot.db`` (or the test's PostgreSQL one)
    already migrated, unless ``changes`` name another."""
    database = changes.pop("database", None) or DatabaseSettings(
        url=migrated_database_url(tmp_path)
    )
    settings = Settings(
        provider=ProviderSettings(
            base_url=api.base_url,
            api_key=api.api_key,
            model="dall-e-2",
            max_retries=0,
            user_salt="test",
            images_per_minute=100_000,  # only the rate-limit test is about the rate limit
        ),
        database=database,
        # The test's own: on PostgreSQL the started-jobs journal lives here, not beside a file.
        storage=StorageSettings(spool_dir=str(tmp_path / "spool")),
        jobs=JobsSettings(concurrency=1, max_queued_per_member=100, max_queued_per_guild=100),
        quotas=ROOMY,
    )
    return dataclasses.replace(settings, **changes)


@asynccontextmanager
async def open_world(api: FakeImagesAPI, settings: Settings) -> AsyncIterator[World]:
    """The database and engine; runners made by ``World.runner`` close first (LIFO)."""
    async with AsyncExitStack() as stack:
        storage = await stack.enter_async_context(open_storage(settings))
        engine = await stack.enter_async_context(open_engine(settings))
        yield World(api, engine, storage, settings, stack)


def order(prompt: str, n: int = 1, **changes: Any) -> ImageOrder:
    settings: dict[str, Any] = {"size": "256x256", **changes}
    return ImageOrder(Operation.GENERATE, prompt=prompt, n=n, **settings)


def origin(user: int, guild: int | None = GUILD_A) -> JobOrigin:
    return JobOrigin(
        user_id=user, guild_id=guild, channel_id=5, parent_channel_id=None, role_ids=()
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the fake API has no event to wait on
            await asyncio.sleep(0.01)


async def submit(
    runner: JobRunner, prompt: str, user: int = 1, guild: int | None = GUILD_A, n: int = 1
) -> Job:
    return await runner.submit(order(prompt, n), origin(user, guild), command="imagine")


async def submit_told(runner: JobRunner, prompt: str, user: int, guild: int = GUILD_A) -> Job:
    """A request whose requester can be told its place (its interaction token is fresh)."""
    told = dataclasses.replace(
        origin(user, guild),
        application_id=99,
        interaction_token=f"token-{prompt}",
        interaction_at=datetime.now(UTC),
    )
    return await runner.submit(order(prompt), told, command="imagine")


# --- order and concurrency ----------------------------------------------------------------------


async def test_jobs_run_round_robin_between_guilds_then_members(world: World) -> None:
    api = world.api
    api.delay = 2.0  # long enough for the six submits on a busy machine, on either engine
    runner, recorder = await world.runner(concurrency=1)
    first = await submit(runner, "first", user=1)
    await until(lambda: len(api.requests) == 1)  # it runs; everything after it waits
    plan = [
        ("x1", 1, GUILD_A),
        ("x2", 1, GUILD_A),
        ("y1", 2, GUILD_A),
        ("z1", 3, GUILD_B),
        ("z2", 3, GUILD_B),
        ("x3", 1, GUILD_A),
    ]
    jobs = {prompt: await submit(runner, prompt, user, guild) for prompt, user, guild in plan}
    queued = await runner.places([job.id for job in jobs.values()])
    places = {prompt: queued.get(job.id) for prompt, job in jobs.items()}
    api.delay = 0.0
    await runner.wait_idle()
    await recorder.wait_for("succeeded", 7)
    expected = ["first", "x1", "z1", "y1", "z2", "x2", "x3"]
    assert world.prompts() == expected
    positions = {prompt: place.position for prompt, place in places.items() if place}
    assert sorted(positions, key=positions.__getitem__) == expected[1:]
    etas = [places[prompt].eta_seconds for prompt in expected[1:]]  # type: ignore[union-attr]
    assert etas == sorted(etas) and etas[0] > 0
    # queued jobs were told their place; the first started at once (no place to show)
    queued: dict[int, Place | None] = {}
    for kind, job_id, place in recorder.events:  # the first word (the shared queue's claim
        if kind == "queued":  # says "working" later, as a place of None)
            queued.setdefault(job_id, place)
    assert queued[first.id] is None
    assert all(queued[job.id] is not None for job in jobs.values())
    assert [j.status for j in await world.jobs()] == [JobStatus.SUCCEEDED] * 7


async def test_concurrency_limit_is_respected(world: World) -> None:
    api = world.api
    api.delay = 0.2
    runner, recorder = await world.runner(concurrency=2)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(runner.running))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    for i in range(6):
        await submit(runner, f"p{i}", user=i)
    await recorder.wait_for("succeeded", 6)
    watcher.cancel()
    assert peak == 2


# --- admission ----------------------------------------------------------------------------------


async def test_queue_caps_per_member_and_per_guild(world: World) -> None:
    api = world.api
    api.delay = 5.0
    runner, _ = await world.runner(concurrency=1, max_queued_per_member=2, max_queued_per_guild=3)
    await submit(runner, "running", user=1)
    await until(lambda: len(api.requests) == 1)
    await submit(runner, "a", user=1)
    await submit(runner, "b", user=1)
    with pytest.raises(QueueFull) as member_full:
        await submit(runner, "c", user=1)
    assert member_full.value.key == "quota.queue_member"
    assert str(member_full.value) == (
        "You already have 2 requests waiting. Wait for one to finish, then try again."
    )
    await submit(runner, "d", user=2)
    with pytest.raises(GuildQueueFull) as guild_full:
        await submit(runner, "e", user=3)
    assert str(guild_full.value) == (
        "This server already has 3 requests waiting. Please try again in a few minutes."
    )
    await submit(runner, "f", user=3, guild=GUILD_B)  # another guild has its own cap
    assert len(await world.jobs()) == 5  # refused requests leave nothing behind
    assert await world.charged() == (5, 5 * PRICE)


async def test_concurrent_requests_do_not_slip_past_the_member_cap(world: World) -> None:
    api = world.api
    api.delay = 5.0
    runner, _ = await world.runner(concurrency=1, max_queued_per_member=3)
    await submit(runner, "running", user=9)
    await until(lambda: len(api.requests) == 1)

    async def attempt(i: int) -> bool:
        try:
            await submit(runner, f"burst {i}", user=1)
        except QueueFull:
            return False
        return True

    admitted = await asyncio.gather(*(attempt(i) for i in range(12)))
    assert sum(admitted) == 3
    waiting = [j for j in await world.jobs() if j.status is JobStatus.QUEUED and j.user_id == 1]
    assert len(waiting) == 3


async def test_rules_refuse_before_anything_is_stored(world: World) -> None:
    strict = dataclasses.replace(
        ROOMY, max_n=2, allowed_models=("dall-e-2",), allowed_sizes=("256x256",)
    )
    world.settings = dataclasses.replace(world.settings, quotas=strict)
    runner, recorder = await world.runner()
    with pytest.raises(TooManyAtOnce, match="At most 2 images per request here, not 3"):
        await submit(runner, "many", n=3)
    with pytest.raises(SizeNotAllowed, match="The size 512x512 is not available here"):
        await runner.submit(order("big", size="512x512"), origin(1), command="imagine")
    with pytest.raises(ModelNotAllowed, match="The model dall-e-3 is not available here"):
        await runner.submit(
            order("other", model="dall-e-3", size=None), origin(1), command="imagine"
        )
    assert await world.jobs() == []
    assert world.api.requests == [] and recorder.events == []


# --- cancelling ---------------------------------------------------------------------------------


async def test_cancelling_a_queued_job_releases_its_reservation(world: World) -> None:
    api = world.api
    api.delay = 0.5
    runner, recorder = await world.runner(concurrency=1)
    running = await submit(runner, "running")
    await until(lambda: len(api.requests) == 1)
    waiting = await submit(runner, "waiting", n=3)
    assert (await world.job(waiting.id)).n_charged == 3  # reserved while it waits
    assert await world.charged() == (4, 4 * PRICE)

    assert not await runner.cancel(running.id)  # it started: too late
    assert await runner.cancel(waiting.id)
    assert not await runner.cancel(waiting.id)  # once is enough

    cancelled = await world.job(waiting.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert (cancelled.n_charged, cancelled.cost_micro_usd) == (0, 0)
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()
    assert world.prompts() == ["running"]  # the cancelled one never reached the provider
    assert await world.charged() == (1, PRICE)
    assert (await world.job(running.id)).status is JobStatus.SUCCEEDED


# --- settling -----------------------------------------------------------------------------------


async def test_success_settles_the_delivered_images_and_their_real_cost(world: World) -> None:
    runner, recorder = await world.runner()
    job = await submit(runner, "three", n=3)
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()  # the result is recorded once it is posted
    done = await world.job(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.n_delivered == done.n_charged == 3
    assert done.cost_micro_usd == 3 * PRICE
    assert done.started_at is not None and done.finished_at is not None
    images = recorder.detail("succeeded", job.id)
    assert len(images) == 3 and all(i.data.startswith(b"\x89PNG") for i in images)
    stored = await store.images_of(world.storage.sessions, job.id, ImageRole.OUTPUT)
    assert [image.data for image in stored] == [image.data for image in images]


async def test_where_the_listener_posted_a_result_is_recorded_by_the_runner(
    world: World,
) -> None:
    """The listener only posts; the job's delivery (messages, dropped images, token) is the
    runner's to record."""
    runner, recorder = await world.runner(Recorder(post_to=77))
    job = await runner.submit(
        order("posted"),
        dataclasses.replace(origin(1), interaction_token="token"),
        command="imagine",
    )
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()
    done = await world.job(job.id)
    assert done.status is JobStatus.DELIVERED
    assert (done.result_channel_id, done.result_message_id) == (77, 1000 + job.id)
    assert await store.messages_of(world.storage.sessions, done) == [(77, 1000 + job.id)]
    assert await store.outputs_of(world.storage.sessions, job.id) == []  # posted: not kept
    assert done.interaction_token is None


async def test_a_token_priced_model_settles_what_the_tokens_cost(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    """gpt-image-2 reserves an estimate (the per-image price, erring high) and settles the
    real cost from the usage the provider reported: $5 per 1M text tokens, $30 per 1M out."""
    api = fake_images_api
    settings = make_settings(api, tmp_path)
    settings = dataclasses.replace(
        settings, provider=dataclasses.replace(settings.provider, model="gpt-image-2")
    )
    async with open_world(api, settings) as world:
        api.delay = 0.3
        runner, recorder = await world.runner()
        job = await runner.submit(
            order("two foxes", n=2, size="1024x1024", quality="low"), origin(1), command="imagine"
        )
        reserved = await world.job(job.id)
        assert (reserved.n_charged, reserved.cost_micro_usd) == (2, 2 * 11_000)  # $0.011 each
        await recorder.wait_for("succeeded", 1)
        await runner.wait_idle()  # recorded once it is posted
        done = await world.job(job.id)
        text_tokens = len("two foxes") // 4 + 1  # what the fake reports
        assert (done.input_tokens, done.output_tokens) == (text_tokens, 2 * 272)
        assert done.cost_micro_usd == text_tokens * 5 + 2 * 272 * 30
        assert done.cost_micro_usd != reserved.cost_micro_usd
        assert done.n_charged == done.n_delivered == 2


async def test_a_failure_releases_the_reservation_and_is_reported(world: World) -> None:
    world.api.fail_next(500)
    runner, recorder = await world.runner()
    job = await submit(runner, "doomed", n=2)
    await recorder.wait_for("failed", 1)
    failed = await world.job(job.id)
    assert failed.status is JobStatus.FAILED
    assert (failed.n_charged, failed.cost_micro_usd, failed.n_delivered) == (0, 0, 0)
    assert failed.error_code == recorder.detail("failed", job.id).key
    assert await world.charged() == (0, 0)


@in_memory_queue
async def test_a_job_costs_the_database_two_writes_and_no_read_once_admitted(
    world: World,
) -> None:
    """Its admission, then one transaction once it is posted (settlement, messages, token): the
    job is carried in memory in between, and its images never pass through the database."""
    runner, recorder = await world.runner(Recorder(post_to=77))
    statements: list[str] = []
    commits: list[list[str]] = []

    def executed(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split(None, 3)
        if words[0].upper() == "BEGIN":
            return  # SQLite's BEGIN IMMEDIATE (bot.db.engine.Transactions): no read, no write
        # The audit outbox's insert-from-select (it writes nothing where the server has no
        # audit channel) is named apart from the result's own rows.
        audit = words[0].upper() == "INSERT" and "audit_entries" in words[2]
        statements.append("INSERT audit" if audit else words[0].upper())

    def committed(conn: Any) -> None:
        commits.append(statements[:])
        statements.clear()

    engines = world.storage.sync_engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", executed)
        event.listen(engine, "commit", committed)
    try:
        job = await runner.submit(
            order("counted"),
            dataclasses.replace(origin(1), interaction_token="token"),
            command="imagine",
        )
        admitted = len(commits)
        await recorder.wait_for("succeeded", 1)
        await runner.wait_idle()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", executed)
            event.remove(engine, "commit", committed)
    writes = [c for c in commits if any(s in ("INSERT", "UPDATE", "DELETE") for s in c)]
    assert len(writes) == 2  # the admission and the completion
    # no read, no blob: the job's row, the audit outbox's entry (if any), the result's messages
    assert commits[admitted:] == [["UPDATE", "INSERT audit", "INSERT"]] and statements == []
    done = await world.job(job.id)
    assert done.status is JobStatus.DELIVERED and done.interaction_token is None


# --- restart ------------------------------------------------------------------------------------


@in_memory_queue
async def test_a_restart_resumes_queued_reports_running_and_delivers_kept_results(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    api = fake_images_api
    settings = make_settings(api, tmp_path)
    async with open_world(api, settings) as world:
        # The first process: one result made but not posted, one job running, three waiting.
        first, recorder = await world.runner(Recorder(fail_deliveries=True), concurrency=1)
        kept = await submit(first, "kept", n=2)
        await until(lambda: first.dispatcher.running == {} and len(api.requests) == 1)
        api.delay = 30.0
        cut = await submit(first, "cut short", user=2, guild=GUILD_B)
        await until(lambda: len(api.requests) == 2)
        queued = [
            await submit_told(first, "q1", user=1),
            await submit_told(first, "q2", user=3, guild=GUILD_B),
            await submit_told(first, "q3", user=1),
        ]
        await first.close()  # what a crash leaves behind, as far as the rows go
        assert (await world.job(kept.id)).status is JobStatus.SUCCEEDED
        # sent, with no write to its row: the journal beside the database says so
        assert (await world.job(cut.id)).status is JobStatus.QUEUED
        assert cut.id in first.journal.read()
        assert {(await world.job(j.id)).status for j in queued} == {JobStatus.QUEUED}
        assert recorder.of("succeeded") == []
        api.delay = 0.0

        second, told = await world.runner(concurrency=1)
        await told.wait_for("succeeded", 4)
        await second.wait_idle()
        assert told.of("interrupted") == [cut.id]
        interrupted = await world.job(cut.id)
        assert interrupted.status is JobStatus.INTERRUPTED
        # the provider may have made (and billed) it: its estimate stays as spend, no images
        assert (interrupted.n_charged, interrupted.cost_micro_usd) == (0, PRICE)
        assert interrupted.possibly_billed
        # the kept result is delivered from the database: no new request for it
        assert world.prompts() == ["kept", "cut short", "q1", "q2", "q3"]
        assert told.of("succeeded")[0] == kept.id
        assert len(told.detail("succeeded", kept.id)) == 2
        # queued jobs were shown their place again, then ran in their order
        assert set(told.of("queued")) == {j.id for j in queued}
        assert told.of("succeeded")[1:] == [j.id for j in queued]
        for job in [kept, *queued]:
            done = await world.job(job.id)
            assert done.n_charged == done.n_delivered == job.n_requested
        assert await world.charged() == (5, 6 * PRICE)
        assert [j.possibly_billed for j in await world.jobs()].count(True) == 1


@in_memory_queue
async def test_a_result_cut_off_while_it_was_posted_is_posted_after_the_restart(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    """The images reach the database only after they are posted; a process killed while it
    posts them leaves them beside the database, and the next start records and posts them:
    charged once, never asked of the provider again, not counted as interrupted."""
    api = fake_images_api
    settings = make_settings(api, tmp_path)
    async with open_world(api, settings) as world:
        first, stuck = await world.runner(Recorder(hang_deliveries=True))
        job = await submit(first, "paid for", n=2)
        await stuck.wait_for("posting", 1)
        # Posting starts while a thread still writes the copy (ResultKeeper.hold): the kill
        # this test is about comes once the copy is whole, as it is long before a real post
        # to Discord returns. (Killed before, the restart finds no copy: interrupted.)
        await until(lambda: (inflight_dir(settings) / f"job-{job.id}.json").exists())
        await first.close()  # what a kill leaves: nothing about the result in its row
        assert (await world.job(job.id)).status is JobStatus.QUEUED

        second, told = await world.runner(Recorder(post_to=77))
        await told.wait_for("succeeded", 1)
        await second.wait_idle()
        assert len(told.detail("succeeded", job.id)) == 2 and told.of("interrupted") == []
        done = await world.job(job.id)
        assert done.status is JobStatus.DELIVERED and not done.possibly_billed
        assert (done.n_charged, done.n_delivered, done.cost_micro_usd) == (2, 2, 2 * PRICE)
        assert len(api.requests) == 1
        assert not any(inflight_dir(settings).glob("job-*"))  # recorded: the copy is gone


@in_memory_queue
async def test_a_request_cut_off_mid_way_keeps_the_guild_budget_conservative(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    """A budget just above one estimate: the estimate of a possibly billed job is spent."""
    api = fake_images_api
    quotas = dataclasses.replace(ROOMY, spend_per_month_usd=0.020)
    settings = make_settings(api, tmp_path, quotas=quotas)
    async with open_world(api, settings) as world:
        first, _ = await world.runner()
        api.delay = 30.0
        cut = await submit(first, "cut short")
        await until(lambda: len(api.requests) == 1)
        await first.close()  # the rows a process killed mid-request leaves
        api.delay = 0.0

        second, told = await world.runner()
        assert told.of("interrupted") == [cut.id]
        assert await world.charged() == (0, PRICE)
        with pytest.raises(GuildBudget):
            await submit(second, "again")
        assert len(api.requests) == 1


async def test_a_timeout_after_the_request_was_sent_counts_as_possibly_billed(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    api = fake_images_api
    settings = make_settings(api, tmp_path)
    provider = dataclasses.replace(settings.provider, read_timeout_seconds=0.2, max_retries=1)
    async with open_world(api, dataclasses.replace(settings, provider=provider)) as world:
        runner, recorder = await world.runner()
        api.delay = 2.0
        job = await submit(runner, "too slow")
        await recorder.wait_for("failed", 1)
        failed = await world.job(job.id)
        assert failed.status is JobStatus.FAILED and failed.possibly_billed
        assert (failed.n_charged, failed.n_delivered, failed.cost_micro_usd) == (0, 0, PRICE)
        assert len(api.requests) == 2  # the retry: the provider may have billed either
        assert await world.charged() == (0, PRICE)


async def test_a_provider_that_cannot_be_reached_bills_nothing(
    fake_images_api: FakeImagesAPI, tmp_path: Path, unused_tcp_port: int
) -> None:
    api = fake_images_api
    settings = make_settings(api, tmp_path)
    provider = dataclasses.replace(
        settings.provider, base_url=f"http://127.0.0.1:{unused_tcp_port}/v1"
    )
    async with open_world(api, dataclasses.replace(settings, provider=provider)) as world:
        runner, recorder = await world.runner()
        job = await submit(runner, "nobody home")
        await recorder.wait_for("failed", 1)
        failed = await world.job(job.id)
        assert (failed.possibly_billed, failed.cost_micro_usd) == (False, 0)


async def test_a_restart_after_a_hard_stop_does_not_repeat_finished_work(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    """Rows written directly, as a killed process leaves them mid-way through each state."""
    api = fake_images_api
    settings = make_settings(api, tmp_path)
    async with open_world(api, settings) as world:
        sessions = world.storage.sessions
        rows = {
            status: store.new_job(order(status.value), origin(1), "dall-e-2", PRICE, "imagine")
            for status in (JobStatus.DELIVERED, JobStatus.FAILED, JobStatus.CANCELLED)
        }
        async with sessions() as session, session.begin():
            for status, row in rows.items():
                row.status = status
                row.n_charged = 1 if status is JobStatus.DELIVERED else 0
                session.add(row)
        second, told = await world.runner()
        await second.wait_idle()
        assert told.events == [] and api.requests == []
        statuses = [job.status for job in await world.jobs()]
        assert statuses == [JobStatus.DELIVERED, JobStatus.FAILED, JobStatus.CANCELLED]
        async with sessions() as session:
            count = await session.execute(select(func.count()).select_from(JobImage))
            assert count.scalar_one() == 0


async def test_a_request_is_acknowledged_once_its_job_is_stored_and_before_it_reports(
    world: World,
) -> None:
    """The acknowledgment (the Discord layer's "thinking…") comes after the job's row is
    committed, so a kill right after it leaves the job to the restart. The job may start
    meanwhile (the member waits for the provider, not for Discord's answer as well), but
    nothing about it reaches the member before that answer: its result waits for it."""
    runner, recorder = await world.runner()
    seen: list[tuple[list[JobStatus], list[str]]] = []

    async def acknowledge() -> None:
        seen.append(([job.status for job in await world.jobs()], list(recorder.events)))
        async with asyncio.timeout(5):
            await world.api.requested.wait()  # the provider is asked during the round trip
        await asyncio.sleep(0.2)  # time enough to post a result nothing held back
        seen.append(([job.status for job in await world.jobs()], list(recorder.events)))

    job = await runner.submit(order("noted"), origin(1), command="imagine", acknowledge=acknowledge)
    assert seen == [([JobStatus.QUEUED], []), ([JobStatus.QUEUED], [])]
    await recorder.wait_for("succeeded", 1)
    assert recorder.of("queued")[0] == job.id
    assert [kind for kind, _, _ in recorder.events][:2] == ["queued", "succeeded"]


async def test_a_failure_waits_for_the_acknowledgment_too(world: World) -> None:
    """A job refused by its provider while Discord has not answered "thinking…" yet: the
    failure is told after that answer, never before it."""
    runner, recorder = await world.runner()
    world.api.fail_next(400, code="content_policy_violation", message="Rejected.")
    told_during: list[list[str]] = []

    async def acknowledge() -> None:
        async with asyncio.timeout(5):
            await world.api.requested.wait()
        await asyncio.sleep(0.2)
        told_during.append([kind for kind, _, _ in recorder.events])

    await runner.submit(order("refused"), origin(1), command="imagine", acknowledge=acknowledge)
    assert told_during == [[]]
    await recorder.wait_for("failed", 1)


async def test_a_request_whose_acknowledgment_fails_is_made_all_the_same(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Discord refused "thinking…" (the interaction expired): the job is admitted and charged,
    so it runs, and its result goes by whichever route still works."""
    runner, recorder = await world.runner()

    async def acknowledge() -> None:
        raise RuntimeError("404 Unknown interaction")

    job = await runner.submit(order("late"), origin(1), command="imagine", acknowledge=acknowledge)
    await recorder.wait_for("succeeded", 1)
    assert recorder.of("succeeded") == [job.id]
    assert world.prompts() == ["late"]
    assert "could not be acknowledged (404 Unknown interaction)" in caplog.text


@in_memory_queue  # on the shared queue a request is always acknowledged before its admission
async def test_a_burst_of_admissions_makes_the_next_request_acknowledged_first(
    world: World,
) -> None:
    """While BUSY admissions are under way (here each holding its acknowledgment, as a slow
    Discord would), the next request must not wait behind them for its "thinking…": the
    runner says to acknowledge it first. Once they end, admitting first is back."""
    runner, _ = await world.runner(start=False)
    assert runner.admits_before_acknowledging
    held = asyncio.Event()

    async def slow_acknowledge() -> None:
        await held.wait()

    burst = [
        asyncio.create_task(
            runner.submit(
                order(f"b{i}"), origin(i), command="imagine", acknowledge=slow_acknowledge
            )
        )
        for i in range(BUSY)
    ]
    await asyncio.sleep(0)  # each has started: counted before its first await
    assert not runner.admits_before_acknowledging
    async with asyncio.timeout(10):  # all admitted in turn, each then waiting on its answer
        while len(await world.jobs()) < BUSY:  # noqa: ASYNC110 - a database has no event
            await asyncio.sleep(0.01)
    assert not runner.admits_before_acknowledging
    held.set()
    await asyncio.gather(*burst)
    assert runner.admits_before_acknowledging


@in_memory_queue
async def test_admissions_of_requests_acknowledged_already_count_in_a_burst_too(
    world: World,
) -> None:
    """A request admitted before its answer waits in turn behind every admission under way,
    those of requests answered "thinking…" first (stored as intakes) as well: BUSY of those
    also make the next request acknowledged first, or its answer would wait behind them."""
    runner, _ = await world.runner(start=False)
    burst = [
        asyncio.create_task(runner.submit(order(f"i{i}"), origin(i), command="imagine"))
        for i in range(BUSY)
    ]
    await asyncio.sleep(0)  # each has started: counted before its first await
    assert not runner.admits_before_acknowledging
    await asyncio.gather(*burst)
    assert runner.admits_before_acknowledging


async def test_a_refused_request_is_never_acknowledged(world: World) -> None:
    """A refusal of the admission (here the guild's queue cap) is the answer itself."""
    runner, _ = await world.runner(max_queued_per_guild=1, start=False)
    asked: list[str] = []

    async def acknowledge() -> None:
        asked.append("thinking")

    await runner.submit(order("first"), origin(1), command="imagine", acknowledge=acknowledge)
    with pytest.raises(GuildQueueFull):
        await runner.submit(order("second"), origin(2), command="imagine", acknowledge=acknowledge)
    assert asked == ["thinking"]
    assert [job.prompt for job in await world.jobs()] == ["first"]


async def test_no_new_jobs_once_closing(world: World) -> None:
    runner, _ = await world.runner()
    await runner.close()
    with pytest.raises(ShuttingDown) as refused:
        await submit(runner, "too late")
    assert refused.value.key == "error.restarting"
    assert await world.jobs() == []


async def test_close_lets_a_running_job_finish_within_the_grace(world: World) -> None:
    api = world.api
    api.delay = 0.3
    runner, recorder = await world.runner(concurrency=1)
    running = await submit(runner, "finishing")
    await until(lambda: len(api.requests) == 1)
    waiting = await submit(runner, "waiting")
    await runner.close(grace=5.0)
    assert recorder.of("succeeded") == [running.id]
    assert (await world.job(waiting.id)).status is JobStatus.QUEUED  # kept for the restart
    assert len(api.requests) == 1


# --- rate limit ---------------------------------------------------------------------------------


async def test_the_providers_rate_limit_is_never_hit(world: World) -> None:
    """8 images per 1-second "minute" at the fake provider; 30 images asked for at once."""
    api = world.api
    api.images_per_minute, api.rate_window = 8, 1.0
    limiter = ImageRateLimiter(8, window=1.0)
    runner, recorder = await world.runner(limiter=limiter, concurrency=4)
    sizes = [1, 2, 1, 3, 1, 2, 1, 1, 2, 1, 3, 1, 2, 1, 1, 2, 1, 1, 2, 1]
    assert sum(sizes) == 30
    for i, n in enumerate(sizes):
        await submit(runner, f"p{i}", user=i % 3, guild=GUILD_A + i % 2, n=n)
    async with asyncio.timeout(20):
        await runner.wait_idle()
    assert api.count_429 == 0 and recorder.of("failed") == []
    assert len(recorder.of("succeeded")) == len(sizes)
    assert await world.charged() == (30, 30 * PRICE)


def test_a_request_in_flight_counts_until_it_is_answered() -> None:
    """The provider counts a request when it receives it, after we decided to send it: its
    window starts when the answer comes, so a slow way there never draws a 429."""
    now = [100.0]
    limiter = ImageRateLimiter(2, burst=2, window=10.0, clock=lambda: now[0])
    limiter.acquire(2, key="slow")
    assert limiter.delay(1) == math.inf  # only an answer can make room
    now[0] += 30.0  # however long it takes
    assert limiter.delay(1) == math.inf and limiter.in_flight == 2
    limiter.finish("slow")
    limiter.finish("slow")  # idempotent
    assert limiter.in_flight == 0
    assert limiter.delay(1) == pytest.approx(10.0 * (1 + 1 / 60))  # a full window from now
    now[0] += 10.2
    assert limiter.delay(1) == 0


# --- a database that cannot take the result ---------------------------------------------------


async def test_a_result_the_database_cannot_take_is_spooled_and_recorded_when_it_is_back(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    """The write lock is held elsewhere past the busy timeout, and posting fails too."""
    api = fake_images_api
    path = tmp_path / "bot.db"
    settings = make_settings(
        api,
        tmp_path,
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", busy_timeout_seconds=0.1),
        storage=StorageSettings(spool_dir=str(tmp_path / "spool")),
    )
    async with open_world(api, settings) as world:
        runner, recorder = await world.runner(Recorder(fail_deliveries=True))
        runner.results.retry_delays, runner.results.flush_seconds = (0.05,), 0.1
        api.delay = 0.3
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            job = await submit(runner, "paid for", n=2)
            await until(lambda: len(api.requests) == 1)
            locker.execute("BEGIN EXCLUSIVE")
            await until(lambda: (tmp_path / "spool" / f"job-{job.id}.json").exists())
            await until(lambda: not runner.dispatcher.running)  # its first delivery failed
            assert (await world.job(job.id)).status is JobStatus.QUEUED  # nothing recorded
            recorder.fail_deliveries = False
        finally:
            locker.rollback()
            locker.close()
        await recorder.wait_for("succeeded", 1)  # posted from the spool once the DB is back
        assert len(recorder.detail("succeeded", job.id)) == 2
        done = await world.job(job.id)
        assert done.status is JobStatus.SUCCEEDED and not done.possibly_billed
        assert (done.n_charged, done.n_delivered, done.cost_micro_usd) == (2, 2, 2 * PRICE)
        assert len(await store.outputs_of(world.storage.sessions, job.id)) == 2
        await until(lambda: not any((tmp_path / "spool").iterdir()))
        assert len(api.requests) == 1 and recorder.of("succeeded") == [job.id]
