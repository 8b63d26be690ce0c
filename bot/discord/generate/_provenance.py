"""Is this button, modal or reaction really about the job it names?

A custom_id is text the client sends back, so a hostile member can send any job id in it: a
job of another server (with its private uploads), or a result they never saw. Anything that
names a job acts on it only when the job belongs to the server the interaction came from and,
for a result, when the interaction came from the result's own message.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.db import Sessions
from bot.db.models import Job, JobStatus
from bot.discord.errors import NotThisResult
from bot.jobs import store


def check_same_place(interaction: discord.Interaction[Any], job: Job) -> None:
    """Raise NotThisResult unless ``job`` was asked for in this server (or both are DMs)."""
    if job.guild_id != interaction.guild_id:
        raise NotThisResult()


async def check_result_here(
    client: discord.Client, sessions: Sessions, interaction: discord.Interaction[Any], job: Job
) -> None:
    """Raise NotThisResult unless the interaction came from a message of ``job``'s result.

    A result split over several messages has buttons on each, so any of its messages counts.
    A job that succeeded but whose delivery is not recorded yet has no message on record: a
    message the bot posted is accepted for it (Discord only sends clicks on components the
    message has, and the job is of this server).
    """
    check_same_place(interaction, job)
    message = interaction.message
    if message is None:
        raise NotThisResult()
    if await store.is_result_message(sessions, job, message.id):
        return
    unrecorded = job.status is JobStatus.SUCCEEDED and job.result_message_id is None
    if unrecorded and client.user is not None and message.author.id == client.user.id:
        return
    raise NotThisResult()
