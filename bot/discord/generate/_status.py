"""The private status message under each request: place in the queue, wait, Cancel, outcome.

Members of peer bots could not see whether their request was waiting, running or lost. Here the
deferred response shows the position and an estimated wait (a Discord timestamp, so every member
reads it in their own language), with a Cancel button, and is refreshed as the queue moves.
Edits are rate-limited per job, and a final text (done, failed, cancelled) is never overwritten
by a late queue update: every edit of one job's status goes through that job's lock, and the
final one marks the job so no later update is attempted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import discord

from bot.db.models import Intake, Job
from bot.discord.generate._views import CancelButton
from bot.discord.i18n import Catalog
from bot.discord.markup import discord_time
from bot.jobs import Place

log = logging.getLogger(__name__)

#: Follow-ups are not attempted this close to the token's 15-minute end.
TOKEN_LIFETIME = timedelta(minutes=14, seconds=30)
#: The interaction's own response message: Discord takes "@original" where a message id goes.
ORIGINAL: Any = "@original"
#: At most one queue update per job this often (Discord rate-limits webhook edits).
REFRESH_SECONDS = 5.0
#: At most one pass over the waiting jobs this often, however busy the queue.
PASS_SECONDS = 1.0


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
    """Where waiting jobs stand, and a signal when that changes (the job dispatcher)."""

    @property
    def running(self) -> Mapping[int, object]: ...

    def places(self, job_ids: Iterable[int]) -> dict[int, Place]: ...

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
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: Seconds between two position updates of one job; between two passes over all jobs.
        self.refresh_seconds = REFRESH_SECONDS
        self.pass_seconds = PASS_SECONDS

    async def queued(self, job: Job, place: Place | None) -> None:
        if self.follow_ups.of(job) is None:
            return  # reactions have no private message; the result itself is the answer
        entry = self._entries[job.id] = _Status(job)
        async with entry.lock:
            if not entry.final:
                await self._show(entry, place)

    async def final(self, job: Job, text: str) -> bool:
        """The last word on a job (done, failed); False when it could not be said."""
        entry = self._entries.pop(job.id, None)
        if entry is None:
            return await self._edit(job, text, view=None)
        async with entry.lock:
            entry.final = True
            return await self._edit(job, text, view=None)

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
            self._entries.pop(job_id, None)
        return True

    async def _show(self, entry: _Status, place: Place | None) -> None:
        job, catalog = entry.job, self.catalog
        if place is None:
            if entry.started_shown:
                return
            entry.started_shown = True
            entry.shown = None
            text = catalog.text("status.working", job.locale, n=job.n_requested)
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

    async def _edit(self, job: Job, text: str, *, view: discord.ui.View | None) -> bool:
        webhook = self.follow_ups.of(job)
        if webhook is None:
            return False
        try:
            await webhook.edit_message(ORIGINAL, content=text, view=view)
        except discord.HTTPException as exc:
            log.info("job %d: status not updated (%s %s)", job.id, exc.status, exc.code)
            return False
        return True

    # --- refreshing while the queue moves ------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._changed = self.positions.watch()
            self._changed.set()  # a first pass: the queue may have moved before we watched
            self._task = asyncio.create_task(self._refresh_forever(), name="status-board")

    async def stop(self) -> None:
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
        places = dispatcher.places(
            job_id for job_id, entry in self._entries.items() if not entry.started_shown
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
