"""The buttons and the Remix modal on results and notices: Vary, Redo, Remix, Delete, Cancel,
Retry.

Each handler finds the job behind the click, checks that the click may act on it, and ends in
:meth:`Actions.submit <bot.discord.generate._submit.Actions.submit>` like every other way in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.db import Sessions
from bot.db.models import Job, JobStatus
from bot.discord.errors import (
    BotMissingPermissions,
    CannotCancel,
    NothingToRemix,
    NotRequester,
    ResultGone,
    ResultTooOld,
)
from bot.discord.generate._delivery import Delivery
from bot.discord.generate._params import params_embed, parent_of
from bot.discord.generate._provenance import check_result_here, check_same_place
from bot.discord.generate._submit import Actions, Upload
from bot.discord.generate._views import REMIX_PROMPT, remix_modal_id
from bot.discord.i18n import Catalog
from bot.discord.tree import reports_errors
from bot.generation import UPSCALE, ImageOrder
from bot.jobs import JobRunner, orphans, store
from bot.providers import Operation
from bot.providers.registry import BackendSet
from bot.studio import StudioAction, studio_order

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ResultButtons:
    """The handlers behind :mod:`bot.discord.generate._views` (its ``ResultActions``)."""

    #: The Discord connection: who the bot is, result messages to delete.
    client: discord.Client
    catalog: Catalog
    sessions: Sessions
    actions: Actions
    delivery: Delivery
    retention_days: int
    #: Interrupted jobs whose Retry click is being handled: a double click runs one retry.
    _retrying: set[int] = field(default_factory=set, init=False)

    @property
    def runner(self) -> JobRunner:
        return self.actions.runner

    async def _result_job(self, interaction: discord.Interaction[Any], job_id: int) -> Job:
        """The job behind a result's button or modal; ResultGone once the result was deleted.

        Only a result of this server, clicked on the result's own message, is acted on: the id
        in a custom_id is the client's to forge (see :func:`check_result_here`). A job that
        succeeded but whose delivery is not recorded yet counts as a result: its message can
        be on screen a moment before the database says where it went.
        """
        job = await store.get_job(self.sessions, job_id)
        if job is None:
            raise ResultGone()
        check_same_place(interaction, job)
        gone = job.status is not JobStatus.DELIVERED or job.result_message_id is None
        if gone and job.status is not JobStatus.SUCCEEDED:
            raise ResultGone()
        await check_result_here(self.client, self.sessions, interaction, job)
        return job

    @reports_errors
    async def vary_result(
        self, interaction: discord.Interaction[Any], job_id: int, index: int
    ) -> None:
        job = await self._result_job(interaction, job_id)
        if interaction.message is None:
            raise ResultGone()
        attachment = result_attachment(interaction.message, index)
        await self.actions.submit(
            interaction,
            vary_order(self.actions.backends, job),
            [(attachment, "image")],
            command="vary-button",
            source=(job_id, index),
            parent_private=job.private,
        )

    async def _kept_order(self, job: Job) -> ImageOrder:
        """The order ``job`` was made from, to run again; ResultTooOld once its uploads are gone.

        Uploads are kept ``[storage] retention_days``; a prompt alone is kept with the ledger,
        so results made from a prompt can be redone and remixed at any age.
        """
        order = await store.order_of(self.sessions, job)
        if uploads_gone(order):
            raise ResultTooOld(days=self.retention_days)
        return order

    async def _source_image(self, job: Job) -> discord.Attachment:
        """The image a variation (or upscale) of a result was made from, read back from that
        result's messages on Discord; ResultTooOld when ``job`` is neither or it is gone."""
        too_old = ResultTooOld(days=self.retention_days)
        of_a_result = job.operation == Operation.VARY.value or job.action == UPSCALE
        if not of_a_result or job.source_job_id is None:
            raise too_old
        source = await store.get_job(self.sessions, job.source_job_id)
        if source is None:
            raise too_old
        for channel_id, message_id in await store.messages_of(self.sessions, source):
            try:
                message = await self.delivery.fetch_message(channel_id or 0, message_id)
                return result_attachment(message, job.source_index or 0)
            except ResultGone:
                continue  # deleted, or the image is on another part of the result
        raise too_old

    @reports_errors
    async def redo(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """The same order again: a seed the member chose stays, a random one stays random."""
        await self._redo(interaction, job_id)

    @reports_errors
    async def redo_same_seed(
        self, interaction: discord.Interaction[Any], job_id: int, seed: int
    ) -> None:
        """The same order with the seed the result was made with: the same picture again."""
        await self._redo(interaction, job_id, seed)

    async def _redo(
        self, interaction: discord.Interaction[Any], job_id: int, seed: int | None = None
    ) -> None:
        job = await self._result_job(interaction, job_id)
        order = await store.order_of(self.sessions, job)
        if seed is not None:
            order = dataclasses.replace(order, seed=seed)
        uploads: list[Upload] = []
        if uploads_gone(order):
            # Pruned: a variation of a result reads the image back from that result.
            uploads.append((await self._source_image(job), "image"))
        await self.actions.submit(
            interaction,
            order,
            uploads,
            command="redo",
            source=(job_id, None),
            parent_private=job.private,
        )

    @reports_errors
    async def retry(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """Run an interrupted job again for its requester: once, however often it is clicked.

        The notice with the button may be a channel message, where anyone could click it; the
        new job is the requester's (their quota, their name on the result), so only they may.
        A click while an earlier retry is waiting, running or done is refused: two clicks
        would pay twice for the same images. A retry that failed may be retried again.
        """
        job = await store.get_job(self.sessions, job_id)
        if job is None or job.status is not JobStatus.INTERRUPTED:
            raise ResultGone()
        check_same_place(interaction, job)
        if interaction.user.id != job.user_id:
            raise NotRequester()
        if job_id in self._retrying:
            raise ResultGone()  # the other click is being handled
        self._retrying.add(job_id)
        try:
            if await store.has_live_retry(self.sessions, job_id):
                raise ResultGone()
            order = await self._kept_order(job)
            await self.actions.submit(
                interaction,
                order,
                command="retry",
                source=(job_id, None),
                parent_private=job.private,
            )
        finally:
            self._retrying.discard(job_id)

    @reports_errors
    async def post_kept(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """Post a result whose posting was interrupted (bot.jobs.orphans): only its requester,
        who can see whether it arrived; once, however often it is clicked."""
        job = await store.get_job(self.sessions, job_id)
        if job is None or job.status is not JobStatus.SUCCEEDED:
            raise ResultGone()
        check_same_place(interaction, job)
        if interaction.user.id != job.user_id:
            raise NotRequester()
        me = self.runner.process.id
        if not await orphans.take_post(self.sessions, job_id, me):
            raise ResultGone()  # posted by an earlier click
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            posted = await self.delivery.post_kept(job)
        except BaseException:
            await orphans.give_back(self.sessions, job_id, me)
            raise
        if not posted:
            await orphans.give_back(self.sessions, job_id, me)
        key = "result.posted" if posted else "result.not_posted"
        await interaction.followup.send(self.catalog.text(key, interaction.locale), ephemeral=True)

    @reports_errors
    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """The Cancel button under a waiting request (only its requester sees it)."""
        job = await store.get_job(self.sessions, job_id)
        if job is None:
            raise ResultGone()
        check_same_place(interaction, job)
        if interaction.user.id != job.user_id:
            raise NotRequester()
        # Through the status board: a queue update being written now cannot land after
        # "Cancelled" and bring the Cancel button back.
        if not await self.delivery.status.cancel(job_id, lambda: self.runner.cancel(job_id)):
            raise CannotCancel()
        text = self.catalog.text("status.cancelled", interaction.locale)
        await interaction.response.edit_message(content=text, view=None)

    @reports_errors
    async def open_remix(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self._result_job(interaction, job_id)
        if job.operation == Operation.VARY.value:
            raise NothingToRemix()  # a button from before variations lost theirs
        if job.pruned_at is not None and job.operation != Operation.GENERATE.value:
            # Said now, not after the member wrote a new prompt: the upload is gone.
            raise ResultTooOld(days=self.retention_days)
        modal = RemixModal(self.catalog, job_id, job.prompt, interaction.locale)
        # Not kept in memory: the submission is routed by its custom_id (views.route_modal),
        # so it is answered after a restart, or however long the member took to write.
        modal.stop()
        await interaction.response.send_modal(modal)

    @reports_errors
    async def remix(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None:
        job = await self._result_job(interaction, job_id)
        order = await self._kept_order(job)
        await self.actions.submit(
            interaction,
            dataclasses.replace(order, prompt=prompt),
            command="remix",
            source=(job_id, None),
            parent_private=job.private,
        )

    @reports_errors
    async def studio(
        self,
        interaction: discord.Interaction[Any],
        job_id: int,
        action: StudioAction,
        index: int,
    ) -> None:
        """A creative action (bot.studio) on image ``index`` of a result: that image, read
        back from the result message, is the new order's upload; the new result links to it."""
        job = await self._result_job(interaction, job_id)
        if interaction.message is None:
            raise ResultGone()
        attachment = result_attachment(interaction.message, index)
        made = await store.order_of(self.sessions, job)
        if attachment.width and attachment.height:  # the picture's own size, not the asked-for
            made = dataclasses.replace(made, size=f"{attachment.width}x{attachment.height}")
        # Built for the backend it will run on: the result's, or the server's choice where
        # this server may no longer use that one (an img2img strength means nothing to OpenAI).
        made = await self.runner.backends.resolve(made, interaction.guild_id)
        order = studio_order(self.actions.backends, made, action)
        await self.actions.submit(
            interaction,
            order,
            [(attachment, "image")],
            command=action.value,
            source=(job_id, index),
            parent_private=job.private,
        )

    @reports_errors
    async def show_params(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """ℹ️ Params: how the result was made, privately, for anyone who sees the result
        (bot.discord.generate._params); clicked on the result's own message only."""
        job = await self._result_job(interaction, job_id)
        seeds = await store.seeds_of(self.sessions, job.id)
        source = None
        if job.source_job_id is not None:
            source = await store.get_job(self.sessions, job.source_job_id)
        embed = params_embed(job, seeds, parent_of(job, source), self.catalog, interaction.locale)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @reports_errors
    async def delete_result(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """Delete every message of the result, then say so privately.

        A private result's ephemeral message cannot be deleted through its channel (Discord
        does not know it there): the click's own interaction can, since for a component the
        "original response" after a deferred update is the message the button is on. The
        other ephemeral parts of a split private result belong to the request's interaction,
        whose token is gone by then: they stay until the member dismisses them."""
        job = await self._result_job(interaction, job_id)
        allowed = interaction.user.id == job.user_id or (interaction.permissions.manage_messages)
        if not allowed:
            raise NotRequester()
        clicked = interaction.message
        ephemeral = clicked is not None and clicked.flags.ephemeral
        if ephemeral:
            await interaction.response.defer()  # a deferred update: @original is `clicked`
        else:
            await interaction.response.defer(ephemeral=True, thinking=True)
        messages = await store.messages_of(self.sessions, job)
        if clicked is not None and clicked.id not in {message_id for _, message_id in messages}:
            messages.insert(0, (clicked.channel.id, clicked.id))
        for channel_id, message_id in messages:  # every part of a split result
            # Someone deleted it a moment earlier: deleted all the same.
            with contextlib.suppress(discord.NotFound):
                if ephemeral and clicked is not None and message_id == clicked.id:
                    await interaction.delete_original_response()
                    continue
                channel = self.client.get_partial_messageable(channel_id or 0)
                await channel.get_partial_message(message_id).delete()
        await store.forget_result(self.sessions, job_id)
        await interaction.followup.send(
            self.catalog.text("result.deleted", interaction.locale), ephemeral=True
        )


#: What the bot needs in a channel to post a result there without an interaction.
POST_PERMISSIONS = ("send_messages", "embed_links", "attach_files", "read_message_history")


def check_can_post(guild: discord.Guild | None, channel_id: int) -> None:
    """Raise BotMissingPermissions when the bot may not post a result in the channel."""
    channel = guild.get_channel_or_thread(channel_id) if guild else None
    if guild is None or channel is None:
        return  # not cached: the post itself will tell
    perms = channel.permissions_for(guild.me)
    needed = list(POST_PERMISSIONS)
    if isinstance(channel, discord.Thread):
        needed[0] = "send_messages_in_threads"
    missing = [name for name in needed if not getattr(perms, name)]
    if missing:
        names = ", ".join(name.replace("_", " ").title() for name in missing)
        raise BotMissingPermissions(permissions=names)


def vary_order(backends: BackendSet, job: Job) -> ImageOrder:
    """Variations of a result: as many as the result had, on its backend with its model when
    it can. A backend that redraws from a prompt (img2img) gets the result's prompt and its
    Stable Diffusion options, all but the seed: a variation is another take, new randomness."""
    backend = backends.for_job(job.backend)
    spec = backend.spec_for(job.model if job.model in backend.models else None)
    if not spec.supports(Operation.VARY):
        spec = backend.spec_for(None)
    n = min(job.n_requested, spec.max_n)
    size = job.size if job.size and spec.allows_size(job.size) else None
    order = ImageOrder(Operation.VARY, n=n, size=size, model=spec.name, backend=backend.name)
    if not backend.features.sd_options:
        return order
    return dataclasses.replace(
        order,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt or "",
        steps=job.steps,
        guidance=job.guidance,
        sampler=job.sampler,
        checkpoint=job.checkpoint,
    )


def uploads_gone(order: ImageOrder) -> bool:
    """Whether the stored order lacks the image it needs (pruned after the retention)."""
    return order.operation is not Operation.GENERATE and order.image is None


#: What Discord's spoiler attachments' names begin with (discord.File(spoiler=True) adds it).
SPOILER_PREFIX = "SPOILER_"


def result_attachment(message: discord.Message, index: int) -> discord.Attachment:
    """Image ``index`` (0-based) of a result, found by the name results give their files
    (``image_N.ext``, or ``SPOILER_image_N.ext`` where results are spoilers)."""
    prefix = f"image_{index + 1}."
    for attachment in message.attachments:
        if attachment.filename.removeprefix(SPOILER_PREFIX).startswith(prefix):
            return attachment
    raise ResultGone()


class RemixModal(discord.ui.Modal):
    """A new prompt for a result's settings; prefilled with the old one.

    Only rendered here: its custom_id carries the job and the submission is handled by
    :func:`bot.discord.generate._views.route_modal`, which calls :meth:`ResultButtons.remix`."""

    def __init__(self, catalog: Catalog, job_id: int, prompt: str, locale: discord.Locale) -> None:
        super().__init__(
            title=catalog.text("modal.remix.title", locale),
            custom_id=remix_modal_id(job_id),
            timeout=None,
        )
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=catalog.text("modal.remix.label", locale),
            style=discord.TextStyle.paragraph,
            custom_id=REMIX_PROMPT,
            default=prompt[:4000] or None,
            placeholder=catalog.text("modal.remix.placeholder", locale)[:100],
            max_length=4000,
            required=True,
        )
        self.add_item(self.prompt)
