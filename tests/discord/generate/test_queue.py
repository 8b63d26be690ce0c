"""Waiting in line, through the Discord layer: place, estimated wait, Cancel, caps, shutdown.

One job runs at a time (``concurrency = 1``) against a slow fake image API, so the requests after
the first wait in the queue and their private status messages can be watched as it moves.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.config import JobsSettings, Settings
from bot.db.models import Job, JobStatus
from bot.discord.errors import CannotCancel, NotRequester, ResultGone
from bot.discord.i18n import Catalog
from bot.errors import BotError, ShuttingDown
from bot.jobs import store
from bot.quotas.policy import GuildQueueFull, QueueFull
from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle, P, StoredMessage
from bot.testing.harness import Harness, api_calls, run_bot
from bot.testing.openai_api import FakeImagesAPI
from tests.jobs.test_runner import in_memory_queue

CATALOG = Catalog.load()
WORKING = CATALOG.text("status.working", n=1)
DONE = CATALOG.text("status.done")
CANCELLED = CATALOG.text("status.cancelled")


def _queued_pattern() -> re.Pattern[str]:
    """The English "queued" text with its position and its ETA (a Discord timestamp) captured."""
    template = CATALOG.template("status.queued")
    assert template is not None and "{position}" in template and "{eta}" in template
    pattern = re.escape(template)
    pattern = pattern.replace(re.escape("{position}"), r"(?P<position>\d+)")
    pattern = pattern.replace(re.escape("{eta}"), r"<t:(?P<eta>\d+):R>")
    return re.compile(f"^{pattern}$")


QUEUED = _queued_pattern()


def error(problem: BotError) -> str:
    return CATALOG.error_text(problem)


#: Seconds between two queue updates of one status message in these tests (5 in production).
REFRESH = 0.4


@pytest.fixture
async def line(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    """The bot with one job at a time, two waiting per member, and a 1 s image API."""
    jobs = JobsSettings(concurrency=1, max_queued_per_member=2, max_queued_per_guild=4)
    async with run_bot(fake_discord, fake_images_api, settings_factory(jobs=jobs)) as harness:
        harness.bot.delivery.status.refresh_seconds = REFRESH
        harness.bot.delivery.status.pass_seconds = 0.05
        fake_images_api.delay = 1.0
        yield harness
        fake_images_api.delay = 0.0
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


def members(fake: FakeDiscord, count: int) -> list[FakeMember]:
    return [fake.add_member(fake.guild, f"member{i}") for i in range(count)]


async def imagine(
    harness: Harness, prompt: str, user: FakeMember | None = None
) -> InteractionHandle:
    handle = await harness.fake.slash(
        "imagine", {"prompt": prompt, "size": "256x256"}, user=user or harness.fake.user
    )
    assert (await handle.response()).ephemeral
    return handle


async def status(
    handle: InteractionHandle,
    predicate: Callable[[str], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> StoredMessage:
    """The private status message once its text matches."""
    return await handle.wait_message(
        lambda m: m.ephemeral and predicate(m.content), timeout=timeout
    )


def queued_at(number: int) -> Callable[[str], bool]:
    def check(content: str) -> bool:
        match = QUEUED.match(content)
        return match is not None and int(match["position"]) == number

    return check


def texts(message: StoredMessage) -> list[str]:
    """Every text the message showed, oldest first (the fake keeps each revision)."""
    shown = [str(r.get("content") or "") for r in message.revisions] + [message.content]
    return [text for i, text in enumerate(shown) if text and (i == 0 or shown[i - 1] != text)]


def edit_times(message: StoredMessage) -> list[float]:
    stamps = [r.get("edited_timestamp") for r in message.revisions[1:]]
    stamps.append(message.edited_timestamp)
    return [datetime.fromisoformat(s).timestamp() for s in stamps if s]


async def running(harness: Harness, count: int = 1) -> None:
    """Until ``count`` requests reached the image API."""
    async with asyncio.timeout(10):
        while len(harness.api.requests) < count:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)


async def test_waiting_requests_see_their_place_an_eta_and_cancel(line: Harness) -> None:
    fake = line.fake
    first, second, third = members(fake, 3)
    a = await imagine(line, "first", first)
    await running(line)
    await status(a, lambda text: text == WORKING)
    b = await imagine(line, "second", second)
    c = await imagine(line, "third", third)
    b_status = await status(b, queued_at(1))
    c_status = await status(c, queued_at(2))
    now = time.time()
    b_eta = int(QUEUED.match(b_status.content)["eta"])  # type: ignore[index]
    c_eta = int(QUEUED.match(c_status.content)["eta"])  # type: ignore[index]
    assert now < b_eta < c_eta < now + 120
    jobs = {h: job for h, job in zip((b, c), await _job_ids(line, 3, skip=1), strict=True)}
    assert b_status.custom_ids == [f"ib:cancel:{jobs[b]}"]
    assert c_status.custom_ids == [f"ib:cancel:{jobs[c]}"]
    assert _button_label(c_status) == "Cancel"

    # the queue moves: the second starts, the third moves up to number 1
    await status(b, lambda text: text == WORKING)
    c_status = await status(c, queued_at(1))
    assert c_status.custom_ids == [f"ib:cancel:{jobs[c]}"]
    for handle in (a, b, c):
        await status(handle, lambda text: text == DONE)
    await line.idle()
    assert c.original is not None
    shown = texts(c.original)
    assert len(shown) == 4 and queued_at(2)(shown[0]) and queued_at(1)(shown[1])
    assert shown[2:] == [WORKING, DONE]
    assert [r.body["prompt"] for r in line.api.requests] == ["first", "second", "third"]


async def test_position_updates_are_rate_limited(line: Harness) -> None:
    """The queue moves faster than one step per refresh interval: the last job's message is
    edited at most once per interval while it waits, and skips positions it had no time to
    show."""
    fake, api = line.fake, line.api
    board = line.bot.delivery.status
    # Each job takes 1 s, so the three requests are in before the first is done even on a
    # loaded machine; positions change every second, the message at most every 2.5 s.
    board.refresh_seconds = 2.5
    api.delay = 1.0
    people = members(fake, 4)
    handles = [await imagine(line, "p0", people[0])]
    await running(line)
    for i, person in enumerate(people[1:], start=1):
        handles.append(await imagine(line, f"p{i}", person))
        await status(handles[-1], queued_at(i))
    for handle in handles:
        await status(handle, lambda text: text == DONE)
    await line.idle()
    last = handles[-1].original
    assert last is not None
    shown = texts(last)
    positions = [int(m["position"]) for m in map(QUEUED.match, shown) if m]
    assert positions[0] == 3 and positions == sorted(positions, reverse=True)
    assert len(positions) < 3  # 3, 2, 1 came faster than one every 2.5 s
    assert shown[-2:] == [WORKING, DONE]
    queue_edits = edit_times(last)[: len(positions)]
    gaps = [b - a for a, b in itertools.pairwise(queue_edits)]
    assert all(gap >= 2.4 for gap in gaps), gaps


async def test_the_requester_cancels_a_waiting_request(line: Harness) -> None:
    fake, api = line.fake, line.api
    first, second = members(fake, 2)
    a = await imagine(line, "keeps running", first)
    await running(line)
    b = await imagine(line, "changed my mind", second)
    b_status = await status(b, queued_at(1))
    (job_id,) = [int(c.split(":")[2]) for c in b_status.custom_ids]
    reserved = await store.get_job(line.bot.storage.sessions, job_id)
    assert reserved is not None and reserved.n_charged == 1

    click = await fake.click(b_status, f"ib:cancel:{job_id}", user=second)
    answer = await click.response()
    assert answer.type == 7  # the status message itself is updated
    assert b.original is not None and b.original.content == CANCELLED
    assert b.original.components == []

    await status(a, lambda text: text == DONE)
    await line.idle()
    await asyncio.sleep(REFRESH + 0.2)  # no late queue update brings the button back
    assert b.original.content == CANCELLED and b.original.components == []
    job = await store.get_job(line.bot.storage.sessions, job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert (job.n_charged, job.cost_micro_usd) == (0, 0)
    assert [r.body["prompt"] for r in api.requests] == ["keeps running"]


async def test_a_cancel_during_a_queue_update_is_not_undone_by_it(
    line: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue moves, and the update of B's place is slow to reach Discord; B's requester
    presses Cancel meanwhile. "Cancelled" must be the last word, without a Cancel button."""
    fake = line.fake
    board = line.bot.delivery.status
    first, second, third = members(fake, 3)
    line.api.delay = 5.0  # the first job runs all along
    await imagine(line, "running", first)
    await running(line)
    x = await imagine(line, "ahead", second)
    x_status = await status(x, queued_at(1))
    b = await imagine(line, "behind", third)
    b_status = await status(b, queued_at(2))
    await asyncio.sleep(REFRESH)  # B's place may be updated again
    updating = asyncio.Event()
    real_edit = board._edit

    async def slow_edit(job: Any, text: str, *, view: Any) -> bool:
        if QUEUED.match(text) and job.prompt == "behind":
            updating.set()
            await asyncio.sleep(0.5)
        return await real_edit(job, text, view=view)

    monkeypatch.setattr(board, "_edit", slow_edit)
    (x_cancel,) = x_status.custom_ids
    await (await fake.click(x_status, x_cancel, user=second)).response()
    await asyncio.wait_for(updating.wait(), 5)  # B moves up: its update is on its way
    (b_cancel,) = b_status.custom_ids
    click = await fake.click(b_status, b_cancel, user=third)
    assert (await click.response()).type == 7
    await asyncio.sleep(1.0)
    assert b.original is not None
    assert b.original.content == CANCELLED and b.original.components == []
    assert texts(b.original)[-1] == CANCELLED
    assert [r.body["prompt"] for r in line.api.requests] == ["running"]


