"""ℹ️ Params: everything needed to make a result again, as a private answer to whoever asks.

Anyone who can see a result may read its parameters (the prompt is on the result already, the
rest is how it was made); the answer is ephemeral, so only the one who clicked sees it. The
click is checked like every result button's (bot.discord.generate._provenance): a job of
another server, or a custom_id pasted onto another message, is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.db.models import Job
from bot.discord.generate._results import (
    DESCRIPTION_LIMIT,
    EMBED_COLOUR,
    EMBED_TOTAL_LIMIT,
    FIELD_LIMIT,
    clean,
    seed_text,
    trim,
)
from bot.discord.i18n import Catalog, LocaleLike
from bot.quotas import format_usd


@dataclass(frozen=True)
class Parent:
    """The result a job was made from (an action's, a variation's, a redo's source)."""

    job_id: int
    #: Its result message's jump link; None once it was deleted or never posted.
    link: str | None
    #: Which of its images (0-based), for an action on one image.
    index: int | None


def jump_link(guild_id: int | None, channel_id: int | None, message_id: int) -> str:
    """Discord's link to a message; ``@me`` for a direct message."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id or 0}/{message_id}"


def parent_of(job: Job, parent: Job | None) -> Parent | None:
    if job.source_job_id is None:
        return None
    link = None
    if parent is not None and parent.result_message_id is not None:
        link = jump_link(parent.guild_id, parent.result_channel_id, parent.result_message_id)
    return Parent(job.source_job_id, link, job.source_index)


def params_embed(
    job: Job,
    seeds: Sequence[int | None],
    parent: Parent | None,
    catalog: Catalog,
    locale: LocaleLike,
) -> discord.Embed:
    """The parameters of ``job`` in the viewer's language; a line only for what was set.

    ``seeds``: each image's seed as the backend reported it (Stable Diffusion backends); the
    seed asked for stands in once they are gone (retention) or where none were reported."""
    fields: list[tuple[str, str, bool]] = []

    def add(key: str, value: object, inline: bool = True) -> None:
        if value is None or value == "":
            return
        fields.append((catalog.text(key, locale), trim(str(value), FIELD_LIMIT), inline))

    if job.revised_prompt and job.revised_prompt.strip() != job.prompt.strip():
        add("result.revised_prompt", clean(job.revised_prompt), False)
    add("params.negative_prompt", clean(job.negative_prompt or ""), False)
    add("params.action", job.action or job.operation)
    add("params.backend", job.backend)
    add("result.model", job.model)
    add("params.checkpoint", job.checkpoint)
    add("result.size", job.size)
    add("result.quality", job.quality)
    add("params.style", job.style)
    known = [seed for seed in seeds if seed is not None]
    add("result.seed", seed_text(seeds) if known else job.seed)
    add("params.steps", job.steps)
    add("params.guidance", job.guidance)
    add("params.sampler", job.sampler)
    add("params.strength", job.strength)
    add("params.input_fidelity", job.input_fidelity)
    add("params.images", job.n_requested)
    add("result.cost", format_usd(job.cost_micro_usd))
    if parent is not None:
        add("params.parent", _parent_text(parent, catalog, locale), False)

    embed = discord.Embed(
        colour=EMBED_COLOUR, title=catalog.text("params.title", locale, job_id=job.id)
    )
    used = len(embed.title or "")
    for name, value, inline in fields:
        used += len(name) + len(value)
        embed.add_field(name=name, value=value, inline=inline)
    if job.prompt:
        budget = min(DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT - used - 16)
        embed.description = trim(clean(job.prompt), max(budget, 1))
    return embed


def _parent_text(parent: Parent, catalog: Catalog, locale: LocaleLike) -> str:
    if parent.link is None:
        return catalog.text("params.parent_gone", locale, job_id=parent.job_id)
    if parent.index is not None:
        return catalog.text("params.parent_image", locale, link=parent.link, index=parent.index + 1)
    return catalog.text("params.parent_link", locale, link=parent.link)
