"""The private status message under each request: place in the queue, wait, Cancel, outcome.

Members of peer bots could not see whether their request was waiting, running or lost. Here the
deferred response shows the position and an estimated wait (a Discord timestamp, so every member
reads it in their own language), with a Cancel button, and is refreshed as the queue moves.
While the job runs it shows the backend's progress and its latest preview (see
:meth:`StatusBoard.progress`). Edits are rate-limited per job, and a final text (done, failed,
cancelled) is never overwritten by a late queue or progress update: every edit of one job's
status goes through that job's lock, and the final one marks the job so no later update is
attempted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import discord

from bot.db.models import Intake, Job
from bot.discord.generate._progress import preview_file, progress_text
from bot.discord.generate._views import CancelButton
from bot.discord.i18n import Catalog
from bot.discord.markup import discord_time
from bot.jobs import Place
from bot.providers.progress import ProgressUpdate

log = logging.getLogger(__name__)

#: Follow-ups are not attempted this close to the token's 15-minute end.
TOKEN_LIFETIME = timedelta(minutes=14, seconds=30)
#: The interaction's own response message: Discord takes "@original" where a message id goes.
ORIGINAL: Any = "@original"
#: At most one queue update per job this often (Discord rate-limits webhook edits).
REFRESH_SECONDS = 5.0
#: At most one pass over the waiting jobs this often, however busy the queue.
PASS_SECONDS = 1.0
#: At most one progress edit per job this often (issue 12: "about once per second").
PROGRESS_SECONDS = 1.0
#: An edit that only moves the bar (no new preview) waits this long after the last edit (until
#: an update comes after it), and a new preview waits only half of PROGRESS_SECONDS after such
#: an edit: the bar alone is worth less than the picture, which should be seen within half a
#: second of being made (bench/preview.py).
TEXT_SECONDS = 2.0
#: How long the result waits for a progress edit under way (say, one waiting out a 429).
PROGRESS_STOP_SECONDS = 5.0


class FollowUps:
    """Interaction follow-up webhooks, made from stored tokens (no interaction object needed)."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client

    def of(self, job: Job | Intake) -> discord.Webhook | None:
        """The follow-up webhook of a job (or intake) while its token is still alive."""
        if not (job.application_id and job.interaction_token and job.interaction_at):
            return None
        created = job.interaction_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if datetime.now(UTC) - created > TOKEN_LIFETIME:
            return None
        return discord.Webhook.from_state(
            data={"id": job.application_id, "type": 3, "token": job.interaction_token},
            state=self._client._connection,
        )


class QueuePositions(Protocol):
    """Where waiting jobs stand, and a signal when that changes (the job runner's positions:
    this process's queue, or the one every process shares, read from the database)."""

    @property
    def running(self) -> Mapping[int, object]: ...

    async def places(self, job_ids: Iterable[int]) -> dict[int, Place]: ...

    def watch(self) -> asyncio.Event: ...

    def unwatch(self, event: asyncio.Event) -> None: ...


@dataclass(eq=False)
class _Status:
    """One job's private status message, while it may still change."""

    job: Job
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The position last shown; None while no position is shown.
    shown: int | None = None
    started_shown: bool = False
    edited_at: float = -math.inf
    #: The last word was said (done, failed, cancelled): nothing may edit it any more.
    final: bool = False
    #: The newest progress not shown yet, and the newest preview not shown yet (an update
    #: carries one only when it changed, so a later update without one does not drop it).
    update: ProgressUpdate | None = None
    preview: bytes | None = field(default=None, repr=False)
    #: What the last progress edit said, and whether a preview is attached to the message.
    progress_shown: str | None = None
    preview_shown: bool = False
    #: The last edit brought a new preview (the next one waits the whole PROGRESS_SECONDS).
    preview_last: bool = False
    #: True once no progress edit may start any more (the result is being posted).
    progress_over: bool = False
    #: Set when the progress task must look again: a new preview came, or progress is over.
    progress_wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: The task that edits progress in, while there is any to show.
    progress_task: asyncio.Task[None] | None = None


#: Ended jobs remembered (a late update comes within seconds; this is hours of a busy bot).
ENDED_KEPT = 10_000


