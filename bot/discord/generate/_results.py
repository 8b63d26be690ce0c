"""A finished job as Discord messages: the images attached, embeds showing them, buttons.

Every Discord limit is respected here rather than hoped for: at most 10 attachments and embeds
per message, the upload limit of the interaction (results are re-encoded or split when over),
title 256, description 4096, field 1024, and 6000 characters of embed text per message. The
images are always uploaded as files, never linked, because provider URLs expire within an hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.db.models import Job
from bot.discord.files import upload_file
from bot.discord.generate._views import result_view
from bot.discord.i18n import Catalog
from bot.generation import BLEND, UPSCALE
from bot.imaging.upload import UploadImage, fit_for_upload, split_for_upload
from bot.providers import GeneratedImage
from bot.quotas import format_usd

EMBED_COLOUR = discord.Colour(0x5865F2)
DESCRIPTION_LIMIT = 4096
FIELD_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000
#: Discord's default upload limit, for posts that are not interaction responses.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass
class ResultPart:
    """One message of a result (a result is split only when its files exceed the limit)."""

    content: str
    embeds: list[discord.Embed]
    files: list[discord.File]
    view: discord.ui.View
    allowed_mentions: discord.AllowedMentions


def clean(text: str) -> str:
    """Member text made inert: no markdown tricks, no mentions (embeds render them)."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_uploads(images: list[GeneratedImage]) -> list[UploadImage]:
    return [UploadImage(i.data, i.extension) for i in images]


def prepare_uploads(images: list[GeneratedImage], limit: int) -> list[UploadImage]:
    """Synchronous (Pillow): run it in the image worker, unless :func:`fits` already."""
    return fit_for_upload(as_uploads(images), limit)


def fits(images: list[GeneratedImage], limit: int) -> bool:
    """Whether the images go as they are (nothing to re-encode, no worker needed)."""
    return sum(len(image.data) for image in images) <= limit


def build_result(
    job: Job,
    uploads: list[UploadImage],
    *,
    seconds: float,
    revised_prompt: str | None,
    catalog: Catalog,
    limit: int,
    seeds: Sequence[int | None] = (),
    shapes: Sequence[tuple[int, int]] = (),
    spoiler: bool = False,
) -> list[ResultPart]:
    """The messages that show ``job``'s images; the first carries the details.

    ``seeds``: each image's seed (Stable Diffusion backends), shown and offered to redo with.
    ``shapes``: each image's width and height: a result of one image gets the studio rows
    (bot.studio), with Make Square when that image is not square.
    ``spoiler`` (the server's rule for the channel): the images are spoiler attachments
    (``SPOILER_image_N.ext``, blurred until clicked) and no embed shows them, since an embed's
    image cannot be blurred; the details are an embed of their own."""
    locale = job.locale
    known = [seed for seed in seeds if seed is not None]
    groups = split_for_upload(uploads, limit)
    parts = []
    for part_number, indexes in enumerate(groups):
        files = [
            upload_file(uploads[i].data, f"image_{i + 1}.{uploads[i].extension}", spoiler=spoiler)
            for i in indexes
        ]
        embeds = [
            _image_embed(job, i, uploads[i].extension, len(uploads), catalog) for i in indexes
        ]
        if spoiler:
            embeds = [discord.Embed(colour=EMBED_COLOUR)] if part_number == 0 else []
        if part_number == 0:
            _add_details(embeds[0], job, seconds, revised_prompt, catalog, seeds)
        parts.append(
            ResultPart(
                # The requester is pinged once, by the first message, however many follow.
                content=f"<@{job.user_id}>" if job.user_id and part_number == 0 else "",
                embeds=embeds,
                files=files,
                view=result_view(
                    job.id,
                    indexes,
                    catalog,
                    locale,
                    with_actions=part_number == 0,
                    remix=job.operation != "vary",
                    same_seed=known[0] if known else None,
                    single=len(uploads) == 1,
                    square=not shapes or shapes[0][0] == shapes[0][1],
                    params=True,
                ),
                allowed_mentions=requester_only(job.user_id),
            )
        )
    return parts


