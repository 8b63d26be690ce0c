"""Our own job on a server that runs one job at a time for everyone: its progress, its cancel.

AUTOMATIC1111 tells tasks apart only through ``POST /internal/progress`` with the task id we
sent as ``force_task_id`` (``GET /sdapi/v1/progress`` shows whatever job runs, without saying
whose). So everything here starts from that question, "is our task the active one?": progress
and previews are passed on only then (someone else's preview is not ours to show), and
``/sdapi/v1/interrupt``, which stops whatever runs, is sent only then. A server started with
``--nowebui`` cannot answer it: no progress then, and no interrupt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.providers.automatic1111_wire import progress_update
from bot.providers.errors import ProviderError
from bot.providers.progress import ProgressCallback, tell

log = logging.getLogger(__name__)

#: ``(path, JSON body or None for a GET)`` -> the decoded JSON answer; raises ProviderError.
CallJson = Callable[[str, dict[str, Any] | None], Awaitable[Any]]
VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]

#: How long a cancelled request is watched while the server keeps it queued.
WATCH_SECONDS = 3600.0
#: Polls after which a cancelled request the server never listed as queued is taken as lost.
UNSEEN_POLLS = 4
_STEPS = "/sdapi/v1/progress?skip_current_image=true"


class TaskTracker:
    """Progress and cancel of our tasks on one server; safe to share between tasks."""

    def __init__(
        self,
        call: CallJson,
        *,
        verify: VerifyImages,
        poll_interval: float,
        max_preview_bytes: int,
        server: str,
    ) -> None:
        self._call = call
        self._verify = verify
        self._poll_interval = poll_interval
        self._max_preview = max_preview_bytes
        self._server = server
        self._interrupted: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._warned = False

    async def status(
        self, task_id: str, *, preview_id: int = -1, preview: bool = False
    ) -> dict[str, Any] | None:
        """``POST /internal/progress``: is ``task_id`` queued, running (``active``) or done.

        None where the server cannot say (no such endpoint with ``--nowebui``); logged once.
        """
        body = {"id_task": task_id, "id_live_preview": preview_id, "live_preview": preview}
        try:
            answer = await self._call("/internal/progress", body)
        except ProviderError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "A1111 %s: no per-task progress (%s); without it the bot shows no progress "
                    "and cannot cancel a running job (is the server started with --nowebui?)",
                    self._server,
                    exc.detail,
                )
            return None
        return answer if isinstance(answer, dict) else None

    async def cancel(self, task_id: str) -> bool:
        """Interrupt the server's job if, and only if, it is ``task_id``; whether it was sent.

        One race remains: between the check and the interrupt (one round trip) our job can
        end and the next begin; A1111 has no per-task interrupt.
        """
        task = await self.status(task_id)
        if task is None or task.get("active") is not True:
            return False
        await self._call("/sdapi/v1/interrupt", {})
        log.info("interrupted our job %s on %s", task_id, self._server)
        return True

    async def watch(self, task_id: str, progress: ProgressCallback | None) -> None:
        """Poll while our request runs (cancel the task to stop); never fails the job."""
        preview_id = -1
        while True:
            await asyncio.sleep(self._poll_interval)
            task = await self.status(task_id, preview_id=preview_id, preview=progress is not None)
            if task is None or task.get("active") is not True:
                continue  # queued behind someone else's job, or done
            state = await self._state()
            if state.get("interrupted"):
                self._interrupted.add(task_id)
            if progress is None:
                continue
            preview = None
            if isinstance(task.get("id_live_preview"), int) and task.get("live_preview"):
                preview = await self._preview(task["live_preview"])
                preview_id = task["id_live_preview"]
            await tell(progress, progress_update(task, state, preview))

    async def was_interrupted(self, task_id: str) -> bool:
        """Whether someone else interrupted our job (the web UI's button) before it answered.

        Seen by a poll, or in the state right after: the flag stays up until the next job
        begins, and a poll may have missed the moment between the interrupt and the end.
        """
        if task_id in self._interrupted:
            self._interrupted.discard(task_id)
            return True
        state = await self._state()
        return state.get("interrupted") is True and state.get("job_count") == 0

    def interrupt_when_ours(self, task_id: str) -> None:
        """Interrupt ``task_id`` now if it runs, else when it starts: the server runs a request
        whose client has gone. Given up once it is done, or never listed at all."""

        async def watch() -> None:
            unseen = 0
            deadline = asyncio.get_running_loop().time() + WATCH_SECONDS
            while asyncio.get_running_loop().time() < deadline and unseen < UNSEEN_POLLS:
                task = await self.status(task_id)
                if task is None or task.get("completed") is True:
                    return  # done already, or the server cannot tell whose job runs
                if task.get("active") is True:
                    with contextlib.suppress(ProviderError):
                        await self.cancel(task_id)
                    return
                # queued: wait for its turn; neither: not arrived yet, or never will
                unseen = 0 if task.get("queued") is True else unseen + 1
                await asyncio.sleep(self._poll_interval)

        watcher = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def aclose(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def _state(self) -> dict[str, Any]:
        """The server's ``state`` (step numbers, ``interrupted``), whoever's job runs."""
        try:
            body = await self._call(_STEPS, None)
        except ProviderError as exc:
            log.debug("progress poll failed: %s", exc.detail)
            return {}
        state = body.get("state") if isinstance(body, dict) else None
        return state if isinstance(state, dict) else {}

    async def _preview(self, encoded: Any) -> bytes | None:
        """A live preview (a ``data:`` URI), checked like any image the server sends."""
        if not isinstance(encoded, str) or not encoded:
            return None
        try:
            data = base64.b64decode(encoded.rsplit(",", 1)[-1], validate=True)
            if len(data) > self._max_preview:
                raise ValueError("preview larger than the answer cap")
            await self._verify([data])
        except (binascii.Error, ValueError) as exc:
            log.debug("unusable preview ignored: %s", exc)
            return None
        return data
