"""A job whose backend is down runs on the next one the operator listed (``[provider] fallback``).

Only an outage moves a job (:class:`ProviderUnavailable`: no connection, a timeout, a 5xx):
the next backend is asked the same request, normalized for it and checked against its own model
table; one that cannot take the request as asked (an option it lacks, an operation it has not)
is passed over. A safety refusal, an invalid request or any other error ends the job where it
happened: another backend would refuse it too, or make what the first rightly would not.

A backend that timed out may have made (and billed) the images all the same: that stays known
(``Made.possibly_billed``), also when the next backend made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from bot.errors import BotError
from bot.generation import ImageOrder, ImageService, check_order, normalize_uploads, send_order
from bot.providers import ImageResult, ProviderError, ProviderUnavailable
from bot.providers.backend import Backend
from bot.providers.progress import ProgressCallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Made:
    """Images made for a job, and by whom."""

    #: The order as it was sent to ``backend`` (its uploads normalized for it).
    sent: ImageOrder
    result: ImageResult
    #: The configured backend that made them, and the model it made them with (its table's).
    backend: str
    model: str
    #: A backend tried before timed out after the request may have reached it.
    possibly_billed: bool = False


async def make_images_failing_over(
    service: ImageService,
    order: ImageOrder,
    *,
    progress: ProgressCallback | None = None,
    job_id: int | None = None,
    trying: Callable[[Backend], None] | None = None,
    slot: Callable[[Backend], AbstractAsyncContextManager[None]] | None = None,
    screen: Callable[[ImageOrder], Awaitable[None]] | None = None,
) -> Made:
    """Make ``order`` on its backend, else on the next of its fallbacks that can take it;
    raises the last outage when none can (BotError subclasses). ``trying`` is told each
    backend before it is asked; ``slot`` is held while one is asked (for a fallback, one of
    that backend's own slots: the job's first backend gave it only its own).

    ``screen`` (the moderation pre-check) is awaited once, with the order as it goes to the
    first backend (its uploads normalized), before anything is asked or a slot held; what it
    raises ends the job there."""
    first = service.backend_for(order)
    candidates = [first, *service.backends.fallbacks(first.name)]
    outage: ProviderUnavailable | None = None
    for backend in candidates:
        attempt = order if backend is first else moved_to(order, backend)
        try:
            if backend is not first:  # the first was checked when the job was admitted
                check_order(service.backends, attempt)
            sent = await normalize_uploads(service, attempt)
        except BotError as refused:
            if backend is first:
                raise
            log.info(
                "job %s: backend %s cannot take it (%s): not failed over to it",
                job_id,
                backend.name,
                refused,
                extra={"job_id": job_id},
            )
            continue
        if screen is not None and backend is first:
            await screen(sent)
        if trying is not None:
            trying(backend)
        try:
            async with contextlib.nullcontext() if slot is None else slot(backend):
                result = await send_order(service, sent, backend, progress=progress)
        except ProviderUnavailable as error:
            error.possibly_billed = error.possibly_billed or bool(outage and outage.possibly_billed)
            outage = error
            if backend is not candidates[-1]:
                log.warning(
                    "job %s: backend %s is down (%s): failing over",
                    job_id,
                    backend.name,
                    error.detail,
                    extra={"job_id": job_id},
                )
            continue
        except ProviderError as error:
            error.possibly_billed = error.possibly_billed or bool(outage and outage.possibly_billed)
            raise
        if backend is not first:
            log.warning(
                "job %s: made by backend %s instead of %s",
                job_id,
                backend.name,
                first.name,
                extra={"job_id": job_id},
            )
        model = backend.spec_for(sent.model).name
        billed = bool(outage and outage.possibly_billed)
        return Made(sent, result, backend.name, model, possibly_billed=billed)
    assert outage is not None  # the first backend is always tried
    raise outage


def moved_to(order: ImageOrder, backend: Backend) -> ImageOrder:
    """``order`` for ``backend``: its model where that backend has it, else its default;
    its moderation level (a server's age-restricted channel) only where that model takes it."""
    model = order.model if order.model in backend.models else None
    moderation = order.moderation if backend.spec_for(model).moderation else None
    return dataclasses.replace(order, backend=backend.name, model=model, moderation=moderation)
