"""Paid images kept on disk while the database cannot take them.

When the provider has answered but the database write fails (locked past the busy timeout, disk
full, a read-only file), losing the images means the operator pays twice: the member retries.
The runner writes them here instead (``[storage] spool_dir``), posts them from here, and records
them once the database is back (at start and on a timer), then removes them. A result posted
while its delivery could not be recorded leaves a small "posted" note, so it is recorded as
delivered rather than posted again.

Files are named by job id and written atomically (a temporary file, then a rename): the JSON
file is written last, so a process killed mid-way leaves either a whole entry or no entry.

Every new result is also kept, while it is posted, in a second spool of the same form beside the
database (:func:`inflight_dir`; written without fsync, like a commit with SQLite's
``synchronous = NORMAL``): the images reach the database only if no route takes them, yet a
process killed while posting leaves them for the next start, which records and posts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.config import Settings
from bot.db import Sessions
from bot.db.engine import Transactions, finish_even_if_cancelled, sqlite_path
from bot.db.models import Job, JobStatus
from bot.generation import ImageOrder
from bot.jobs import store
from bot.jobs.store import MadeBy
from bot.providers import GeneratedImage, ImageResult
from bot.providers.types import ImageUsage

log = logging.getLogger(__name__)

#: What a database that cannot take a write raises (locked, disk full, read-only, gone).
DATABASE_ERRORS = (SQLAlchemyError, OSError)
#: Pauses (seconds) between attempts to record a result, within :data:`RECORD_WITHIN` in all.
RECORD_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
RECORD_WITHIN = 4.0
#: How often results kept in the spool are offered to the database again.
SPOOL_RETRY_SECONDS = 30.0
#: A job whose row still holds a reservation: a spooled result for it is not recorded yet.
_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

Notify = Callable[[Job, list[GeneratedImage]], Awaitable[None]]


#: Where a spooled (or unrecorded) result was posted: (channel id, message id) of every part.
Posted = list[tuple[int | None, int]]


@dataclass(frozen=True)
class SpoolEntry:
    """One job's kept result (None: only its posting is left to record) and its posting."""

    job_id: int
    result: ImageResult | None
    cost: int
    posted: Posted | None
    #: Who made the result (a fallback, maybe; see bot.jobs.failover), none in older entries.
    made_by: MadeBy | None = None


def inflight_dir(settings: Settings) -> Path:
    """Where results being posted and the started-jobs journal are kept: beside the SQLite file
    (like its ``-wal``), so it belongs to that database alone; else in the spool directory."""
    database = sqlite_path(settings.database.url)
    if database is None:
        return Path(settings.storage.spool_dir) / "inflight"
    return database.with_name(database.name + "-inflight")