@in_memory_queue  # the shared queue's claim says "working", without the stale Cancel button
async def test_cancel_of_a_request_that_already_started_is_refused(line: Harness) -> None:
    fake, api = line.fake, line.api
    first, second = members(fake, 2)
    a = await imagine(line, "first", first)
    await running(line)
    b = await imagine(line, "second", second)
    b_status = await status(b, queued_at(1))
    (custom_id,) = b_status.custom_ids
    # The member's screen still shows the button when the job starts: updates stop here.
    await line.bot.delivery.status.stop()
    await status(a, lambda text: text == DONE)
    await running(line, 2)
    click = await fake.click(b_status, custom_id, user=second)
    refusal = await click.wait_message()
    assert refusal.ephemeral
    assert refusal.content == error(CannotCancel())
    result = await line.result(lambda m: m.embeds[0].get("description") == "second")
    assert result.pinged_ids == [second.id]
    await line.idle()
    job = await store.get_job(line.bot.storage.sessions, int(custom_id.split(":")[2]))
    assert job is not None and job.status is JobStatus.DELIVERED and job.n_charged == 1
    assert len(api.requests) == 2


async def test_only_the_requester_may_cancel(line: Harness) -> None:
    fake = line.fake
    first, second, other = members(fake, 3)
    await imagine(line, "first", first)
    await running(line)
    b = await imagine(line, "second", second)
    b_status = await status(b, queued_at(1))
    (custom_id,) = b_status.custom_ids
    click = await fake.click(b_status, custom_id, user=other)
    refusal = await click.wait_message()
    assert refusal.ephemeral and refusal.content == error(NotRequester())
    await line.idle()
    assert len(line.api.requests) == 2  # still ran


