"""The moderation pre-check (``[moderation] precheck = "block"``): a job's prompt, and its
upload where the moderation model takes images, are checked with the provider's free
``/moderations`` before its image request, whatever backend makes the images.

It runs once per job, when the job starts (bot.jobs.failover calls :meth:`Precheck.screen`
with the order as it is sent: its upload normalized), never before the bot has answered
Discord. A flagged job is refused with the categories, nothing is sent or charged, the log and
the server's audit channel say so. When the check itself fails the operator's
``precheck_on_error`` decides: "open" lets the job through (with a warning in the log),
"closed" refuses it as the check being unavailable.
"""

from __future__ import annotations

import logging

from bot.config import ModerationSettings
from bot.db import Sessions
from bot.db.models import Job
from bot.errors import BotError
from bot.generation import ImageOrder
from bot.moderation.audit import audit_refusal
from bot.providers import Operation, ProviderError
from bot.providers.moderation import ModerationClient, ModerationVerdict

log = logging.getLogger(__name__)


class PrecheckFlagged(BotError):
    """The check flagged the request: it was not sent, nothing was charged."""

    key = "moderation.precheck_flagged"
    template = (
        "Your request was flagged by the content check (categories: {categories}) and was not "
        "sent. Nothing was charged."
    )


class PrecheckUnavailable(BotError):
    """The check failed and the operator refuses unchecked requests (``closed``)."""

    key = "moderation.precheck_unavailable"
    template = (
        "The content check is unavailable right now, so your request was not sent. Nothing was "
        "charged. Please try again later."
    )


#: The refusals of the pre-check: the job's request was never sent.
PRECHECK_REFUSALS = (PrecheckFlagged, PrecheckUnavailable)


class Precheck:
    """The pre-check of every job, on one OpenAI-type backend's ``/moderations``."""

    def __init__(
        self, settings: ModerationSettings, client: ModerationClient, sessions: Sessions
    ) -> None:
        self._settings = settings
        self._client = client
        self._sessions = sessions

    def __repr__(self) -> str:
        return f"Precheck({self._client!r}, on_error={self._settings.precheck_on_error!r})"

    async def _verdict(self, sent: ImageOrder) -> ModerationVerdict | None:
        """The prompt with the upload; a blend's other pictures each in a request of its own
        (one image per check, whatever the model's limit on images per request)."""
        if sent.operation is Operation.GENERATE:
            return await self._client.check(sent.prompt)
        verdict = await self._client.check(sent.prompt, sent.image)
        flagged = verdict is not None and verdict.flagged
        categories = set(verdict.categories) if verdict is not None else set()
        for picture in sent.extra_images:
            more = await self._client.check("", picture)
            if more is not None and more.flagged:
                flagged = True
                categories.update(more.categories)
        if not flagged:
            return verdict
        return ModerationVerdict(True, tuple(sorted(categories)))

    async def screen(self, job: Job, sent: ImageOrder) -> None:
        """Return when ``job`` may be sent as ``sent``; raise :class:`PrecheckFlagged` or
        :class:`PrecheckUnavailable` (the job ends refused) when not."""
        context = {"job_id": job.id, "guild_id": job.guild_id, "user_id": job.user_id}
        try:
            verdict = await self._verdict(sent)
        except ProviderError as error:
            if self._settings.precheck_on_error == "open":
                log.warning(
                    "job %d: the moderation pre-check failed (%s): sent unchecked "
                    "(moderation.precheck_on_error = open)",
                    job.id,
                    error.detail,
                    extra=context,
                )
                return
            log.warning(
                "job %d: the moderation pre-check failed (%s): refused "
                "(moderation.precheck_on_error = closed)",
                job.id,
                error.detail,
                extra=context,
            )
            raise PrecheckUnavailable() from error
        if verdict is None or not verdict.flagged:
            return
        shown = ", ".join(verdict.categories) or "unspecified"
        log.info(
            "job %d refused by the moderation pre-check: categories %s",
            job.id,
            shown,
            extra=context,
        )
        try:
            await audit_refusal(
                self._sessions,
                guild_id=job.guild_id,
                user_id=job.user_id or 0,
                command=job.command or job.operation,
                prompt=job.prompt,
                reason="precheck",
                details={"categories": list(verdict.categories)},
            )
        except Exception:  # the audit entry is for admins: the refusal stands without it
            log.exception("job %d: recording the refusal for the audit channel failed", job.id)
        raise PrecheckFlagged(categories=shown)
