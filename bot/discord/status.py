"""The private status message under each request: place in the queue, wait, Cancel, outcome.

Members of peer bots could not see whether their request was waiting, running or lost. Here the
deferred response shows the position and an estimated wait (a Discord timestamp, so every member
reads it in their own language), with a Cancel button, and is refreshed as the queue moves.
Edits are rate-limited per job, and a final text (done, failed) is never overwritten by a late
queue update: every edit of one job goes through that job's lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot.db.models import Job
from bot.discord.views import CancelButton
from bot.jobs import Place

if TYPE_CHECKING:
    from bot.discord.bot import ImageBot

log = logging.getLogger(__name__)

#: Follow-ups are not attempted this close to the token's 15-minute end.
TOKEN_LIFETIME = timedelta(minutes=14, seconds=30)
#: The interaction's own response message: Discord takes "@original" where a message id goes.
ORIGINAL: Any = "@original"
#: At most one queue update per job this often (Discord rate-limits webhook edits).
REFRESH_SECONDS = 5.0


def interaction_webhook(bot: ImageBot, job: Job) -> discord.Webhook | None:
    """The job's interaction follow-up webhook while its token is still alive."""
    if not (job.application_id and job.interaction_token and job.interaction_at):
        return None
    created = job.interaction_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if datetime.now(UTC) - created > TOKEN_LIFETIME:
        return None
    return discord.Webhook.from_state(
        data={"id": job.application_id, "type": 3, "token": job.interaction_token},
        state=bot._connection,
    )


@dataclass
class _Waiting:
    job: Job
    shown: int | None = None
    started_shown: bool = False
    edited_at: float = 0.0


class StatusBoard:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self._waiting: dict[int, _Waiting] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._final: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def _lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def queued(self, job: Job, place: Place | None) -> None:
        if interaction_webhook(self.bot, job) is None:
            return  # reactions have no private message; the result itself is the answer
        waiting = self._waiting[job.id] = _Waiting(job)
        async with self._lock(job.id):
            if job.id in self._final:
                return
            await self._show_place(waiting, place)

    async def final(self, job: Job, text: str) -> bool:
        """The last word on a job (done, failed, cancelled); False when it could not be said."""
        self._waiting.pop(job.id, None)
        async with self._lock(job.id):
            self._final.add(job.id)
            done = await self._edit(job, text, view=None)
        self._locks.pop(job.id, None)
        return done

    async def _show_place(self, waiting: _Waiting, place: Place | None) -> None:
        job, catalog = waiting.job, self.bot.catalog
        if place is None:
            if waiting.started_shown:
                return
            waiting.started_shown = True
            text = catalog.text("status.working", job.locale, n=job.n_requested)
            await self._edit(job, text, view=None)
            return
        eta = datetime.now(UTC) + timedelta(seconds=place.eta_seconds)
        when = f"<t:{int(eta.timestamp())}:R>"
        text = catalog.text("status.queued", job.locale, position=place.position, eta=when)
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id, catalog.text("button.cancel", job.locale)))
        waiting.shown = place.position
        waiting.edited_at = time.monotonic()
        await self._edit(job, text, view=view)

    async def _edit(self, job: Job, text: str, *, view: discord.ui.View | None) -> bool:
        webhook = interaction_webhook(self.bot, job)
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
            self._task = asyncio.create_task(self._refresh_forever(), name="status-board")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _refresh_forever(self) -> None:
        changed = self.bot.runner.dispatcher.changed
        while True:
            await changed.wait()
            changed.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing status messages failed")
            await asyncio.sleep(1.0)  # at most one pass a second, however busy the queue

    async def refresh(self) -> None:
        dispatcher = self.bot.runner.dispatcher
        places = dispatcher.places() if self._waiting else {}
        now = time.monotonic()
        postponed = False
        for job_id, waiting in list(self._waiting.items()):
            place = places.get(job_id)
            if place is None and job_id not in dispatcher.running:
                continue  # finished, or not dispatched yet: final() handles it
            if place is not None and place.position == waiting.shown:
                continue
            if place is not None and now - waiting.edited_at < REFRESH_SECONDS:
                postponed = True
                continue
            lock = self._lock(job_id)
            if lock.locked():
                continue
            async with lock:
                if job_id not in self._final:
                    await self._show_place(waiting, place)
        if postponed:  # come back when the rate limit allows the edit
            asyncio.get_running_loop().call_later(REFRESH_SECONDS, dispatcher.changed.set)
