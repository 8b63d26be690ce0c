"""Feeds the metrics from the job runner's events, without the runner knowing about metrics.

Wraps the real listener (the Discord delivery): every event is counted, then passed on.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.db.models import Job
from bot.errors import BotError
from bot.jobs import JobListener, Place, Posted
from bot.ops.metrics import Metrics
from bot.providers import GeneratedImage
from bot.providers.progress import ProgressUpdate
from bot.quotas.policy import TotalBudget
from bot.quotas.prices import MICRO


class ObservingListener:
    def __init__(self, inner: JobListener, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def job_queued(self, job: Job, place: Place | None) -> None:
        await self.inner.job_queued(job, place)

    async def job_succeeded(self, job: Job, images: list[GeneratedImage]) -> Posted:
        self._finished(job, "succeeded")
        self.metrics.images.inc(len(images))
        self.metrics.spend.inc(job.cost_micro_usd / MICRO)
        return await self.inner.job_succeeded(job, images)

    async def job_recorded(self, job: Job) -> None:
        await self.inner.job_recorded(job)

    async def job_failed(self, job: Job, error: BotError) -> None:
        self._finished(job, "failed")
        await self.inner.job_failed(job, error)

    async def job_interrupted(self, job: Job) -> None:
        self._finished(job, "interrupted")
        await self.inner.job_interrupted(job)

    async def job_post_interrupted(self, job: Job) -> None:
        await self.inner.job_post_interrupted(job)

    async def job_cancelled(self, job: Job) -> None:
        await self.inner.job_cancelled(job)

    def job_progress(self, job: Job, update: ProgressUpdate) -> None:
        self.inner.job_progress(job, update)

    def _finished(self, job: Job, outcome: str) -> None:
        self.metrics.jobs.labels(outcome=outcome).inc()
        if job.started_at is not None:
            self.metrics.wait_seconds.observe(
                max((job.started_at - job.queued_at).total_seconds(), 0.0)
            )
            if job.finished_at is not None:
                self.metrics.run_seconds.observe(
                    max((job.finished_at - job.started_at).total_seconds(), 0.0)
                )


def count_spend_cap_refusals(metrics: Metrics) -> Callable[[TotalBudget], None]:
    """What the runner's SpendCapWatch calls for every request a total spend cap refused."""

    def count(error: TotalBudget) -> None:
        metrics.spend_cap_refusals.labels(period=error.period).inc()

    return count