async def test_the_member_queue_cap_is_explained(line: Harness) -> None:
    fake = line.fake
    (other,) = members(fake, 1)
    line.api.delay = 5.0  # the first job runs all along
    await imagine(line, "running", other)
    await running(line)
    waiting = [await imagine(line, f"waiting {i}") for i in range(2)]
    for position, handle in enumerate(waiting, start=1):
        await status(handle, queued_at(position))
    refused = await imagine(line, "one too many")
    message = await refused.wait_message()
    assert message.ephemeral and message.components == []
    assert message.content == error(QueueFull(count=2))
    assert "2" in message.content
    assert await _prompts_stored(line) == ["running", "waiting 0", "waiting 1"]


async def test_the_guild_queue_cap_is_explained(line: Harness) -> None:
    fake = line.fake
    people = members(fake, 6)
    line.api.delay = 5.0  # the first job runs all along
    await imagine(line, "running", people[0])
    await running(line)
    for person in people[1:5]:
        await imagine(line, f"waiting {person.name}", person)
    refused = await imagine(line, "no room", people[5])
    message = await refused.wait_message()
    assert message.content == error(GuildQueueFull(count=4))
    assert "4" in message.content
    assert "no room" not in await _prompts_stored(line)


async def test_the_status_ends_with_done_or_the_error(line: Harness) -> None:
    fake, api = line.fake, line.api
    first, second = members(fake, 2)
    # Long enough for the status board's "working" edit to land first on a loaded machine.
    api.delay = 1.0
    ok = await imagine(line, "fine", first)
    await status(ok, lambda text: text == DONE)
    api.safety_next()
    bad = await imagine(line, "refused", second)
    failed = await status(bad, lambda text: "safety" in text.lower())
    await line.idle()
    assert failed.components == [] and failed.attachments == []
    assert WORKING in texts(failed)


