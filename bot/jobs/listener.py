"""What the job runner tells the Discord layer (its listener) about each job."""

from __future__ import annotations

from typing import Protocol

from bot.db.models import Job
from bot.errors import BotError
from bot.jobs.dispatcher import Place
from bot.jobs.spool import Posted
from bot.providers import GeneratedImage
from bot.providers.progress import ProgressUpdate


class JobListener(Protocol):
    """Tells members what happened to their jobs; the runner records what it did.

    ``job_succeeded`` posts the result and returns where: (channel id, message id) of every
    message, in order, or nothing when no route took it (the listener may post it later and
    hands that posting to :meth:`JobRunner.delivered`). ``job_recorded`` follows once where it
    was posted is recorded, so whatever it tells the member ("done") is true for every button
    on the result. The listener writes no job state.
    """

    async def job_queued(self, job: Job, place: Place | None) -> None: ...

    async def job_succeeded(self, job: Job, images: list[GeneratedImage]) -> Posted: ...

    async def job_recorded(self, job: Job) -> None: ...

    async def job_failed(self, job: Job, error: BotError) -> None: ...

    async def job_interrupted(self, job: Job) -> None: ...

    async def job_post_interrupted(self, job: Job) -> None:
        """The shared queue: ``job``'s result was made, but the process posting it stopped
        before it recorded the post (bot.jobs.orphans); the requester may post it."""
        ...

    async def job_cancelled(self, job: Job) -> None:
        """Stopped while running at the request of another process, where Cancel was pressed
        (the shared queue): nothing more is shown here but that it is cancelled."""
        ...

    def job_progress(self, job: Job, update: ProgressUpdate) -> None:
        """How far the backend is with ``job``; called while the backend's call runs, so it
        only hands the update on (to be shown later) and returns at once."""
        ...
