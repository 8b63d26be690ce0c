"""Runs jobs in the background and tells a listener how each one ended.

This is the in-process runner the front end talks to; its interface (``submit``, ``close`` and
the :class:`JobListener` callbacks) is what the fair, durable queue offers too, so the Discord
layer does not change when the queue replaces it. Jobs are rows from the start: the listener
reads everything it needs from the database, never from this object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from bot.db.models import Job
from bot.errors import BotError
from bot.generation import Engine, ImageOrder, make_images
from bot.jobs import store
from bot.jobs.store import JobOrigin, Sessions
from bot.providers import ImageResult
from bot.quotas import PriceTable, estimate_cost, settle_cost

log = logging.getLogger(__name__)


class InternalError(BotError):
    """A bug, not the member's fault: the log has the traceback under ``ref``."""

    key = "error.unexpected"
    template = "Something went wrong on our side. Reference: {ref}"


class JobListener(Protocol):
    async def job_succeeded(self, job: Job, result: ImageResult, seconds: float) -> None: ...

    async def job_failed(self, job: Job, error: BotError) -> None: ...


class JobRunner:
    def __init__(
        self,
        engine: Engine,
        sessions: Sessions,
        *,
        prices: PriceTable | None = None,
        concurrency: int = 4,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._prices = prices or PriceTable()
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: JobListener | None = None

    def set_listener(self, listener: JobListener) -> None:
        self._listener = listener

    async def submit(self, order: ImageOrder, origin: JobOrigin) -> Job:
        """Record the job and start it; returns the queued row."""
        spec = self._engine.provider.spec_for(order.model)
        estimate = estimate_cost(self._prices, spec.name, order.n, order.size, order.quality)
        job = await store.create_job(self._sessions, order, origin, spec.name, estimate)
        task = asyncio.create_task(self._run(job.id, order), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info(
            "job %d queued: %s n=%d model=%s guild=%s",
            job.id,
            order.operation.value,
            order.n,
            spec.name,
            origin.guild_id,
        )
        return job

    async def _run(self, job_id: int, order: ImageOrder) -> None:
        async with self._slots:
            await store.mark_running(self._sessions, job_id)
            started = time.perf_counter()
            try:
                result = await make_images(self._engine, order)
            except BotError as error:
                log.info("job %d failed: %s (%s)", job_id, error.key, _detail(error))
                await self._fail(job_id, error)
                return
            except Exception:
                ref = f"J{job_id}"
                log.exception("job %d failed unexpectedly (reference %s)", job_id, ref)
                await self._fail(job_id, InternalError(ref=ref))
                return
            seconds = time.perf_counter() - started
        cost = settle_cost(
            self._prices,
            result.model,
            len(result.images),
            result.size,
            result.quality,
            result.usage,
        )
        job = await store.record_success(self._sessions, job_id, result, cost)
        log.info("job %d succeeded: %d images in %.2f s", job_id, len(result.images), seconds)
        if job is not None and self._listener is not None:
            try:
                await self._listener.job_succeeded(job, result, seconds)
            except Exception:
                log.exception("job %d: delivering the result failed", job_id)

    async def _fail(self, job_id: int, error: BotError) -> None:
        job = await store.record_failure(self._sessions, job_id, error)
        if job is not None and self._listener is not None:
            try:
                await self._listener.job_failed(job, error)
            except Exception:
                log.exception("job %d: reporting the failure failed", job_id)

    async def wait_idle(self) -> None:
        """Until every submitted job has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _detail(error: BotError) -> str:
    return str(getattr(error, "detail", "") or error)