async def test_a_request_finishing_after_its_token_expired_goes_to_the_channel(
    line: Harness,
) -> None:
    fake = line.fake
    first, second = members(fake, 2)
    await imagine(line, "first", first)
    await running(line)
    late = await imagine(line, "late", second)
    await status(late, queued_at(1))
    fake.expire_interaction(late)  # 15 minutes pass while it waits
    result = await line.result(lambda m: m.embeds[0].get("description") == "late")
    assert result.source == "channel" and result.channel_id == fake.channel.id
    assert result.content == second.mention and result.pinged_ids == [second.id]
    assert result.allowed_mentions is not None and result.allowed_mentions.get("parse") == []
    await line.idle()
    job = await store.get_job(line.bot.storage.sessions, 2)
    assert job is not None and job.status is JobStatus.DELIVERED
    assert job.result_message_id == result.id


async def test_requests_during_shutdown_are_told_the_bot_is_restarting(line: Harness) -> None:
    fake = line.fake
    first, second = members(fake, 2)
    a = await imagine(line, "last one", first)
    await running(line)
    closing = asyncio.create_task(line.bot.runner.close(grace=10))
    await asyncio.sleep(0)
    refused = await imagine(line, "too late", second)
    message = await refused.wait_message()
    assert message.ephemeral
    assert message.content == error(ShuttingDown())
    await closing  # the running job was given its grace and finished
    await status(a, lambda text: text == DONE)
    assert [r.body["prompt"] for r in api_calls(line.api)] == ["last one"]


async def _prompts_stored(harness: Harness) -> list[str]:
    """The prompts of every job in the database (refused requests leave none)."""
    async with harness.bot.storage.sessions() as session:
        rows = await session.execute(select(Job.prompt).order_by(Job.id))
        return list(rows.scalars())


async def _job_ids(harness: Harness, count: int, skip: int = 0) -> list[int]:
    """The ids of the first ``count`` jobs, after ``skip``."""
    ids = []
    for job_id in range(1, count + 1):
        job = await store.get_job(harness.bot.storage.sessions, job_id)
        assert job is not None
        ids.append(job.id)
    return ids[skip:]


def _button_label(message: StoredMessage) -> str:
    for row in message.components:
        for component in row.get("components", []):
            return str(component.get("label"))
    return ""


# --- after a restart, and when nobody can be reached --------------------------------------------


INTERRUPTED = CATALOG.text("status.interrupted")


async def _interrupted_by_a_restart(
    fake: FakeDiscord,
    api: FakeImagesAPI,
    settings: Settings,
    requester: FakeMember,
    *,
    expire: bool = False,
) -> InteractionHandle:
    """Bot #1 stops while a request of ``requester`` runs (a crash, as far as the job goes)."""
    api.delay = 30.0
    async with run_bot(fake, api, settings) as first:
        handle = await imagine(first, "cut short", requester)
        await running(first)
        if expire:
            fake.expire_interaction(handle)
    api.delay = 0.0
    return handle


