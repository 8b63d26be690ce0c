"""Durable jobs: admitted against quotas, queued fairly, run, settled, and never lost.

A job is a database row from the moment it is admitted (its reservation), and the in-memory
queue is only an index over those rows, rebuilt at start: queued jobs run after a restart in
their order; a job that was running when the process died is marked interrupted, charged
nothing, and its requester is told; images that were made but not posted are posted, not made
again. The listener (the Discord layer) reads everything it needs from the rows.

Two database writes per job: its admission, and one after its result is posted (the job kept
in memory in between). Its start goes to the journal beside the database (bot.jobs.journal),
its result, while it is posted, to the in-flight spool (bot.jobs.spool): files a restart reads.

That is SQLite, one process. On PostgreSQL the queue is shared by every process
(bot.jobs.shared): jobs are claimed from the database, the claim is the "running" mark, and
the result is written (with the right to post it) before it is posted; no journal, no spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bot.config import DEFAULT_BACKEND, Settings
from bot.db import Sessions
from bot.db.engine import Transactions
from bot.db.models import Job, JobStatus, utcnow
from bot.errors import BotError, InternalError, ShuttingDown
from bot.generation import ImageOrder, ImageService
from bot.jobs import store
from bot.jobs.backends import BackendChoice
from bot.jobs.dispatcher import Place
from bot.jobs.failover import make_images_failing_over, moved_to
from bot.jobs.fairqueue import QueuedJob
from bot.jobs.intake import IntakeBook, IntakeRecovery, pending_intakes
from bot.jobs.journal import StartedJournal
from bot.jobs.lanes import LanePositions, Lanes
from bot.jobs.leases import Leases
from bot.jobs.listener import JobListener
from bot.jobs.processes import ProcessInfo, is_shared
from bot.jobs.ratelimit import ImageRateLimiter
from bot.jobs.retention import TOKEN_LIFETIME
from bot.jobs.shared import SharedLanes
from bot.jobs.spool import DATABASE_ERRORS, Posted, ResultKeeper, Spool, inflight_dir
from bot.jobs.store import JobOrigin
from bot.moderation.nsfw import ContentRules, apply_rules
from bot.moderation.precheck import PRECHECK_REFUSALS, Precheck
from bot.providers import GeneratedImage, ModelSpec, Operation, streamed_partials
from bot.providers.backend import Backend
from bot.providers.progress import ProgressCallback, ProgressUpdate
from bot.quotas import PriceTable, estimate_cost, settle_cost
from bot.quotas.admission import (
    SpendCapWatch,
    check_origin,
    check_queue_caps,
    check_rules,
    with_default_quality,
)
from bot.quotas.policy import TotalBudget

log = logging.getLogger(__name__)

#: Admissions under way at once (of either kind: before or after their acknowledgment) from
#: which a request is stored and acknowledged first, and admitted after (see
#: ``admits_before_acknowledging``).
BUSY = 8
#: Jobs admitted by this process are kept in memory until they start (no read of their row
#: then), up to this many; beyond it (a huge backlog) a job's row is read when it starts.
CARRIED_JOBS = 10_000


class JobRunner:
    def __init__(
        self,
        engine: ImageService,
        sessions: Sessions,
        settings: Settings,
        *,
        prices: PriceTable,
        limiter: ImageRateLimiter | None = None,
        process: ProcessInfo | None = None,
        content_check: Precheck | None = None,
        transactions: Transactions | None = None,
    ) -> None:
        """``prices`` is the price table (bot.app builds it once); ``limiter`` replaces the one
        built from ``provider.images_per_minute`` (tests). Each backend has its own queue,
        concurrency and rate limit, ``[jobs] concurrency`` the total (bot.jobs.lanes).
        ``process``: who this process is among those sharing a PostgreSQL database.
        ``content_check``: the moderation pre-check every job passes before its image request
        (``[moderation] precheck = "block"``; not :meth:`precheck`, the admission's), None
        when it is off. ``transactions``: the hot path's (bot.db.engine.Transactions; by
        default on ``sessions``)."""
        self._engine = engine
        self._content_check = content_check
        self._sessions = sessions
        self._transactions = transactions or Transactions(sessions)
        self._settings = settings
        self._prices = prices
        self.process = process or ProcessInfo()
        #: PostgreSQL: this process's heartbeat, its jobs' leases, the reaper of dead ones'.
        bind = sessions.kw.get("bind")
        self.leases = (
            Leases(sessions, self.process, settings.jobs.lease_seconds)
            if bind is not None and is_shared(bind)
            else None
        )
        #: Which backend each job runs on (its server's choice).
        self.backends = BackendChoice(sessions, engine.backends)
        #: Each server's NSFW rules, applied to every order at admission (and read by the
        #: delivery for spoilers).
        self.content_rules = ContentRules(sessions)
        self._listener: JobListener | None = None
        #: Jobs started while Discord has not yet answered their request's acknowledgement:
        #: they report nothing until it has (set when it did, or failed).
        self._unacknowledged: dict[int, asyncio.Future[None]] = {}
        self._intake_recovery: IntakeRecovery | None = None
        #: Acknowledged requests not yet jobs (see bot.jobs.intake).
        bind = sessions.kw.get("bind")
        self.intakes = IntakeBook(
            self._transactions,
            owner=self.process.id if bind is not None and is_shared(bind) else None,
        )
        self._closing = False
        #: Requests past the cap check and not queued yet, by member and by guild: counted
        #: against the caps, so concurrent requests cannot all slip in while the ledger works.
        self._admitting: Counter[tuple[Hashable, Hashable]] = Counter()
        self._admitting_guild: Counter[Hashable] = Counter()
        #: Admissions under way, counted from the call on (before any await, so a burst
        #: arriving at once sees every one before it); all wait in turn for the same locks.
        self._admissions = 0
        #: One reservation at a time per guild (while any is being admitted there): a burst
        #: waits here in order instead of in the database's lock, where waiters are served in
        #: no order and SQLite gives up on one after its busy timeout.
        self._guild_locks: dict[Hashable, asyncio.Lock] = {}
        self._total_lock = asyncio.Lock()
        #: Tells the operator when the total spend caps refuse requests (app.py adds metrics).
        self.spend_caps = SpendCapWatch(settings.quotas)
        #: Work for jobs outside the queue (posting kept results again); cancelled on close.
        self._background: set[asyncio.Task[None]] = set()
        #: Records results, keeping them in the spool while the database cannot take them.
        inflight = inflight_dir(settings)
        self.results = ResultKeeper(
            self._transactions,
            sessions,
            Spool(Path(settings.storage.spool_dir)),
            self._notify_success,
            Spool(inflight, durable=False),
        )
        #: Which jobs were sent to the provider: the "running" mark (see bot.jobs.journal).
        self.journal = StartedJournal(inflight / "started.log")
        #: Jobs admitted here and not started yet, with their orders (None: read the uploads).
        self._carried: dict[int, tuple[Job, ImageOrder | None]] = {}
        #: Jobs whose backend is making their images now, and those being cancelled there.
        self._making: dict[int, _Making] = {}
        self._cancelling: set[int] = set()
        #: Of those, the ones whose Cancel was pressed on another process (the shared queue).
        self._remote_cancels: set[int] = set()
        backends = engine.backends
        self.dispatcher = Lanes(
            self._run,
            concurrency=settings.jobs.concurrency,
            lanes={
                name: (
                    backends.concurrency(name),
                    (limiter if limiter and name == DEFAULT_BACKEND else None)
                    or ImageRateLimiter(backends.settings[name].images_per_minute),
                )
                for name in backends.names()
            },
        )
        #: Where waiting jobs stand, for the status messages (the shared queue's, on PostgreSQL).
        self.positions: LanePositions | SharedLanes = LanePositions(self.dispatcher)
        #: The queue in the database, shared by every process (PostgreSQL), else None.
        self.shared: SharedLanes | None = None
        if bind is not None and is_shared(bind):
            remote = self._cancel_asked_remotely
            self.positions = self.shared = SharedLanes.for_backends(
                self._run, sessions, settings, backends, self.process.id, remote, limiter
            )

    async def rate_limited(self, backend: str, seconds: float) -> None:
        """``backend`` answered 429 asking to wait ``seconds``: nothing more is sent to it
        until then, from this process (SQLite) or from any (the shared limit)."""
        if self.shared is not None:
            await self.shared.limiter.pause(backend, seconds)
        else:
            self.dispatcher.rate_limited(backend, seconds)

    @property
    def alive(self) -> bool:
        """Whether the dispatcher runs (on the shared queue: listens, and claims if it may)."""
        return (self.shared or self.dispatcher).alive

    @property
    def queue_depth(self) -> int:
        """Jobs waiting (on the shared queue: over every process, as last counted)."""
        return self.shared.queue_depth if self.shared else len(self.dispatcher.queue)

    @property
    def admits_before_acknowledging(self) -> bool:
        """Whether a request may be admitted before it is acknowledged (``submit``'s
        ``acknowledge``): on this process's own queue, while fewer than :data:`BUSY`
        admissions are under way, whichever way each came (an answered request's admission
        holds the locks as long). On the shared queue another process could claim the job and
        report on it before that answer; in a burst the last answers would wait for every
        admission before them (SQLite writes one at a time) and miss Discord's 3 seconds."""
        return self.shared is None and self._admissions < BUSY

    @property
    def running(self) -> Mapping[int, QueuedJob]:
        """Jobs running in this process."""
        return (self.shared or self.dispatcher).running

    def set_listener(self, listener: JobListener) -> None:
        self._listener = listener

    def set_intake_recovery(self, recovery: IntakeRecovery) -> None:
        """Who finishes the acknowledged requests a killed process left (see :meth:`start`)."""
        self._intake_recovery = recovery

    # --- admission -----------------------------------------------------------------------------

    def precheck(self, order: ImageOrder, origin: JobOrigin) -> None:
        """Raise now what :meth:`submit` would refuse that needs no database: the server, the
        rules and the queue caps. Cheap enough to run before the bot answers Discord."""
        if self._closing:
            raise ShuttingDown()
        quotas = self._settings.quotas
        check_origin(quotas, origin)
        spec = self._engine.backend_for(order).spec_for(order.model)
        check_rules(quotas, with_default_quality(quotas, order, spec), spec.name)
        self._check_caps(origin)  # the shared queue: those this process admits (would_fit)

    async def would_fit(self, order: ImageOrder, origin: JobOrigin) -> None:
        """Raise the quota :meth:`submit` would refuse ``order`` for, reading without a lock.

        Run before the bot downloads anything for a request (after it answered Discord: a
        burst of reads must not delay the answers past Discord's 3 seconds)."""
        if self.shared is not None:  # the queue caps, from the rows (precheck: only in memory)
            guild_key, user_key = _keys(origin)
            admitting = (self._admitting[(guild_key, user_key)], self._admitting_guild[guild_key])
            await self.shared.check_caps(origin.guild_id, origin.user_id, admitting)
        order = await self.backends.resolve(order, origin.guild_id)
        spec = self._engine.backend_for(order).spec_for(order.model)
        order = with_default_quality(self._settings.quotas, order, spec)
        estimate = self._estimate(order, spec)
        job = store.new_job(order, origin, spec.name, estimate, "precheck")
        try:
            await store.would_fit(self._sessions, self._settings.quotas, job, origin.role_ids)
        except TotalBudget as error:
            self.spend_caps.refused(error)
            raise

    def _estimate(self, order: ImageOrder, spec: ModelSpec) -> int:
        """The reservation: the most ``order`` may cost (see :func:`_priced_size`), on its
        backend or on any it may fail over to (a free GPU server's job made by the API)."""
        backends = self._engine.backends
        first = self._engine.backend_for(order)
        costs = []
        for backend in [first, *backends.fallbacks(first.name)]:
            made_by = spec if backend is first else backend.spec_for(moved_to(order, backend).model)
            costs.append(
                estimate_cost(
                    self._prices,
                    made_by.name,
                    order.n,
                    _priced_size(order, made_by),
                    order.quality,
                    backend=backend.name,
                    partial_images=streamed_partials(
                        made_by, backends.settings[backend.name], order.n
                    ),
                    input_images=blended_images(order),
                )
            )
        return max(costs)

    def _check_caps(self, origin: JobOrigin) -> None:
        guild_key, user_key = _keys(origin)
        queue = self.dispatcher.queue
        check_queue_caps(
            self._settings.jobs,
            queue.count(guild=guild_key, user=user_key) + self._admitting[(guild_key, user_key)],
            queue.count(guild=guild_key) + self._admitting_guild[guild_key],
        )

    async def submit(
        self,
        order: ImageOrder,
        origin: JobOrigin,
        *,
        command: str,
        intake_id: int | None = None,
        acknowledge: Callable[[], Awaitable[None]] | None = None,
    ) -> Job:
        """Admit a job (checks, caps, quota reservation) and queue it; raises BotError.

        ``intake_id``: the acknowledged request this is (bot.jobs.intake), deleted with the
        job's insert; on a refusal the caller answers the member and deletes it.

        ``acknowledge``: tells the requester the request is taken (the Discord layer's defer),
        awaited once the job's row is committed and before the job can report anything, so
        nothing about it reaches the member before that answer. The row is the
        durable record then, and no intake is needed. If it fails (the interaction expired),
        the job runs all the same: its result goes by whichever route still works. On this
        process's own queue the job may start meanwhile (the member waits for the provider, not
        for Discord's answer too); it reports nothing before that answer.
        """
        self._admissions += 1
        try:
            return await self._submit(order, origin, command, intake_id, acknowledge)
        finally:
            self._admissions -= 1

    async def _submit(
        self,
        order: ImageOrder,
        origin: JobOrigin,
        command: str,
        intake_id: int | None,
        acknowledge: Callable[[], Awaitable[None]] | None,
    ) -> Job:
        if self._closing:
            raise ShuttingDown()
        order = await self.backends.resolve(order, origin.guild_id)
        backend = self._engine.backend_for(order)
        spec = backend.spec_for(order.model)
        order = with_default_quality(self._settings.quotas, order, spec)
        order = apply_rules(
            order,
            await self.content_rules.of(origin.guild_id),
            age_restricted=origin.age_restricted,
            takes_moderation=spec.moderation,
            sd_backend=backend.features.sd_options,
        )
        check_origin(self._settings.quotas, origin)
        check_rules(self._settings.quotas, order, spec.name)
        guild_key, user_key = _keys(origin)
        member = (guild_key, user_key)
        shared = self.shared
        if shared is None:  # else counted in the admission's transaction (SharedLanes.enqueue)
            self._check_caps(origin)
        estimate = self._estimate(order, spec)
        job = store.new_job(order, origin, spec.name, estimate, command)
        self._admitting[member] += 1
        self._admitting_guild[guild_key] += 1
        lock = self._guild_locks.setdefault(guild_key, asyncio.Lock())
        acknowledged: asyncio.Future[None] | None = None
        try:
            # The guild's lock, then the one for the total caps that every guild shares: the
            # database locks decide, these only keep SQLite's writers in line.
            async with lock, self._total_lock:
                await store.admit(
                    self._transactions,
                    self._settings.quotas,
                    job,
                    origin.role_ids,
                    order=order,
                    parent_channel_id=origin.parent_channel_id,
                    intake_id=intake_id,
                    enqueue=shared.enqueue if shared is not None else None,
                    sessions=self._sessions,
                )
            # Queued in the database (shared) it is whichever process's that claims it; here it
            # may start at once, its provider call beside the acknowledgement's round trip,
            # and report nothing before Discord answered that (see _acknowledged).
            if shared is None:
                if acknowledge is not None:
                    acknowledged = asyncio.get_running_loop().create_future()
                    self._unacknowledged[job.id] = acknowledged
                if len(self._carried) < CARRIED_JOBS:
                    # Uploads (megabytes each) stay in the database until the job starts.
                    self._carried[job.id] = (job, order if order.image is None else None)
                lane = order.backend or DEFAULT_BACKEND
                self.dispatcher.push(QueuedJob(job.id, guild_key, user_key, order.n, lane))
            if acknowledge is not None:  # outside the locks: the next admission goes on
                await self._acknowledge(job, acknowledge)
        except TotalBudget as error:
            self.spend_caps.refused(error)
            raise
        finally:
            if acknowledged is not None:
                # No await from here to the job_queued call below: it takes the status
                # message's lock before the job, woken by this, can report anything.
                del self._unacknowledged[job.id]
                acknowledged.set_result(None)
            _decrement(self._admitting, member)
            _decrement(self._admitting_guild, guild_key)
            if guild_key not in self._admitting_guild:
                self._guild_locks.pop(guild_key, None)
        if self._listener is not None:
            # Awaited before the job can report anything else, so "queued" never lands last.
            if shared is not None:  # None: claimed already, or next with a slot free here
                place = (await shared.places((job.id,))).get(job.id)
                if place is not None and place.position == 1 and shared.starts_here(job.lane):
                    place = None
            else:
                place = None if self.dispatcher.starts_now(job.id) else self.place(job.id)
            try:
                await self._listener.job_queued(job, place)
            except Exception:  # the job is queued all the same: the member must not hear "error"
                log.exception("job %d: showing its place failed", job.id, extra=_context(job))
        log.info(
            "job %d queued: %s n=%d model=%s guild=%s user=%s",
            job.id,
            command,
            order.n,
            spec.name,
            origin.guild_id,
            origin.user_id,
            extra=_context(job),
        )
        return job

    async def _acknowledge(self, job: Job, acknowledge: Callable[[], Awaitable[None]]) -> None:
        """Tell the requester their admitted job is taken; a failure only costs that answer."""
        try:
            await acknowledge()
        except Exception as exc:  # admitted and charged: it must run, whatever Discord said
            log.warning(
                "job %d: its request could not be acknowledged (%s); it runs all the same",
                job.id,
                exc,
                extra=_context(job),
            )

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job that has not started, or one running on a backend that can stop it
        (``features.cancel_running``: the backend's call is cancelled, which stops the work
        there); False when it is running elsewhere (OpenAI bills it anyway) or already done.

        On the shared queue, from any process: whichever holds the job (see bot.jobs.shared)."""
        if self.shared is not None:
            return await self.shared.cancel(
                job_id, here=self._cancel_running, stoppable=self.can_cancel_running
            )
        if not self.dispatcher.remove(job_id):
            return await self._cancel_running(job_id)
        self._carried.pop(job_id, None)
        await store.finish_without_images(self._sessions, job_id, JobStatus.CANCELLED)
        log.info("job %d cancelled", job_id, extra={"job_id": job_id})
        return True

    def can_cancel_running(self, job: Job) -> bool:
        """Whether ``job``, once it runs, can still be cancelled (its backend can stop it)."""
        return self._engine.backends.for_job(job.backend).features.cancel_running

    async def _cancel_running(self, job_id: int) -> bool:
        making = self._making.get(job_id)
        if making is None or not self._cancel_here(job_id):
            return False
        # Until _run has recorded it cancelled: the caller's "Cancelled" is then the truth.
        await asyncio.wait({making.task})
        return True

    def _cancel_here(self, job_id: int) -> bool:
        """Stop ``job_id`` if its backend is making it here and can stop; False if not."""
        making = self._making.get(job_id)
        if making is None or not making.backend.features.cancel_running:
            return False
        self._cancelling.add(job_id)
        making.task.cancel()
        return True

    def _cancel_asked_remotely(self, job_id: int) -> bool:
        if job_id not in self._making:
            return False
        self._remote_cancels.add(job_id)
        if not self._cancel_here(job_id):
            self._remote_cancels.discard(job_id)  # it cannot stop: it finishes as it is
        return True

    def place(self, job_id: int) -> Place | None:
        return self.dispatcher.places((job_id,)).get(job_id)

    async def places(self, job_ids: Iterable[int]) -> dict[int, Place]:
        """Where each of ``job_ids`` that is queued stands (over every process when shared)."""
        return await self.positions.places(job_ids)

    # --- running -------------------------------------------------------------------------------

    async def _run(self, queued: QueuedJob, claimed: Job | None = None) -> None:
        """One job, from its start to its result recorded: no database write before the result
        is posted (the start goes to the journal), then one that records everything.

        ``claimed``: the job as the shared queue's claim left it (started, its lease taken)."""
        job, order = claimed, None
        if job is None:
            job, order = self._carried.pop(queued.job_id, (None, None))
        if job is None:  # queued by an earlier process, or beyond CARRIED_JOBS
            job = await store.get_job(self._sessions, queued.job_id)
            if job is None or job.status is not JobStatus.QUEUED:
                return
        started = (claimed and claimed.started_at) or utcnow()
        shared = self.shared
        try:
            if shared is not None:
                await self._shared_started(job)
            if order is None:
                order = await store.order_of(self._sessions, job)
            if claimed is None:
                self.journal.started(job.id, started)
                job.started_at = started
            task = asyncio.current_task()
            assert task is not None
            making = self._making[job.id] = _Making(task, self._engine.backend_for(order))
            if shared is not None and shared.take_cancel(job.id):
                self._remote_cancels.add(job.id)
                self._cancel_here(job.id)  # asked before it got here: stops at the next await
            check = self._content_check
            try:
                made = await make_images_failing_over(
                    self._engine,
                    order,
                    job_id=job.id,
                    trying=making.trying,
                    slot=lambda backend: (shared or self.dispatcher).slot(queued, backend.name),
                    progress=self._progress_of(job),
                    screen=None if check is None else partial(check.screen, job),
                )
            except PRECHECK_REFUSALS:
                # Never sent: its images count against no rate limit (the shared limit is
                # taken only in the backend's slot, which it never reached).
                self.dispatcher.request_unsent(job.id)
                raise
            finally:
                del self._making[job.id]
                # The provider answered: the rate limit's window for these images starts now
                # (the dispatcher also does this when _run ends, for every other way out).
                self.dispatcher.request_done(job.id)
            sent, result = made.sent, made.result
        except BotError as error:
            # Only the operator can fix an operator problem (a refused key, no billing): ERROR.
            log.log(
                logging.ERROR if error.operator_problem else logging.INFO,
                "job %d failed: %s (%s)",
                job.id,
                error.key,
                getattr(error, "detail", error),
                extra=_context(job),
            )
            await self._fail(
                job.id, error, getattr(error, "possibly_billed", False), job.started_at
            )
            return
        except Exception:
            ref = f"J{job.id}"
            log.exception(
                "job %d failed unexpectedly (reference %s)", job.id, ref, extra=_context(job)
            )
            await self._fail(job.id, InternalError(ref=ref), False, job.started_at)
            return
        except asyncio.CancelledError:
            if job.id not in self._cancelling:
                raise  # shutting down: it stays running in the database, for the restart
            self._cancelling.discard(job.id)
            if (current := asyncio.current_task()) is not None:
                current.uncancel()  # asked for, and handled: not a cancellation of _run's caller
            await self._cancelled_running(job)
            return
        cost = settle_cost(
            self._prices,
            result.model,
            len(result.images),
            result.size,
            result.quality,
            result.usage,
            backend=made.backend,
            partial_images=result.partial_images,
        )
        if cost > job.cost_micro_usd:
            log.warning(
                "job %d cost %d micro-USD, more than the %d reserved for it",
                job.id,
                cost,
                job.cost_micro_usd,
                extra=_context(job),
            )
        log.info(
            "job %d succeeded: %d images, cost %d micro-USD",
            job.id,
            len(result.images),
            cost,
            extra=_context(job),
        )
        reserved = (job.n_charged, job.cost_micro_usd)
        # Who made them (a fallback, maybe), and whether a backend before may have billed too.
        job.backend, job.model, job.possibly_billed = made.backend, made.model, made.possibly_billed
        store.settle(job, result, cost)
        # Kept instead of the raw uploads: what was sent is all Redo/Retry need.
        kept_inputs = None if (sent.image, sent.mask) == (order.image, order.mask) else sent
        if shared is not None:
            post, recorded = self._post, self._recorded
            await shared.deliver(job, result, kept_inputs, reserved, post=post, recorded=recorded)
            return
        # On disk while it is posted (a thread writes it meanwhile), in the database after.
        holding = asyncio.create_task(self.results.hold(job, result, cost))
        posted = await self._post(job, list(result.images))
        await holding
        await self.results.record(job, result, cost, posted, kept_inputs, reserved=reserved)
        self.journal.settled(job.id)
        if posted:
            await self._recorded(job)

    def _progress_of(self, job: Job) -> ProgressCallback | None:
        """The backend's progress callback for ``job``: the listener's, made harmless (an
        update the listener cannot take is logged once and the job goes on)."""
        listener = self._listener
        if listener is None:
            return None
        failed = False

        def show(update: ProgressUpdate) -> None:
            nonlocal failed
            try:
                listener.job_progress(job, update)
            except Exception:
                if not failed:
                    log.exception("job %d: showing progress failed", job.id, extra=_context(job))
                failed = True

        def progress(update: ProgressUpdate) -> None:
            waiting = self._unacknowledged.get(job.id)
            if waiting is None:
                show(update)
            else:  # shown, in order, once Discord answered the acknowledgement
                waiting.add_done_callback(lambda _: show(update))

        return progress

    async def _acknowledged(self, job_id: int) -> None:
        """Until Discord answered the acknowledgement of ``job_id``'s request, if it is still
        waited for (shielded: a job cancelled meanwhile leaves it to its submitter)."""
        waiting = self._unacknowledged.get(job_id)
        if waiting is not None:
            await asyncio.shield(waiting)

    async def _shared_started(self, job: Job) -> None:
        """Claimed here: its status message is this process's to keep from now on."""
        if self._listener is not None:
            try:
                await self._listener.job_queued(job, None)
            except Exception:
                log.exception("job %d: showing its start failed", job.id, extra=_context(job))

    async def _cancelled_running(self, job: Job) -> None:
        """Cancelled by its requester while its backend made it: the backend stopped (only
        backends that can are cancelled), so nothing is made, charged or possibly billed."""
        if job.id in self._remote_cancels:  # told here first: nothing shown here lands after
            self._remote_cancels.discard(job.id)
            if self._listener is not None:
                try:
                    await self._listener.job_cancelled(job)
                except Exception:
                    log.exception("job %d: showing the cancel failed", job.id, extra=_context(job))
        await store.finish_without_images(
            self._sessions, job.id, JobStatus.CANCELLED, started_at=job.started_at
        )
        self.journal.settled(job.id)
        log.info("job %d cancelled while running", job.id, extra=_context(job))

    async def _fail(
        self,
        job_id: int,
        error: BotError,
        possibly_billed: bool = False,
        started_at: datetime | None = None,
    ) -> None:
        job = await store.record_failure(
            self._sessions, job_id, error, possibly_billed=possibly_billed, started_at=started_at
        )
        self.journal.settled(job_id)
        if job is not None and self._listener is not None:
            await self._acknowledged(job_id)
            try:
                await self._listener.job_failed(job, error)
                await store.clear_token(self._sessions, job_id)
            except Exception:
                log.exception("job %d: reporting the failure failed", job_id, extra=_context(job))

    async def _post(self, job: Job, images: list[GeneratedImage]) -> Posted:
        """Where the listener posted the result; empty when it could not (it stays kept)."""
        if self._listener is None:
            return []
        await self._acknowledged(job.id)
        try:
            return await self._listener.job_succeeded(job, images)
        except Exception:
            log.exception(
                "job %d: delivering the result failed; it stays stored", job.id, extra=_context(job)
            )
            return []

    async def _recorded(self, job: Job) -> None:
        if self._listener is not None:
            try:
                await self._listener.job_recorded(job)
            except Exception:
                log.exception("job %d: telling it is done failed", job.id, extra=_context(job))

    async def _notify_success(self, job: Job, images: list[GeneratedImage]) -> None:
        """Post a result recorded (or spooled) earlier and record where it went."""
        posted = await self._post(job, images)
        if posted:
            try:
                await self.delivered(job.id, posted)
            except Exception:
                log.exception("job %d: recording the delivery failed", job.id, extra=_context(job))
            await self._recorded(job)

    async def delivered(self, job_id: int, messages: Posted) -> None:
        """The result of ``job_id`` is posted as ``messages`` (the first carries the details):
        recorded (or noted beside the spool, see :meth:`ResultKeeper.record_posted`), and the
        job's interaction token, of no further use, is dropped."""
        await self.results.record_posted(job_id, messages)
        with contextlib.suppress(*DATABASE_ERRORS):  # else the hourly prune pass clears it
            await store.clear_token(self._sessions, job_id)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Pick up where the last process stopped, then start dispatching.

        Requests acknowledged but not yet jobs (intakes) are finished after the queued jobs
        are back in the queue, so they queue behind the requests that were first. The queued
        jobs are read as the queue's four columns, in batches (there may be 100,000); only
        those whose requester can still be shown their place are read whole.

        The shared queue (PostgreSQL) is not read into memory, and another process's running
        jobs are its own (the lease slice's reaper interrupts them once their lease ran out):
        only the intakes left by killed processes are finished here.
        """
        if self.leases is not None:  # registered (and beating) before it claims anything
            await self.leases.start(lambda: self._listener)
        if self.shared is not None:
            await self.shared.start(dispatch=self.process.runs_jobs, intakes=self._intake_recovery)
            return
        sent = self.journal.read()  # the jobs whose requests went to the provider
        # Images made before the stop (also those being posted) are recorded, not interrupted.
        await self.results.flush(inflight=True)
        for job in await store.unfinished_jobs(self._sessions):
            if await self.results.kept(job.id):
                continue  # made, kept in the spool: recorded when the database takes it
            if job.status is JobStatus.RUNNING:
                await self._interrupted(job, sent.get(job.id))
            else:
                log.info(
                    "job %d was made but not posted: posting it now", job.id, extra=_context(job)
                )
                await self._notify_success(job, await store.outputs_of(self._sessions, job.id))
        # Once flushed the spool is nearly always empty: then no queued job can be in it.
        spooled = await asyncio.to_thread(_has_files, self.results.spool.directory)
        resumed, sent_but_queued = 0, []
        async for batch in store.queued_jobs(self._sessions):
            for job_id, guild_id, user_id, n, backend in batch:
                if spooled and await self.results.kept(job_id):
                    continue
                if job_id in sent:  # its request went out: it may be billed
                    sent_but_queued.append(job_id)
                    continue
                guild_key, user_key = _job_keys(guild_id, user_id or 0)
                lane = backend or DEFAULT_BACKEND
                self.dispatcher.queue.push(QueuedJob(job_id, guild_key, user_key, n, lane))
                resumed += 1
        for job_id in sent_but_queued:
            if (sent_job := await store.get_job(self._sessions, job_id)) is not None:
                await self._interrupted(sent_job, sent.get(job_id))
        self.journal.reset()  # every job it listed is dealt with
        if resumed:
            log.info("%d queued jobs resume", resumed)
        if self._listener is not None:
            since = utcnow() - TOKEN_LIFETIME
            told = [
                job
                for job in await store.queued_with_token(self._sessions, since)
                if job.id in self.dispatcher.queue
            ]
            places = self.dispatcher.places(job.id for job in told)
            for job in told:
                try:
                    await self._listener.job_queued(job, places.get(job.id))
                except Exception:
                    log.exception("job %d: showing its place failed", job.id, extra=_context(job))
        await self._recover_intakes()
        if self.process.runs_jobs:  # else (tests on SQLite) another bot on this file runs them
            self.dispatcher.start()
        self.spawn(self.results.flush_forever(), name="spool")

    async def _interrupted(self, job: Job, started_at: datetime | None) -> None:
        """``job``'s request went out before the last process stopped (``started_at``, from the
        journal): interrupted, possibly billed, its requester told."""
        log.warning(
            "job %d was running when the bot stopped: interrupted; its estimate of "
            "%d micro-USD stays in the spend ledger as possibly billed",
            job.id,
            job.cost_micro_usd,
            extra=_context(job),
        )
        interrupted = await store.finish_without_images(
            self._sessions,
            job.id,
            JobStatus.INTERRUPTED,
            "interrupted",
            possibly_billed=True,
            started_at=started_at,
        )
        if interrupted is not None and self._listener is not None:
            try:
                await self._listener.job_interrupted(interrupted)
            except Exception:
                log.exception(
                    "job %d: reporting the interruption failed", job.id, extra=_context(job)
                )

    async def _recover_intakes(self) -> None:
        """Acknowledged requests that never became jobs: queued now, or answered."""
        if self._intake_recovery is None:
            return
        intakes = await pending_intakes(self._sessions)
        if intakes:
            log.info("%d acknowledged requests were not queued yet: finishing them", len(intakes))
        for intake in intakes:
            try:
                await self._intake_recovery.intake_pending(intake)
            except Exception:
                log.exception("finishing the acknowledged request %d failed", intake.id)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the background until it ends or the runner closes."""
        if self._closing:
            work.close()
            return
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self, grace: float = 0.0) -> None:
        """Take nothing new, let running jobs finish for ``grace`` seconds, keep the queue."""
        self._closing = True
        dispatcher = self.shared or self.dispatcher
        dispatcher.pause()
        if grace > 0 and not await dispatcher.wait_running(grace):
            log.warning("jobs still running after %.0f s; the restart will report them", grace)
        await dispatcher.stop()
        if self.leases is not None:  # its jobs still running now are interrupted, not left
            await self.leases.stop()
        self.journal.close()
        await self.intakes.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Until nothing is queued or running (tests; shared: in any process)."""
        if self.shared is not None:
            await self.shared.wait_idle()
            return
        changed = self.dispatcher.watch()
        try:
            while len(self.dispatcher.queue) or self.dispatcher.running:
                await changed.wait()
                changed.clear()
        finally:
            self.dispatcher.unwatch(changed)


@dataclass(eq=False)
class _Making:
    """A job while a backend makes its images: the task to cancel, the backend it is on."""

    task: asyncio.Task[Any]
    backend: Backend

    def trying(self, backend: Backend) -> None:
        self.backend = backend  # failed over: a cancel now goes to this one


def _context(job: Job) -> dict[str, int | None]:
    """What a log line about ``job`` carries as fields (see bot.logs.CONTEXT_FIELDS)."""
    return {"job_id": job.id, "guild_id": job.guild_id, "user_id": job.user_id}


def blended_images(order: ImageOrder) -> int:
    """The pictures of a blend (each priced for its input tokens); 0 for any other order."""
    if not order.extra_images:
        return 0
    return (order.image is not None) + len(order.extra_images)


def _priced_size(order: ImageOrder, spec: ModelSpec) -> str | None:
    """The size a reservation is priced at: the member's; else the model's default for a new
    image; else None, an upload's shape decides (see :func:`bot.quotas.estimate_cost`)."""
    if order.size:
        return order.size
    return spec.default_size if order.operation is Operation.GENERATE else None


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _decrement(counter: Counter[Any], key: Hashable) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _keys(origin: JobOrigin) -> tuple[object, object]:
    return _job_keys(origin.guild_id, origin.user_id)


def _job_keys(guild_id: int | None, user_id: int) -> tuple[object, object]:
    """Fairness keys: guilds, and direct messages as one pseudo-guild per user."""
    if guild_id is None:
        return ("dm", user_id), user_id
    return guild_id, user_id
