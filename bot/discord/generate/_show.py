"""``/show job:<id>``: one of the member's own results in this server, posted again here.

The copy is built by the same code as the original (:func:`build_result`: the same embeds,
the same buttons, keyed by the job's id), and its messages are recorded for the job after the
original's (:func:`bot.jobs.store.add_result_messages`), so its buttons and reactions act like
the original's, after a restart too. Nothing is made, charged or counted against a quota; it
takes one of the member's requests per minute, like every way in that makes the bot work.

A posted result's images are not kept by the bot (only their seeds are, see
``store.record_delivery``): they are read back from the result's messages on Discord. Once
those are deleted the images are gone and the member is told so; nothing is posted.

Every refusal is private and names the job by its number only: a job that is not the
member's own result in this server is never described (its prompt stays its owner's).
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice

from bot.db import Sessions
from bot.db.models import Job, JobStatus
from bot.discord.errors import (
    NotYourResult,
    ResultGone,
    ShowAgeRestricted,
    ShowCancelled,
    ShowDeleted,
    ShowFailed,
    ShowImagesGone,
    ShowInterrupted,
    ShowPosting,
    ShowQueued,
    ShowRunning,
)
from bot.discord.generate._buttons import result_attachment
from bot.discord.generate._delivery import Delivery
from bot.discord.generate._intakes import age_restricted
from bot.discord.i18n import OPERATOR_KEY, Catalog, LocaleLike, text
from bot.errors import BotError
from bot.jobs import store
from bot.jobs.member_results import ResultLine, matching_results
from bot.moderation.nsfw import LOW_MODERATION
from bot.providers import GeneratedImage
from bot.quotas.ratelimit import MemberRequestLimiter

log = logging.getLogger(__name__)

#: Discord's limit for an autocomplete choice's name.
CHOICE_NAME_LIMIT = 100


@dataclass(eq=False)
class ShowResult:
    """The /show command and its suggestions."""

    catalog: Catalog
    sessions: Sessions
    #: Reads the original messages, runs the image worker, knows the servers' spoiler rules.
    delivery: Delivery
    #: The member's requests per minute, shared with every other way in.
    requests: MemberRequestLimiter

    async def command(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        job = await self._own_result(interaction, job_id)
        self.requests.take(interaction.user.id)
        # Reading the images back can take longer than Discord's 3 seconds: private until
        # there is something to show, so every refusal from here on stays private too.
        await interaction.response.defer(ephemeral=True, thinking=True)
        images = await self._images(job)
        channel = interaction.channel
        spoiler = await self.delivery.spoilers_in(
            interaction.guild_id, interaction.channel_id, getattr(channel, "parent_id", None)
        )
        parts = await self.delivery.result_parts(
            job, images, interaction.filesize_limit, spoiler=spoiler
        )
        # The deferred message takes the note, so the copy is a message of its own: public,
        # unless the job is private (then only its requester, who is the one asking, sees it).
        note = self.catalog.text("show.posted", interaction.locale, job_id=job.id)
        await interaction.edit_original_response(content=note)
        posted: list[discord.Message] = []
        try:
            for part in parts:
                message = await interaction.followup.send(
                    content=part.content,
                    embeds=part.embeds,
                    files=part.files,
                    view=part.view,
                    allowed_mentions=part.allowed_mentions,
                    ephemeral=job.private,
                    wait=True,
                )
                posted.append(message)
        finally:
            if posted:
                await self._record(job, posted)

    async def _own_result(self, interaction: discord.Interaction[Any], job_id: int) -> Job:
        """The job, when it is the member's own posted result in this server and may be shown
        in this channel; else the private refusal that says why (never whose it is)."""
        job = await store.get_job(self.sessions, job_id)
        if job is None or job.guild_id != interaction.guild_id:
            raise NotYourResult(job_id=job_id)
        if job.user_id != interaction.user.id:
            raise NotYourResult(job_id=job_id)
        if job.status is JobStatus.QUEUED:
            # A running job's row says so only when it ends (bot.jobs.journal): the queue
            # knows, over every process; a job it has no place for has started.
            places = await self.delivery.runner.places([job.id])
            raise ShowQueued(job_id=job_id) if job.id in places else ShowRunning(job_id=job_id)
        if job.status is JobStatus.RUNNING:
            raise ShowRunning(job_id=job_id)
        if job.status is JobStatus.SUCCEEDED:
            raise ShowPosting(job_id=job_id)
        if job.status is JobStatus.FAILED:
            raise ShowFailed(job_id=job_id, reason=self._reason(job, interaction.locale))
        if job.status is JobStatus.CANCELLED:
            raise ShowCancelled(job_id=job_id)
        if job.status is JobStatus.INTERRUPTED:
            raise ShowInterrupted(job_id=job_id)
        if job.result_message_id is None:  # its requester deleted it (store.forget_result)
            raise ShowDeleted(job_id=job_id)
        if job.moderation == LOW_MODERATION and not age_restricted(interaction.channel):
            raise ShowAgeRestricted(job_id=job_id)
        return job

    def _reason(self, job: Job, locale: LocaleLike) -> str:
        """Why ``job`` failed, as its member was told then (as far as the row says)."""
        return failure_reason(self.catalog, job.error_code, job.error_message, locale)

    async def _images(self, job: Job) -> list[GeneratedImage]:
        """The result's images: kept ones from the database (a result posted before its bytes
        were dropped), else read back from its messages on Discord, any copy; ShowImagesGone
        when one of them cannot be found or read."""
        kept = await store.outputs_of(self.sessions, job.id)
        count = job.n_delivered
        if kept and len(kept) >= count:
            return kept
        seeds = await store.seeds_of(self.sessions, job.id)
        found: dict[int, discord.Attachment] = {}
        for channel_id, message_id in await store.messages_of(self.sessions, job):
            if len(found) >= count:
                break
            try:
                message = await self.delivery.fetch_message(channel_id or 0, message_id)
            except (ResultGone, discord.HTTPException) as exc:
                log.info("job %d: message %d not read (%s)", job.id, message_id, exc)
                continue
            for index in range(count):
                if index not in found:
                    try:
                        found[index] = result_attachment(message, index)
                    except ResultGone:
                        continue  # on another part of a split result
        if count < 1 or len(found) < count:
            raise ShowImagesGone(job_id=job.id)
        images = []
        for index in range(count):
            attachment = found[index]
            try:
                data = await attachment.read()
            except discord.HTTPException as exc:
                log.warning("job %d: image %d not downloaded (%s)", job.id, index + 1, exc)
                raise ShowImagesGone(job_id=job.id) from None
            seed = seeds[index] if index < len(seeds) else None
            images.append(
                GeneratedImage(
                    data,
                    _mime_type(attachment),
                    attachment.width or 0,
                    attachment.height or 0,
                    seed=seed,
                )
            )
        return images

    async def _record(self, job: Job, posted: list[discord.Message]) -> None:
        messages = [(message.channel.id, message.id) for message in posted]
        if await store.add_result_messages(self.sessions, job.id, messages):
            log.info("job %d shown again as message %d", job.id, posted[0].id)
            return
        # Deleted while it was being posted: its copy goes too, buttons that lead nowhere.
        log.info("job %d was deleted while it was shown again; the copy is removed", job.id)
        for message in posted:
            try:
                await message.delete()
            except discord.HTTPException as exc:
                log.info("job %d: copy %d not removed (%s)", job.id, message.id, exc)

    async def suggest(self, interaction: discord.Interaction[Any], current: Any) -> list[Any]:
        """The member's newest results here matching what they typed (a job number's start,
        or words of the prompt): "#12 · a lighthouse at dusk · 2026-12-02"."""
        if interaction.guild_id is None:
            return []
        typed = "" if current is None else str(current)
        lines = await matching_results(
            self.sessions, interaction.guild_id, interaction.user.id, typed
        )
        untitled = self.catalog.text("history.no_prompt", interaction.locale)
        return [Choice(name=choice_label(line, untitled), value=line.job_id) for line in lines]


def choice_label(line: ResultLine, untitled: str) -> str:
    """``#id · prompt… · date`` within Discord's 100 characters (the prompt is trimmed)."""
    head, tail = f"#{line.job_id} · ", f" · {line.made_at:%Y-%m-%d}"
    prompt = " ".join(line.prompt.split()) or untitled
    room = CHOICE_NAME_LIMIT - len(head) - len(tail)
    if len(prompt) > room:
        prompt = prompt[: room - 1] + "…"
    return head + prompt + tail