async def test_retry_after_a_restart_is_the_requesters_and_runs_once(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory(jobs=JobsSettings(concurrency=1))
    bob, carol = fake.user, fake.add_member(fake.guild, "carol")
    cut = await _interrupted_by_a_restart(fake, api, settings, bob)
    async with run_bot(fake, api, settings) as second:
        notice = await status(cut, lambda text: text == INTERRUPTED)
        (retry_id,) = notice.custom_ids
        assert retry_id.startswith("ib:retry:")

        refused = await fake.click(notice, retry_id, user=carol)
        assert (await refused.wait_message()).content == error(NotRequester())

        clicks = await asyncio.gather(*(fake.click(notice, retry_id, user=bob) for _ in range(2)))
        answers = await asyncio.gather(
            *(
                c.wait_message(lambda m: m.content in (DONE, error(ResultGone())), 10)
                for c in clicks
            )
        )
        assert sorted(m.content for m in answers) == sorted([DONE, error(ResultGone())])
        await second.idle()
        late = await fake.click(notice, retry_id, user=bob)  # once it is done, too
        assert (await late.wait_message()).content == error(ResultGone())
        await second.idle()
    prompts = [r.body["prompt"] for r in api.requests]
    assert prompts == ["cut short", "cut short"]  # the killed attempt, then one retry
    async with run_bot(fake, api, settings) as third:
        rows = [await store.get_job(third.bot.storage.sessions, i) for i in (1, 2)]
    assert [(j.status, j.n_charged, j.command) for j in rows if j] == [
        (JobStatus.INTERRUPTED, 0, "imagine"),
        (JobStatus.DELIVERED, 1, "retry"),
    ]
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_an_interruption_after_the_token_expired_is_told_in_the_channel(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory(jobs=JobsSettings(concurrency=1))
    await _interrupted_by_a_restart(fake, api, settings, fake.user, expire=True)
    async with run_bot(fake, api, settings) as second:
        notice = await fake.wait_for_message(lambda m: INTERRUPTED in m.content)
        assert notice.content == f"{fake.user.mention} {INTERRUPTED}"
        assert notice.pinged_ids == [fake.user.id]
        (retry_id,) = notice.custom_ids
        click = await fake.click(notice, retry_id, user=fake.user)
        assert (await click.response()).ephemeral
        result = await second.result(lambda m: m.embeds[0].get("description") == "cut short")
        assert result.pinged_ids == [fake.user.id]
        await second.idle()
    assert fake.spec_violations == [] and api.spec_violations == []


def _cut_off(fake: FakeDiscord) -> FakeMember:
    """A member nothing can reach: no follow-up, no channel post, no DM."""
    hermit = fake.add_member(fake.guild, "hermit", accepts_dms=False)
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    fake.fail_next("POST", r"/webhooks/", 404, 10015, "Unknown Webhook", times=100)
    return hermit


def _reachable_again(fake: FakeDiscord) -> None:
    """The channel opens again (the follow-up webhook stays refused)."""
    fake.set_bot_permissions(
        fake.channel,
        P.VIEW_CHANNEL | P.SEND_MESSAGES | P.EMBED_LINKS | P.ATTACH_FILES | P.READ_MESSAGE_HISTORY,
    )


async def _once_delivered(harness: Harness, job_id: int) -> Job:
    """The job once its delivery is recorded (a moment after its post), within 5 seconds."""
    async with asyncio.timeout(5):
        while True:
            job = await store.get_job(harness.bot.storage.sessions, job_id)
            assert job is not None
            if job.status is JobStatus.DELIVERED:
                return job
            await asyncio.sleep(0.02)


async def test_a_result_nobody_could_receive_is_posted_when_discord_lets_it(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with run_bot(fake, api, settings_factory()) as harness:
        harness.bot.delivery.redelivery_delays = (0.5, 0.5)
        hermit = _cut_off(fake)
        await fake.flush()
        kept = await imagine(harness, "kept", hermit)
        await kept.wait_message()  # queued (its status is an edit: not refused)
        await harness.idle()
        job = await store.get_job(harness.bot.storage.sessions, 1)
        assert job is not None and job.status is JobStatus.SUCCEEDED  # kept, not dropped
        _reachable_again(fake)
        await fake.flush()
        result = await harness.result(timeout=5)
        assert result.source == "channel" and result.pinged_ids == [hermit.id]
        job = await _once_delivered(harness, 1)  # recorded a moment after the post
        assert job.result_message_id == result.id
    assert len(api.requests) == 1  # posted again, never made again


@in_memory_queue  # shared: posted at most once, by the process that made it (its retries)
async def test_a_kept_result_is_posted_after_a_restart_without_a_new_request(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory()
    async with run_bot(fake, api, settings) as first:
        hermit = _cut_off(fake)
        await fake.flush()
        kept = await imagine(first, "kept", hermit)
        await kept.wait_message()
        await first.idle()
    _reachable_again(fake)
    async with run_bot(fake, api, settings) as second:
        result = await second.result()
        assert result.source == "channel" and result.pinged_ids == [hermit.id]
        assert result.embeds[0]["description"] == "kept"
        job = await _once_delivered(second, 1)
        assert (job.n_charged, job.n_delivered) == (1, 1)
    assert len(api.requests) == 1
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_a_request_further_back_than_the_cap_shows_cap_plus_ahead(
    line: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Positions are counted only up to a cap (1,000; 2 here): beyond it, "2+ ahead"."""
    monkeypatch.setattr("bot.jobs.dispatcher.POSITION_CAP", 2)
    far = re.compile(
        re.escape(CATALOG.template("status.queued_far") or "")
        .replace(re.escape("{ahead}"), "2")
        .replace(re.escape("{eta}"), r"<t:\d+:R>")
    )
    people = members(line.fake, 4)
    await imagine(line, "runs", people[0])
    await running(line)
    second = await imagine(line, "second", people[1])
    third = await imagine(line, "third", people[2])
    fourth = await imagine(line, "fourth", people[3])
    await status(second, queued_at(1))
    await status(third, queued_at(2))
    await status(fourth, lambda text: far.fullmatch(text) is not None)
    # the queue moves: the fourth is counted again once it is within the cap
    await status(fourth, queued_at(2))
    for handle in (second, third, fourth):
        await status(handle, lambda text: text == DONE)
    await line.idle()