def requester_only(user_id: int | None) -> discord.AllowedMentions:
    """Ping nobody but the requester, whatever the prompt contains."""
    users = [discord.Object(user_id)] if user_id else []
    return discord.AllowedMentions(everyone=False, roles=False, users=users, replied_user=False)


def _image_embed(
    job: Job, index: int, extension: str, total: int, catalog: Catalog
) -> discord.Embed:
    # Embeds sharing a url are shown by Discord as one gallery.
    embed = discord.Embed(colour=EMBED_COLOUR, url=f"https://discord.com/#job-{job.id}")
    embed.set_image(url=f"attachment://image_{index + 1}.{extension}")
    return embed


def _add_details(
    embed: discord.Embed,
    job: Job,
    seconds: float,
    revised: str | None,
    catalog: Catalog,
    seeds: Sequence[int | None] = (),
) -> None:
    locale = job.locale
    fields: list[tuple[str, str, bool]] = []
    if revised and revised.strip() != job.prompt.strip():
        fields.append((catalog.text("result.revised_prompt", locale), clean(revised), False))
    if job.user_id:
        fields.append((catalog.text("result.requested_by", locale), f"<@{job.user_id}>", True))
    fields.append((catalog.text("result.model", locale), job.model, True))
    if job.size:
        fields.append((catalog.text("result.size", locale), job.size, True))
    if job.quality:
        fields.append((catalog.text("result.quality", locale), job.quality, True))
    if any(seed is not None for seed in seeds):
        fields.append((catalog.text("result.seed", locale), seed_text(seeds), True))
    fields.append(
        (
            catalog.text("result.time", locale),
            catalog.text("result.seconds", locale, seconds=seconds),
            True,
        )
    )
    fields.append((catalog.text("result.cost", locale), format_usd(job.cost_micro_usd), True))
    footer = catalog.text("result.footer", locale, job_id=job.id)
    title = _title(job, catalog)

    used = len(footer) + len(title)
    for name, value, inline in fields:
        value = trim(value, FIELD_LIMIT)
        used += len(name) + len(value)
        embed.add_field(name=name, value=value, inline=inline)
    prompt = clean(job.prompt) if job.prompt else ""
    budget = min(DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT - used - 16)
    if prompt:
        embed.description = trim(prompt, max(budget, 1))
    embed.title = title
    embed.set_footer(text=footer)


def seed_text(seeds: Sequence[int | None]) -> str:
    """One seed as it is; several numbered by image, "1: 42, 2: 43", to redo any one of them."""
    if len(seeds) == 1:
        return str(seeds[0])
    return ", ".join(f"{i}: {seed}" for i, seed in enumerate(seeds, 1) if seed is not None)


#: The name of each canvas or variation action (bot.studio) in a result's title: its button's
#: label, or for the pans (emoji buttons) a name of their own.
ACTION_NAMES = {
    "vary_subtle": "button.vary_subtle",
    "vary_strong": "button.vary_strong",
    "zoom_2": "button.zoom_2",
    "zoom_1_5": "button.zoom_1_5",
    "square": "button.square",
    "pan_left": "result.pan_left",
    "pan_right": "result.pan_right",
    "pan_up": "result.pan_up",
    "pan_down": "result.pan_down",
}


def _title(job: Job, catalog: Catalog) -> str:
    if job.action == UPSCALE:
        if job.source_index is not None:
            return catalog.text("result.upscale_of", job.locale, index=job.source_index + 1)
        return catalog.text("result.upscaled", job.locale)
    name = ACTION_NAMES.get(job.action or "")
    if name is not None and job.source_index is not None:
        action = catalog.text(name, job.locale)
        return catalog.text(
            "result.action_of", job.locale, action=action, index=job.source_index + 1
        )
    if job.operation == "vary":
        if job.source_index is not None:
            return catalog.text("result.vary_of", job.locale, index=job.source_index + 1)
        return catalog.text("result.variation", job.locale)
    if job.action == BLEND:
        return catalog.text("result.blend", job.locale)
    if job.operation == "edit":
        return catalog.text("result.edit_of", job.locale)
    return trim(catalog.text("result.prompt", job.locale), 256)