def failure_reason(
    catalog: Catalog, error_code: str | None, error_message: str | None, locale: LocaleLike
) -> str:
    """Why a job failed, for its member: the error's own text in their language where it
    needs no parameters, else the English sentence they were told; the operator's problems
    (keys, billing) only as the generic operator text, as when they happened."""
    kind = _error_class(error_code or "")
    if kind is not None and kind.operator_problem:
        return catalog.text(OPERATOR_KEY, locale)
    template = catalog.template(error_code, locale) if error_code else None
    if template is not None and "{" not in template:
        return catalog.text(error_code or "", locale)
    if kind is not None and error_message:
        return error_message
    return catalog.text("show.no_reason", locale)


def _error_class(key: str) -> type[BotError] | None:
    """The BotError class whose ``key`` is ``key`` (keys are unique), or None."""
    pending: list[type[BotError]] = [BotError]
    while pending:
        kind = pending.pop()
        if kind.key == key:
            return kind
        pending.extend(kind.__subclasses__())
    return None


def _mime_type(attachment: discord.Attachment) -> str:
    """The attachment's type as Discord says it, else as its name says (image_1.png)."""
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip()
    guessed, _ = mimetypes.guess_type(attachment.filename)
    return guessed or "image/png"


def show_command(show: ShowResult) -> app_commands.Command[Any, ..., None]:
    @app_commands.command(
        name=text("show", "cmd.show.name"),
        description=text("Post one of your results here again", "cmd.show.description"),
    )
    @app_commands.rename(job=text("job", "opt.job.name"))
    @app_commands.describe(
        job=text(
            "The result's job number (#12): /history and Params show it", "opt.job.description"
        )
    )
    async def show_result(
        interaction: discord.Interaction[Any],
        job: app_commands.Range[int, 1, 9_007_199_254_740_991],
    ) -> None:
        await show.command(interaction, job)

    @show_result.autocomplete("job")
    async def suggest(interaction: discord.Interaction[Any], current: Any) -> list[Any]:
        return await show.suggest(interaction, current)

    return show_result
