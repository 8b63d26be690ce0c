"""/show job:<id> end to end: a member's own result posted again where they ask, with the same
images (read back from the original message), the same embeds and live buttons; every refusal
private, and nothing about someone else's job told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.config import JobsSettings, Settings
from bot.db.models import Job, JobMessage, JobStatus
from bot.jobs import store
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import Harness, en, job_id_of, new_result, run_bot, seen_ids, synced
from bot.testing.images import colour_of
from bot.testing.openai_api import FakeImagesAPI

PROMPT = "a lighthouse at dusk"


async def imagine(harness: Harness, prompt: str = PROMPT, n: int = 2, **who: Any) -> StoredMessage:
    before = seen_ids(harness.fake)
    await harness.fake.slash("imagine", {"prompt": prompt, "count": n, "size": "256x256"}, **who)
    return await new_result(harness, before)


async def show(harness: Harness, job_id: int, **where: Any) -> StoredMessage:
    """/show as the member (default fake.user): the re-posted result's first message."""
    before = seen_ids(harness.fake)
    handle = await harness.fake.slash("show", {"job": job_id}, **where)
    assert (await handle.response()).ephemeral  # "thinking…" is private
    note = await handle.wait_message(lambda m: bool(m.content))
    assert note.ephemeral and note.content == en(harness, "show.posted", job_id=job_id)
    copy = await harness.fake.wait_for_message(
        lambda m: m.id not in before and bool(m.attachments), sources=("followup",)
    )
    # Posted a moment before it is recorded for the job (its ids are known only then).
    for _ in range(100):
        if await store.job_for_message(harness.bot.storage.sessions, copy.id) is not None:
            return copy
        await asyncio.sleep(0.02)
    raise AssertionError(f"the copy {copy.id} was never recorded for its job")


async def refused(harness: Harness, job_id: int, **where: Any) -> str:
    """/show is answered privately and nothing is posted; the answer's text."""
    before = seen_ids(harness.fake)
    handle = await harness.fake.slash("show", {"job": job_id}, **where)
    message = await handle.wait_message(lambda m: bool(m.content))
    assert message.ephemeral and not message.attachments
    assert [m for m in harness.fake.state.messages.values() if m.id not in before] == [message]
    return message.content


async def change_job(harness: Harness, job_id: int, **values: Any) -> None:
    """What another part of the bot (or another server's command) left in the job's row."""
    async with harness.bot.storage.sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job_id).values(**values))


async def test_show_takes_a_job_number_with_suggestions_in_servers_only(harness: Harness) -> None:
    command = synced(harness.fake, "show")
    (job,) = command["options"]
    assert (job["name"], job["type"], job["required"], job["autocomplete"]) == (
        "job",
        4,
        True,
        True,
    )
    assert job["min_value"] == 1 and job["name_localizations"]["ko"] == "작업"
    assert command["contexts"] == [0]


