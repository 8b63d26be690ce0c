"""What a backend tells while it works: how far it is, in words, and the picture so far.

Backends that run on the operator's own GPU (AUTOMATIC1111, ComfyUI) take tens of seconds per
image and can show it forming; the caller gets each update through one callback and decides what
to show and how often. A callback that fails is logged and ignored: a preview never fails a job.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressUpdate:
    #: 0 to 1 for the whole request (all batches).
    fraction: float
    #: Operator-language text such as "step 12/20" (not translated: not for members as is).
    text: str
    step: int = 0
    steps: int = 0
    #: Seconds the server expects the rest to take, when it says.
    eta_seconds: float | None = None
    #: A verified image of the work so far, only when it changed since the last update.
    preview: bytes | None = field(default=None, repr=False)


ProgressCallback = Callable[[ProgressUpdate], Awaitable[None] | None]


async def tell(progress: ProgressCallback, update: ProgressUpdate) -> None:
    """Give ``update`` to the caller's callback; its failure is logged, never raised."""
    try:
        outcome = progress(update)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:  # a failed preview never fails the job
        log.warning("progress callback failed", exc_info=True)