class Spool:
    """A directory of results waiting for the database; every method is synchronous file I/O
    (call it through ``asyncio.to_thread``). ``durable``: fsync every file (off for the copy
    kept while posting, which the database's own commit replaces a moment later)."""

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable

    def keep(self, job: Job, result: ImageResult, cost: int) -> None:
        """Write the images, then the JSON that makes the entry whole."""
        job_id = job.id
        self.directory.mkdir(parents=True, exist_ok=True)
        images = []
        for position, image in enumerate(result.images):
            name = f"job-{job_id}-{position}.{image.extension}"
            _write(self.directory / name, image.data, self.durable)
            images.append(
                {
                    "file": name,
                    "mime_type": image.mime_type,
                    "width": image.width,
                    "height": image.height,
                    "revised_prompt": image.revised_prompt,
                    "seed": image.seed,
                }
            )
        meta = {
            "job_id": job_id,
            "cost_micro_usd": cost,
            "images": images,
            "model": result.model,
            "size": result.size,
            "quality": result.quality,
            "background": result.background,
            "output_format": result.output_format,
            "usage": asdict(result.usage) if result.usage is not None else None,
            "created": result.created,
            "made_by": asdict(MadeBy(job.backend, job.model, job.possibly_billed)),
        }
        _write(self._meta(job_id), json.dumps(meta).encode(), self.durable)

    def mark_posted(self, job_id: int, messages: Posted) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        note = {"messages": [[channel_id, message_id] for channel_id, message_id in messages]}
        _write(self._posted(job_id), json.dumps(note).encode(), self.durable)

    def has(self, job_id: int) -> bool:
        return self._meta(job_id).exists() or self._posted(job_id).exists()

    def entries(self) -> list[SpoolEntry]:
        """Every whole entry, oldest job first."""
        if not self.directory.is_dir():
            return []
        ids = set()
        for path in self.directory.glob("job-*.json"):
            number = path.name.removeprefix("job-").split(".", 1)[0]
            if number.isdigit():
                ids.add(int(number))
        return [self._entry(job_id) for job_id in sorted(ids)]

    def remove(self, job_id: int) -> None:
        """The entry is recorded: its files go (the JSON first, so no half entry is left)."""
        for path in (self._meta(job_id), self._posted(job_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path in self.directory.glob(f"job-{job_id}-*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _entry(self, job_id: int) -> SpoolEntry:
        result, cost, made_by = None, 0, None
        if self._meta(job_id).exists():
            meta = json.loads(self._meta(job_id).read_text(encoding="utf-8"))
            result = _result(meta, self.directory)
            cost = int(meta["cost_micro_usd"])
            if meta.get("made_by") is not None:
                made_by = MadeBy(**meta["made_by"])
        posted = None
        if self._posted(job_id).exists():
            note = json.loads(self._posted(job_id).read_text(encoding="utf-8"))
            posted = [(channel, int(message)) for channel, message in note["messages"]]
        return SpoolEntry(job_id, result, cost, posted, made_by)

    def _meta(self, job_id: int) -> Path:
        return self.directory / f"job-{job_id}.json"

    def _posted(self, job_id: int) -> Path:
        return self.directory / f"job-{job_id}.posted.json"


def _result(meta: dict[str, Any], directory: Path) -> ImageResult:
    images = tuple(
        GeneratedImage(
            (directory / image["file"]).read_bytes(),
            image["mime_type"],
            image["width"],
            image["height"],
            image["revised_prompt"],
            image.get("seed"),
        )
        for image in meta["images"]
    )
    usage = meta.get("usage")
    return ImageResult(
        images=images,
        model=meta["model"],
        size=meta["size"],
        quality=meta["quality"],
        background=meta["background"],
        output_format=meta["output_format"],
        usage=ImageUsage(**usage) if usage is not None else None,
        created=meta["created"],
    )


def _write(path: Path, data: bytes, durable: bool) -> None:
    """Atomically: a reader (or the next start) sees the old file or the whole new one."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    os.replace(temporary, path)


class ResultKeeper:
    """Records finished jobs' images; keeps and posts them from the spool while it cannot.

    ``notify`` posts a result (the runner's listener). A spooled result is posted or recorded
    under one lock, so the timer's recording never races its first posting. ``inflight`` keeps
    each new result while it is posted (see the module's docstring).
    """

    def __init__(
        self,
        transactions: Transactions,
        sessions: Sessions,
        spool: Spool,
        notify: Notify,
        inflight: Spool,
    ) -> None:
        self.spool = spool
        self.inflight = inflight
        self._transactions = transactions
        self._sessions = sessions
        self._notify = notify
        self._lock = asyncio.Lock()
        self.retry_delays: tuple[float, ...] = RECORD_RETRY_DELAYS
        self.flush_seconds = SPOOL_RETRY_SECONDS

    async def hold(self, job: Job, result: ImageResult, cost: int) -> None:
        """Keep a new result on disk, not in the database, while it is posted (``job`` says
        who made it, see :func:`store.settle`)."""
        try:
            await asyncio.to_thread(self.inflight.keep, job, result, cost)
        except OSError:  # posted all the same; only a kill before it is recorded would lose it
            log.exception("job %d: the images cannot be kept while they are posted", job.id)

    async def record(
        self,
        job: Job,
        result: ImageResult,
        cost: int,
        posted: Posted,
        sent: ImageOrder | None = None,
        *,
        reserved: tuple[int, int],
    ) -> None:
        """Record a new result, held by :meth:`hold` and posted as ``posted`` (empty: no route
        took it), in one transaction, retrying a failing database for a few seconds.

        ``job`` is settled already (:func:`store.settle`); ``reserved`` is what it held before.
        When the database stays unavailable the images go to the spool (with where they were
        posted), recorded by :meth:`flush` when it is back.
        """
        began = time.monotonic()
        for delay in (*self.retry_delays, None):
            try:
                await store.record_result(
                    self._transactions, job, result.images, posted, sent, reserved=reserved
                )
                break
            except DATABASE_ERRORS as exc:
                late = delay is None or time.monotonic() - began + delay > RECORD_WITHIN
                log.warning(
                    "job %d: recording the result failed (%s)%s",
                    job.id,
                    type(exc).__name__,
                    "" if late else f"; again in {delay:g} s",
                    extra={"job_id": job.id},
                )
                if late or delay is None:
                    await self._keep(job, result, cost, posted)
                    return
                await asyncio.sleep(delay)
        await asyncio.to_thread(self.inflight.remove, job.id)

    async def _keep(self, job: Job, result: ImageResult, cost: int, posted: Posted) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self.spool.keep, job, result, cost)
                if posted:
                    await asyncio.to_thread(self.spool.mark_posted, job.id, posted)
            except OSError:
                # Nowhere to keep them (the same full disk?): the copy held while posting stays
                # for the next start, if it could be written.
                log.exception("job %d: the images cannot be kept either", job.id)
                return
            log.error(
                "job %d: the database is unavailable; its %d images are kept in %s and "
                "recorded when it is back",
                job.id,
                len(result.images),
                self.spool.directory,
                extra={"job_id": job.id},
            )
            await asyncio.to_thread(self.inflight.remove, job.id)

    async def record_posted(self, job_id: int, messages: Posted) -> None:
        """Remember where the result went; beside the spool while the database cannot take it.

        A spooled result's row is not written yet, and a failing database cannot take it: the
        posting is noted beside the spool and recorded with it, so it is never posted twice.
        """
        if not await asyncio.to_thread(self.spool.has, job_id):
            try:
                await store.record_delivery(self._sessions, job_id, messages)
                return
            except DATABASE_ERRORS as exc:
                log.warning(
                    "job %d: delivery not recorded yet (%s)",
                    job_id,
                    type(exc).__name__,
                    extra={"job_id": job_id},
                )
        await asyncio.to_thread(self.spool.mark_posted, job_id, messages)

    async def kept(self, job_id: int) -> bool:
        return await asyncio.to_thread(lambda: self.spool.has(job_id) or self.inflight.has(job_id))

    async def flush(self, *, inflight: bool = False) -> int:
        """Record what the spool keeps, posting what was never posted; how many are left.

        ``inflight``: also what a killed process was posting (at start only: while this one
        runs, those entries are its own jobs', being posted)."""
        async with self._lock:
            entries: list[tuple[Spool, SpoolEntry]] = []
            for spool in (self.spool, self.inflight) if inflight else (self.spool,):
                try:
                    entries += [(spool, e) for e in await asyncio.to_thread(spool.entries)]
                except (OSError, ValueError, KeyError):
                    log.exception("the spool in %s cannot be read", spool.directory)
                    return -1
            unposted: list[tuple[Job, ImageResult]] = []
            left = 0
            for spool, entry in entries:
                try:
                    job = await self._record(spool, entry)
                except DATABASE_ERRORS as exc:
                    log.warning("job %d: the spool is not recorded yet (%s)", entry.job_id, exc)
                    left += 1
                    continue
                if job is not None and entry.result is not None:
                    unposted.append((job, entry.result))
            for job, result in unposted:
                log.info("job %d: posting its images from the spool", job.id)
                await self._notify(job, list(result.images))
        return left

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            if await asyncio.to_thread(self.spool.entries):
                await finish_even_if_cancelled(self.flush())

    async def _record(self, spool: Spool, entry: SpoolEntry) -> Job | None:
        """One entry into the database, then off the disk; the job when it is still unposted."""
        job = await store.get_job(self._sessions, entry.job_id)
        unposted = None
        if job is not None and entry.result is not None and job.status in _ACTIVE:
            job = await store.record_success(
                self._sessions, job.id, entry.result, entry.cost, made_by=entry.made_by
            )
            unposted = job if entry.posted is None else None
            log.info("job %d: result recorded from the spool", entry.job_id)
        if job is not None and entry.posted is not None and job.status is JobStatus.SUCCEEDED:
            await store.record_delivery(self._sessions, job.id, entry.posted)
        await asyncio.to_thread(spool.remove, entry.job_id)
        return unposted
