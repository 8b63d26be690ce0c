"""Runs the synchronous imaging functions off the event loop, on a bounded pool of threads.

Pillow work takes tens to hundreds of milliseconds per upload; on the event loop that would
stall every Discord heartbeat and interaction meanwhile. Threads rather than processes because
Pillow releases the GIL while decoding, resizing and compressing, so threads run in parallel
without copying megabytes between processes. The pool is bounded because each job can hold a
decoded upload (up to ~200 MB at the pixel limit): a burst of uploads queues instead of
exhausting memory.

The entry point creates one worker and passes it down (no module-level executor), so tests and
one-shot commands control its lifetime, and shutdown waits for jobs in flight.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import ParamSpec, Self, TypeVar

from bot.imaging.decode import ImageInfo, probe
from bot.imaging.geometry import DEFAULT_EDIT_FIT, DEFAULT_FIT, Fit, Target
from bot.imaging.limits import DEFAULT_LIMITS, ImageLimits
from bot.imaging.normalize import EditInputs, NormalizedImage, normalize_edit, normalize_image
from bot.imaging.results import ResultImage, verify_results

P = ParamSpec("P")
T = TypeVar("T")

#: Two threads keep two uploads' worth of memory in use at most and already overlap one
#: upload's decoding with another's compression on a small VPS.
DEFAULT_WORKERS = 2


class ImageWorker:
    """Async front for ``bot.imaging``: ``await worker.normalize_image(...)`` and friends.

    ``limits`` is the default for every call; a call can pass its own.
    """

    def __init__(
        self, max_workers: int = DEFAULT_WORKERS, *, limits: ImageLimits = DEFAULT_LIMITS
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="imaging")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker thread; raises what it raises.

        Cancelling the caller doesn't stop a job already running (threads can't be
        interrupted); its result is dropped.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def probe(self, data: bytes, *, limits: ImageLimits | None = None) -> ImageInfo:
        return await self.run(probe, data, limits or self.limits)

    async def normalize_image(
        self,
        data: bytes,
        *,
        side: Target,
        fit: Fit = DEFAULT_FIT,
        keep_alpha: bool = False,
        limits: ImageLimits | None = None,
    ) -> NormalizedImage:
        return await self.run(
            normalize_image,
            data,
            side=side,
            fit=fit,
            keep_alpha=keep_alpha,
            limits=limits or self.limits,
        )

    async def normalize_edit(
        self,
        image: bytes,
        mask: bytes | None,
        *,
        side: Target,
        fit: Fit = DEFAULT_EDIT_FIT,
        limits: ImageLimits | None = None,
    ) -> EditInputs:
        return await self.run(
            normalize_edit, image, mask, side=side, fit=fit, limits=limits or self.limits
        )

    async def verify_results(self, images: list[bytes]) -> list[ResultImage]:
        """Check a provider's answer (see :mod:`bot.imaging.results`); raises ValueError."""
        return await self.run(verify_results, images)

    def close(self) -> None:
        """Refuse new jobs and drop queued ones; jobs already running finish in the background.

        Doesn't block, so it is safe in a plain ``with`` inside async code; the interpreter
        joins the threads at exit. ``await aclose()`` also waits for running jobs.
        """
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """``close()``, then wait for running jobs without blocking the event loop."""
        self.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