class StatusBoard:
    def __init__(
        self,
        catalog: Catalog,
        follow_ups: FollowUps,
        positions: QueuePositions,
        cancellable: Callable[[Job], bool] = lambda job: False,
    ) -> None:
        """``cancellable(job)``: whether a running ``job`` keeps its Cancel button (its
        backend can stop it)."""
        self.catalog = catalog
        self.follow_ups = follow_ups
        self.positions = positions
        self._cancellable = cancellable
        self._entries: dict[int, _Status] = {}
        #: Jobs whose last word was said, newest last: a "queued"/"working" update that comes
        #: late (the shared queue tells a claim from another task) must not bring them back.
        self._ended: OrderedDict[int, None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: Seconds between two position updates of one job; between two passes over all jobs.
        self.refresh_seconds = REFRESH_SECONDS
        self.pass_seconds = PASS_SECONDS
        #: Seconds from one progress edit of a job to the next; to the next without a preview.
        self.progress_seconds = PROGRESS_SECONDS
        self.text_seconds = TEXT_SECONDS

    async def queued(self, job: Job, place: Place | None) -> None:
        if self.follow_ups.of(job) is None:
            return  # reactions have no private message; the result itself is the answer
        if job.id in self._ended:
            return  # done, failed or cancelled already: a late update would undo that
        entry = self._entries.get(job.id)
        if entry is None:  # else the shared queue's claim says "working" after "queued"
            entry = self._entries[job.id] = _Status(job)
        async with entry.lock:
            if not entry.final:
                await self._show(entry, place)

    async def final(self, job: Job, text: str) -> bool:
        """The last word on a job (done, failed); False when it could not be said."""
        self._end(job.id)
        entry = self._entries.pop(job.id, None)
        if entry is None:
            return await self._edit(job, text, view=None)
        _end_progress(entry)
        async with entry.lock:
            entry.final = True
            # The preview goes with the progress: "done" stands alone above the result.
            return await self._edit(job, text, view=None, clear_files=entry.preview_shown)

    async def cancel(self, job_id: int, cancel: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``cancel`` while no update of the job's status can be under way or start.

        When it returns True the caller's answer (the Cancel button's own message update) is
        the last word: no queue update that was waiting can land after it and undo it.
        """
        entry = self._entries.get(job_id)
        if entry is None:
            return await cancel()
        async with entry.lock:
            if not await cancel():
                return False
            entry.final = True
            _end_progress(entry)
            self._entries.pop(job_id, None)
            self._end(job_id)
        return True

    def _end(self, job_id: int) -> None:
        self._ended[job_id] = None
        self._ended.move_to_end(job_id)
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)

    async def _show(self, entry: _Status, place: Place | None) -> None:
        job, catalog = entry.job, self.catalog
        if entry.started_shown:
            return  # a job that started never waits again
        if place is None:
            if entry.started_shown:
                return
            entry.started_shown = True
            entry.shown = None
            text = catalog.text("status.working", job.locale, n=job.n_requested)
            # An edit like any other: the job's first progress edit keeps the pace after it.
            entry.edited_at = time.monotonic()
            await self._edit(
                job, text, view=self._cancel_view(job) if self._cancellable(job) else None
            )
            return
        eta = datetime.now(UTC) + timedelta(seconds=place.eta_seconds)
        when = discord_time(eta)
        if place.far:
            # Everything up to the cap starts first; how far back beyond it is not counted.
            ahead = place.position - 1
            text = catalog.text("status.queued_far", job.locale, ahead=ahead, eta=when)
        else:
            text = catalog.text("status.queued", job.locale, position=place.position, eta=when)
        entry.shown = place.position
        entry.edited_at = time.monotonic()
        await self._edit(job, text, view=self._cancel_view(job))

    def _cancel_view(self, job: Job) -> discord.ui.View:
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id, self.catalog.text("button.cancel", job.locale)))
        return view

    async def _edit(
        self, job: Job, text: str, *, view: discord.ui.View | None, clear_files: bool = False
    ) -> bool:
        webhook = self.follow_ups.of(job)
        if webhook is None:
            return False
        extra: dict[str, Any] = {"attachments": []} if clear_files else {}
        try:
            await webhook.edit_message(ORIGINAL, content=text, view=view, **extra)
        except discord.HTTPException as exc:
            log.info("job %d: status not updated (%s %s)", job.id, exc.status, exc.code)
            return False
        return True

    # --- progress while the job runs -----------------------------------------------------------

    def progress(self, job: Job, update: ProgressUpdate) -> None:
        """Show ``update`` soon: at most one edit per job every ``progress_seconds`` (every
        ``text_seconds`` when there is no new preview), and only the newest update when
        several came meanwhile. Returns at once (the backend's call is waiting); the edits run
        in the job's own task and never fail the job."""
        entry = self._entries.get(job.id)
        if entry is None or entry.final or entry.progress_over:
            return  # no private message (a reaction's job), or its last word is said
        entry.update = update
        if update.preview is not None:
            entry.preview = update.preview
        entry.progress_wake.set()  # a waiting preview may go with this update
        if entry.progress_task is None:
            entry.progress_task = asyncio.create_task(
                self._show_progress(entry), name=f"progress-{job.id}"
            )

    async def stop_progress(self, job: Job) -> None:
        """No progress edit after this returns: the result is about to be posted. An edit
        under way is let finish (briefly), so it cannot land after the result."""
        entry = self._entries.get(job.id)
        if entry is None:
            return
        _end_progress(entry)
        task = entry.progress_task
        if task is not None and task is not asyncio.current_task():
            _, pending = await asyncio.wait({task}, timeout=PROGRESS_STOP_SECONDS)
            for late in pending:
                late.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _show_progress(self, entry: _Status) -> None:
        try:
            while entry.update is not None and not (entry.progress_over or entry.final):
                wait = self._next_progress_at(entry) - time.monotonic()
                if wait > 0:
                    # Shown by the first update that comes once the pace allows (the freshest
                    # then), or by this timer a pace later when none comes: a timer's edit at
                    # the pace would land between two polls of the backend, just before the
                    # next preview, which would then wait a whole pace.
                    wait += self.progress_seconds
                    entry.progress_wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(entry.progress_wake.wait(), wait)
                    continue
                async with entry.lock:
                    if entry.progress_over or entry.final:
                        return
                    await self._edit_progress(entry)
        except Exception:
            log.exception("job %d: showing progress failed", entry.job.id)
        finally:
            entry.progress_task = None

    def _next_progress_at(self, entry: _Status) -> float:
        """When the next progress edit may go (see TEXT_SECONDS): so previews come at most
        once a second, the bar alone every two seconds, and no two edits closer than half."""
        if entry.preview is None:
            return entry.edited_at + self.text_seconds
        if entry.preview_last:
            return entry.edited_at + self.progress_seconds
        return entry.edited_at + self.progress_seconds / 2

    async def _edit_progress(self, entry: _Status) -> None:
        """One edit with the newest update (and the newest preview, replacing the last)."""
        job, update, preview = entry.job, entry.update, entry.preview
        entry.update = entry.preview = None
        if update is None:
            return
        text = progress_text(self.catalog, job, update)
        file = preview_file(job, preview) if preview is not None else None
        if file is None and text == entry.progress_shown:
            return  # nothing a member would see changed: keep the rate limit for later
        webhook = self.follow_ups.of(job)
        if webhook is None:
            return
        extra: dict[str, Any] = {"attachments": [file]} if file is not None else {}
        entry.edited_at = time.monotonic()
        try:
            await webhook.edit_message(ORIGINAL, content=text, **extra)
        except discord.HTTPException as exc:
            # A 429 that outlasted discord.py's own retries, an expired token: the job goes
            # on, and the next update (the newest then) tries again.
            log.info("job %d: progress not shown (%s %s)", job.id, exc.status, exc.code)
            return
        entry.progress_shown = text
        entry.preview_last = file is not None
        entry.preview_shown = entry.preview_shown or file is not None

    # --- refreshing while the queue moves ------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._changed = self.positions.watch()
            self._changed.set()  # a first pass: the queue may have moved before we watched
            self._task = asyncio.create_task(self._refresh_forever(), name="status-board")

    async def stop(self) -> None:
        showing = [e.progress_task for e in self._entries.values() if e.progress_task is not None]
        for task in showing:
            task.cancel()
        await asyncio.gather(*showing, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._changed is not None:
            self.positions.unwatch(self._changed)
            self._changed = None

    async def _refresh_forever(self) -> None:
        changed = self._changed
        assert changed is not None
        while True:
            await changed.wait()
            changed.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing status messages failed")
            await asyncio.sleep(self.pass_seconds)

    async def refresh(self) -> None:
        """Bring every waiting job's status up to date, within the per-job edit rate."""
        dispatcher = self.positions
        if not self._entries:
            return
        # Only the jobs whose message can still change: a started job never waits again.
        places = await dispatcher.places(
            [job_id for job_id, entry in self._entries.items() if not entry.started_shown]
        )
        now = time.monotonic()
        again = math.inf
        for job_id, entry in list(self._entries.items()):
            place = places.get(job_id)
            if place is None and job_id not in dispatcher.running:
                # Neither waiting nor running: finished (its final word was said, or could not
                # be: the result is kept for later) or cancelled. Nothing more to show.
                if self._entries.get(job_id) is entry:
                    del self._entries[job_id]
                continue
            if entry.started_shown:
                continue  # a job that started never waits again
            if place is not None and place.position == entry.shown:
                continue
            if place is not None and now < entry.edited_at + self.refresh_seconds:
                again = min(again, entry.edited_at + self.refresh_seconds)
                continue
            if entry.lock.locked():  # its first message or its final word is being written
                again = min(again, now + self.pass_seconds)
                continue
            async with entry.lock:
                if not entry.final:
                    await self._show(entry, place)
        if again < math.inf:
            self._wake_at(again)

    def _wake_at(self, moment: float) -> None:
        """Another pass at ``moment`` (monotonic), unless one is already due earlier."""
        if self._timer is not None and self._timer_at <= moment:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = moment
        self._timer = loop.call_later(max(moment - time.monotonic(), 0.0), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._changed is not None:
            self._changed.set()


def _end_progress(entry: _Status) -> None:
    entry.progress_over = True
    entry.progress_wake.set()
