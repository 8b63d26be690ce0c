"""The fake AUTOMATIC1111's one global job state and the two progress answers built from it.

``modules/shared_state.py`` (what runs, which step, the live preview, made lazily when someone
asks and at most every ``show_progress_every_n_steps`` steps) and ``modules/progress.py`` (the
queue of task ids, the running one, the last 16 finished): both progress endpoints read them.
``GET /sdapi/v1/progress`` shows whatever job runs and cannot say whose (1.10 passes
``current_task`` from ``from modules.progress import current_task``, a copy taken at import
time, so always None); ``POST /internal/progress`` answers about one task id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from bot.testing import automatic1111_pictures as pictures


@dataclass
class State:
    job: str = ""
    job_count: int = 0
    job_no: int = 0
    job_timestamp: str = "0"
    sampling_step: int = 0
    sampling_steps: int = 0
    interrupted: bool = False
    skipped: bool = False
    time_start: float = 0.0
    textinfo: str | None = None
    #: ``modules.progress``: the running task, queued ones (by arrival), the last 16 done.
    current_task: str | None = None
    pending: dict[str, float] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    #: What a preview decoded now would show (the latent stand-in), or None before step 1.
    current_latent: list[Image.Image] | None = None
    current_image: Image.Image | None = None
    current_image_sampling_step: int = 0
    id_live_preview: int = 0
    #: Where the running job notes (time, step) of each preview made, for benchmarks.
    preview_log: list[tuple[float, int]] = field(default_factory=list)

    def begin(self, job: str, task_id: str, preview_log: list[tuple[float, int]]) -> None:
        """``State.begin`` and ``start_task``."""
        self.job, self.job_no, self.job_count = job, 0, -1
        self.sampling_step = self.current_image_sampling_step = 0
        self.interrupted = self.skipped = False
        self.current_latent = self.current_image = None
        self.id_live_preview = 0
        self.textinfo = None
        self.time_start = time.time()
        self.job_timestamp = time.strftime("%Y%m%d%H%M%S")
        self.pending.pop(task_id, None)
        self.current_task = task_id
        self.preview_log = preview_log

    def end(self, task_id: str) -> None:
        """``State.end`` and ``finish_task``."""
        self.job, self.job_count = "", 0
        if self.current_task == task_id:
            self.current_task = None
        self.finished = [*self.finished, task_id][-16:]

    def as_dict(self) -> dict[str, Any]:
        """``State.dict()``."""
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": False,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }

    def set_current_image(self) -> None:
        """``State.do_set_current_image``: decode the latent (a grid of the batch) now."""
        if self.current_latent is None:
            return
        latent = self.current_latent
        self.current_image = pictures.grid(latent) if len(latent) > 1 else latent[0]
        self.id_live_preview += 1
        self.preview_log.append((time.monotonic(), self.sampling_step))
        self.current_image_sampling_step = self.sampling_step

    def maybe_new_preview(self, options: dict[str, Any]) -> None:
        """``State.set_current_image``: a new preview once enough steps passed since the last."""
        every = options["show_progress_every_n_steps"]
        if (
            options["live_previews_enable"]
            and every != -1
            and self.sampling_step - self.current_image_sampling_step >= every
        ):
            self.set_current_image()

    def progress_answer(self, options: dict[str, Any], *, skip_image: bool) -> dict[str, Any]:
        """``Api.progressapi``: whatever job runs."""
        common = {"state": self.as_dict(), "textinfo": self.textinfo}
        if self.job_count == 0:
            return {"progress": 0, "eta_relative": 0, **common, "current_image": None}
        progress = 0.01
        if self.job_count > 0:
            progress += self.job_no / self.job_count
        if self.sampling_steps > 0:
            progress += 1 / self.job_count * self.sampling_step / self.sampling_steps
        elapsed = time.time() - self.time_start
        self.maybe_new_preview(options)
        image = None
        if self.current_image is not None and not skip_image:
            image = pictures.png_b64(self.current_image)
        body = {"progress": min(progress, 1), "eta_relative": elapsed / progress - elapsed}
        return {**body, **common, "current_image": image}

    def task_answer(
        self, options: dict[str, Any], task: str | None, preview_id: int, want_preview: bool
    ) -> dict[str, Any]:
        """``modules/progress.py progressapi``: one task's progress and its live preview."""
        flags = {
            "active": task is not None and task == self.current_task,
            "queued": task in self.pending,
            "completed": task in self.finished,
        }
        if not flags["active"]:
            info = "Waiting..."
            if flags["queued"]:
                order = sorted(self.pending, key=self.pending.__getitem__)
                info = f"In queue: {order.index(str(task)) + 1}/{len(order)}"
            empty = {"progress": None, "eta": None, "live_preview": None}
            return {**flags, **empty, "id_live_preview": -1, "textinfo": info}
        progress = 0.0
        if self.job_count > 0:
            progress += self.job_no / self.job_count
            if self.sampling_steps > 0:
                progress += 1 / self.job_count * self.sampling_step / self.sampling_steps
        progress = min(progress, 1)
        elapsed = time.time() - self.time_start
        preview = None
        if options["live_previews_enable"] and want_preview:
            self.maybe_new_preview(options)
            if self.id_live_preview != preview_id and self.current_image is not None:
                preview = "data:image/png;base64," + pictures.png_b64(self.current_image)
                preview_id = self.id_live_preview
        return {
            **flags,
            "progress": progress,
            "eta": elapsed / progress - elapsed if progress > 0 else None,
            "live_preview": preview,
            "id_live_preview": preview_id,
            "textinfo": self.textinfo,
        }