@pytest.mark.both_engines
@pytest.mark.usefixtures("engine")
async def test_an_own_result_is_posted_again_with_its_images_and_live_buttons(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    original = await imagine(harness, n=2)
    job = job_id_of(original)

    copy = await show(harness, job)

    assert not copy.ephemeral and copy.source == "followup"
    assert copy.files == original.files  # the same bytes, read back from the original
    assert copy.custom_ids == original.custom_ids  # the same buttons, keyed by the job
    assert copy.embeds[0]["title"] == original.embeds[0]["title"]
    assert copy.embeds[0]["description"] == PROMPT
    assert copy.embeds[0]["footer"]["text"] == f"Job #{job}"
    assert len(api.requests) == 1  # nothing made
    async with harness.bot.storage.sessions() as session:
        rows = await session.execute(
            select(JobMessage.position, JobMessage.message_id)
            .where(JobMessage.job_id == job)
            .order_by(JobMessage.position)
        )
        assert rows.all() == [(0, original.id), (1, copy.id)]  # the original's row kept
    row = await store.get_job(harness.bot.storage.sessions, job)
    assert row is not None and row.result_message_id == original.id
    assert row.n_charged == 2  # charged once

    # Vary 2 on the copy varies image 2 and links to the job
    before = seen_ids(fake)
    click = await fake.click(copy, f"ib:vary:{job}:1", user=fake.admin)
    assert (await click.response()).ephemeral
    varied = await new_result(harness, before)
    assert varied.embeds[0]["title"] == "Variation of image 2"
    assert colour_of(api.requests[-1].file("image").data) == colour_of(
        original.files["image_2.png"]
    )
    made = await store.get_job(harness.bot.storage.sessions, job_id_of(varied))
    assert made is not None and (made.source_job_id, made.source_index) == (job, 1)


async def test_params_redo_and_a_reaction_on_the_copy_act_on_the_job(harness: Harness) -> None:
    fake = harness.fake
    original = await imagine(harness, n=2)
    job = job_id_of(original)
    copy = await show(harness, job)

    params = await fake.click(copy, f"ib:params:{job}")
    response = await params.response()
    assert response.ephemeral and response.data["embeds"][0]["title"] == (
        f"Parameters of job #{job}"
    )

    before = seen_ids(fake)
    await fake.click(copy, f"ib:redo:{job}")
    redone = await new_result(harness, before)
    assert redone.embeds[0]["description"] == PROMPT
    redo = await store.get_job(harness.bot.storage.sessions, job_id_of(redone))
    assert redo is not None and (redo.source_job_id, redo.command) == (job, "redo")

    before = seen_ids(fake)
    await fake.react(copy, "2️⃣", user=fake.admin)
    reacted = await new_result(harness, before)
    assert reacted.embeds[0]["title"] == "Variation of image 2"
    assert reacted.channel_id == copy.channel_id


async def test_delete_on_the_copy_deletes_the_result_everywhere(harness: Harness) -> None:
    fake = harness.fake
    original = await imagine(harness, n=1)
    job = job_id_of(original)
    copy = await show(harness, job)

    click = await fake.click(copy, f"ib:delete:{job}")
    assert (await click.wait_message()).content == en(harness, "result.deleted")

    assert copy.deleted and original.deleted
    assert await refused(harness, job) == en(harness, "error.show_deleted", job_id=job)
    history = await fake.slash("history")
    assert (await history.wait_message()).content == en(harness, "history.none")


async def test_a_copy_can_be_shown_again_in_another_channel(harness: Harness) -> None:
    fake = harness.fake
    original = await imagine(harness, n=1)
    job = job_id_of(original)
    other = fake.add_channel(name="gallery")

    copy = await show(harness, job, channel=other)
    again = await show(harness, job)

    assert copy.channel_id == other.id and again.channel_id == fake.channel.id
    assert copy.files == again.files == original.files
    messages = await store.messages_of(harness.bot.storage.sessions, await _job(harness, job))
    assert [message_id for _, message_id in messages] == [original.id, copy.id, again.id]


async def _job(harness: Harness, job_id: int) -> Job:
    job = await store.get_job(harness.bot.storage.sessions, job_id)
    assert job is not None
    return job


async def test_someone_elses_result_is_refused_without_telling_its_prompt(
    harness: Harness,
) -> None:
    fake = harness.fake
    theirs = await imagine(harness, prompt="a secret garden", n=1, user=fake.admin)
    job = job_id_of(theirs)

    answer = await refused(harness, job)

    assert answer == en(harness, "error.show_not_yours", job_id=job)
    assert answer == f"#{job} is not one of your results in this server."
    assert "secret" not in answer


async def test_an_unknown_job_and_another_servers_job_get_the_same_answer(
    harness: Harness,
) -> None:
    mine = job_id_of(await imagine(harness, n=1))
    await change_job(harness, mine, guild_id=harness.fake.guild.id + 1)

    assert await refused(harness, mine) == en(harness, "error.show_not_yours", job_id=mine)
    assert await refused(harness, 987_654) == en(harness, "error.show_not_yours", job_id=987_654)


@pytest.fixture
def one_at_a_time(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(jobs=JobsSettings(concurrency=1, member_requests_per_minute=100))


async def test_a_running_and_a_queued_job_are_not_finished_yet(
    fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, one_at_a_time: Settings
) -> None:
    fake, api = fake_discord, fake_images_api
    api.gate = asyncio.Event()  # the provider holds every request
    async with run_bot(fake, api, one_at_a_time) as harness:
        await fake.slash("imagine", {"prompt": "first", "size": "256x256"})
        await fake.slash("imagine", {"prompt": "second", "size": "256x256"})
        running, queued = await _two_jobs(harness)

        assert await refused(harness, running) == en(harness, "error.show_running", job_id=running)
        assert await refused(harness, queued) == en(harness, "error.show_queued", job_id=queued)
        api.gate.set()
    assert fake.spec_violations == []


async def _two_jobs(harness: Harness) -> tuple[int, int]:
    """The running job and the one queued behind it, once the first reached the provider."""
    for _ in range(200):
        async with harness.bot.storage.sessions() as session:
            rows = (await session.execute(select(Job.id).order_by(Job.id))).scalars().all()
        if len(rows) == 2 and harness.api.requests:
            return rows[0], rows[1]
        await asyncio.sleep(0.05)
    raise AssertionError("two jobs, one of them at the provider, expected")


async def test_a_failed_job_says_why_it_failed(harness: Harness) -> None:
    harness.api.safety_next()
    await harness.fake.slash("imagine", {"prompt": "something", "size": "256x256"})
    job = await _last_job(harness)
    assert job.status is JobStatus.FAILED and job.error_code

    answer = await refused(harness, job.id)

    reason = en(harness, job.error_code)
    assert answer == en(harness, "error.show_failed", job_id=job.id, reason=reason)


async def test_a_job_failed_for_the_operators_reasons_tells_no_internals(harness: Harness) -> None:
    harness.api.billing_next()
    await harness.fake.slash("imagine", {"prompt": "something", "size": "256x256"})
    job = await _last_job(harness)

    answer = await refused(harness, job.id)

    reason = en(harness, "error.operator")
    assert answer == en(harness, "error.show_failed", job_id=job.id, reason=reason)
    assert "billing" not in answer.lower()


async def _last_job(harness: Harness) -> Job:
    """The newest job, once it has ended."""
    for _ in range(200):
        async with harness.bot.storage.sessions() as session:
            job = await session.scalar(select(Job).order_by(Job.id.desc()).limit(1))
        if job is not None and job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("a finished job expected")


async def test_a_cancelled_job_says_so(harness: Harness) -> None:
    mine = job_id_of(await imagine(harness, n=1))
    await change_job(harness, mine, status=JobStatus.CANCELLED, result_message_id=None)

    assert await refused(harness, mine) == en(harness, "error.show_cancelled", job_id=mine)


async def test_a_deleted_original_message_means_its_images_are_gone(harness: Harness) -> None:
    original = await imagine(harness, n=2)
    job = job_id_of(original)
    harness.fake.state.delete(original)  # deleted on Discord (a moderator), not with Delete

    answer = await refused(harness, job)

    assert answer == en(harness, "error.show_images_gone", job_id=job)
    assert len(harness.api.requests) == 1


async def test_the_copy_of_a_private_job_is_private(harness: Harness) -> None:
    original = await imagine(harness, n=1)
    job = job_id_of(original)
    await change_job(harness, job, private=True)

    copy = await show(harness, job)

    assert copy.ephemeral and copy.files == original.files


async def test_a_result_of_relaxed_moderation_is_shown_only_in_an_age_restricted_channel(
    harness: Harness,
) -> None:
    fake = harness.fake
    job = job_id_of(await imagine(harness, n=1))
    await change_job(harness, job, moderation="low")
    adults = fake.add_channel(name="adults", nsfw=True)

    assert await refused(harness, job) == en(harness, "error.show_age_restricted", job_id=job)
    copy = await show(harness, job, channel=adults)
    assert copy.channel_id == adults.id


async def test_suggestions_are_the_members_results_matching_what_they_type(
    harness: Harness,
) -> None:
    fake = harness.fake
    lighthouse = job_id_of(await imagine(harness, prompt="a lighthouse at dusk", n=1))
    fox = job_id_of(await imagine(harness, prompt="a fox " + "in the snow " * 20, n=1))
    await imagine(harness, prompt="a lighthouse of theirs", n=1, user=fake.admin)

    async def choices(typed: str) -> list[dict[str, Any]]:
        handle = await fake.autocomplete("show", {"job": typed}, focused="job")
        response = await handle.response()
        assert response.type == 8
        found: list[dict[str, Any]] = response.data["choices"]
        return found

    every = await choices("")
    assert [c["value"] for c in every] == [fox, lighthouse]  # newest first, only their own
    assert every[1]["name"].startswith(f"#{lighthouse} · a lighthouse at dusk · 20")
    assert all(len(c["name"]) <= 100 for c in every)
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    assert "…" in every[0]["name"] and every[0]["name"].endswith(f"… · {today}")  # trimmed
    assert [c["value"] for c in await choices("LIGHT")] == [lighthouse]
    assert [c["value"] for c in await choices(f"#{fox}")] == [fox]


@pytest.mark.both_engines
@pytest.mark.usefixtures("engine")
async def test_buttons_on_a_copy_work_after_a_restart(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory()
    async with run_bot(fake, api, settings) as harness:
        original = await imagine(harness, n=2)
        job = job_id_of(original)
        copy = await show(harness, job)
    assert not fake.connected

    async with run_bot(fake, api, settings) as harness:  # bot #2, same database
        before = seen_ids(fake)
        click = await fake.click(copy, f"ib:vary:{job}:0", user=fake.admin)
        assert (await click.response()).ephemeral
        varied = await new_result(harness, before)
        assert varied.embeds[0]["title"] == "Variation of image 1"
        made = await store.get_job(harness.bot.storage.sessions, job_id_of(varied))
        assert made is not None and (made.source_job_id, made.source_index) == (job, 0)
    assert fake.spec_violations == []
    assert api.spec_violations == []
