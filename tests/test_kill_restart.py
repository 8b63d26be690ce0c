"""The bot process is killed (SIGKILL) mid-queue and started again on the same database.

Nothing is lost: every queued job runs after the restart, the job that was running is reported
to its requester with a Retry button (which works), nothing is charged for it, and no job is
generated twice. This is ``python -m bot run`` as an operator starts it, against the fakes.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from bot.db import create_engine, create_sessionmaker
from bot.db.models import Job, JobStatus
from bot.discord.i18n import Catalog
from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle, StoredMessage
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import scratch_database_url
from tests import bot_process as process
from tests.bot_process import BotProcess, bot_env, bot_process

CATALOG = Catalog.load()
DONE = CATALOG.text("status.done")
INTERRUPTED = CATALOG.text("status.interrupted")
QUEUED_PREFIX = (CATALOG.template("status.queued") or "").split("{", 1)[0]
PRICE = 16_000  # dall-e-2 at 256x256, micro-dollars


def write_config(
    tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI, database_url: str | None = None
) -> Path:
    return process.write_config(
        tmp_path,
        fake,
        api,
        provider_extra="images_per_minute = 10000\n",
        jobs_extra="concurrency = 1\n",
        database_url=database_url,
    )


async def started(fake: FakeDiscord, bot: BotProcess, ready_before: int) -> None:
    """The process connected to the gateway (its jobs were picked up before that)."""
    try:
        await fake.wait_ready(count=ready_before + 1, timeout=15)
        await fake.state.pulse.wait_until(
            lambda: True if fake.commands else None, 10, lambda: "the command sync"
        )
    except BaseException:
        print(bot.output)
        raise


async def ask(fake: FakeDiscord, prompt: str, user: FakeMember) -> InteractionHandle:
    channel = next(c for c in user.guild.channels)
    handle = await fake.slash(
        "imagine", {"prompt": prompt, "size": "256x256"}, user=user, channel=channel
    )
    assert (await handle.response()).ephemeral
    return handle


async def shows(
    handle: InteractionHandle,
    wanted: str | Callable[[str], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> StoredMessage:
    """The private status message once it says ``wanted`` (a text, or a test of the text)."""
    check = wanted if callable(wanted) else wanted.__eq__
    return await handle.wait_message(lambda m: m.ephemeral and check(m.content), timeout=timeout)


def result_for(fake: FakeDiscord, prompt: str) -> list[StoredMessage]:
    return [
        m
        for m in fake.state.messages.values()
        if m.attachments
        and not m.ephemeral
        and m.embeds
        and m.embeds[0].get("description") == prompt
    ]


async def test_a_killed_bot_loses_nothing_and_repeats_nothing(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    other_guild = fake.add_guild("Second Server")
    fake.add_channel(other_guild, "art")
    carol = fake.add_member(other_guild, "carol")
    bob = fake.user
    alice = fake.admin
    config = write_config(tmp_path, fake, api)
    env = bot_env(fake.token, api.api_key)
    api.delay = 1.0

    # --- the first process: one job running, three waiting, then SIGKILL ----------------------
    async with bot_process("run", config, env) as first:
        await started(fake, first, fake.gateway.ready_count)
        cut = await ask(fake, "cut short", bob)
        async with asyncio.timeout(10):
            while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.01)
        waiting = {
            "from carol": await ask(fake, "from carol", carol),
            "from alice": await ask(fake, "from alice", alice),
            "carol again": await ask(fake, "carol again", carol),
        }
        for handle in waiting.values():  # admitted and stored: their place is shown
            await shows(handle, lambda text: text.startswith(QUEUED_PREFIX))
        assert len(api.requests) == 1
        first.process.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    assert "Traceback" not in first.output

    # --- the second process, same database ----------------------------------------------------
    api.delay = 0.2
    async with bot_process("run", config, env) as second:
        try:
            await started(fake, second, fake.gateway.ready_count)
            notice = await shows(cut, INTERRUPTED)
            (retry_id,) = notice.custom_ids
            assert re.fullmatch(r"ib:retry:\d+", retry_id)
            for prompt, handle in waiting.items():
                await shows(handle, DONE)
                (result,) = result_for(fake, prompt)
                assert result.pinged_ids == [handle.record.user.id]

            # Retry is the requester's: it runs the interrupted request once more
            click = await fake.click(notice, retry_id, user=bob)
            assert (await click.response()).ephemeral
            await shows(click, DONE)
            async with asyncio.timeout(10):
                while not result_for(fake, "cut short"):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            (retried,) = result_for(fake, "cut short")
            assert retried.pinged_ids == [bob.id]
        except BaseException:
            print(second.output)
            raise
        assert await second.stop() == 0, second.output
    assert "Traceback" not in second.output

    # the provider made each request's images once; the interrupted one was asked twice, the
    # first time by the killed process (never answered), the second time by Retry
    prompts = Counter(r.body["prompt"] for r in api.requests)
    assert prompts == {"cut short": 2, "from carol": 1, "from alice": 1, "carol again": 1}
    # the queued jobs ran in their fair order after the restart (guilds take turns)
    after_kill = [r.body["prompt"] for r in api.requests[1:4]]
    assert after_kill[0] == "from carol" and set(after_kill) == set(waiting)

    engine = create_engine(scratch_database_url(tmp_path))
    try:
        async with create_sessionmaker(engine)() as session:
            jobs = list((await session.execute(select(Job).order_by(Job.id))).scalars())
    finally:
        await engine.dispose()
    by_prompt = {(job.prompt, job.command): job for job in jobs}
    assert len(jobs) == 5
    interrupted = by_prompt[("cut short", "imagine")]
    assert interrupted.status is JobStatus.INTERRUPTED
    # possibly billed by the provider: the estimate stays as spend, no member is charged
    assert (interrupted.n_charged, interrupted.cost_micro_usd) == (0, PRICE)
    assert interrupted.possibly_billed
    retry = by_prompt[("cut short", "retry")]
    assert retry.source_job_id == interrupted.id and retry.user_id == bob.id
    for job in jobs:
        if job is interrupted:
            continue
        assert not job.possibly_billed
        assert job.status is JobStatus.DELIVERED, job.prompt
        assert job.n_charged == job.n_delivered == 1
        assert job.cost_micro_usd == PRICE
    assert (
        sum(job.n_charged for job in jobs)
        == 4
        == len([m for m in fake.state.messages.values() if m.attachments and not m.ephemeral])
    )
    assert fake.spec_violations == [] and api.spec_violations == []


# --- a burst of requests, killed at random moments -----------------------------------------------

BURST = 20


def burst_config(tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI) -> Path:
    """Room for the whole burst: no member or guild cap refuses any of it."""
    path = write_config(tmp_path, fake, api)
    text = path.read_text(encoding="utf-8").replace(
        "concurrency = 1\n",
        "concurrency = 2\nmax_queued_per_member = 100\nmax_queued_per_guild = 1000\n"
        "member_requests_per_minute = 1000\n",
    )
    path.write_text(text, encoding="utf-8")
    return path


def ended(handle: InteractionHandle) -> bool:
    """The member's private message says how the request ended (done, interrupted or why not)."""
    for message in handle.messages:
        if message.deleted or message.loading or not message.ephemeral:
            continue
        text = message.content
        if text and not text.startswith(QUEUED_PREFIX) and text != WORKING:
            return True
    return False


WORKING = CATALOG.text("status.working", n=1)


def deferred(handles: list[InteractionHandle], count: int) -> bool | None:
    return True if sum(h.response_type == 5 for h in handles) >= count else None


def all_ended(handles: list[InteractionHandle]) -> bool | None:
    return True if all(ended(h) for h in handles) else None


async def test_every_acknowledged_request_of_a_killed_burst_ends(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """SIGKILL right after the k-th "thinking…" of a 20-request burst, for a few seeded k.

    After the restart every request the bot acknowledged ends: with its images, or with a clear
    message (an interrupted one with Retry). Nothing is made twice.
    """
    from bot.testing.images import png_bytes

    fake, api = fake_discord, fake_images_api
    api.delay = 0.3
    env = bot_env(fake.token, api.api_key)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    for point in sorted(random.Random(8).sample(range(1, BURST + 1), 3)):
        run = tmp_path / f"kill-after-{point}"
        run.mkdir()
        config = burst_config(run, fake, api)
        async with bot_process("run", config, env) as first:
            await started(fake, first, fake.gateway.ready_count)
            channel = next(iter(fake.user.guild.channels))
            sends = []
            for i in range(BURST):
                prompt = f"burst {point} {i}"
                if i % 4 == 3:  # an upload to read again after the restart
                    upload = fake.add_attachment(picture, f"room{i}.png")
                    sends.append(fake.slash("edit", {"prompt": prompt, "image": upload}))
                else:
                    options = {"prompt": prompt, "size": "256x256"}
                    sends.append(fake.slash("imagine", options, channel=channel))
            handles = dict(
                zip(
                    (f"burst {point} {i}" for i in range(BURST)),
                    [await send for send in sends],
                    strict=True,
                )
            )
            await fake.state.pulse.wait_until(
                functools.partial(deferred, list(handles.values()), point), 10, lambda: "defers"
            )
            first.process.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        acknowledged = {p: h for p, h in handles.items() if h.response_type == 5}
        assert len(acknowledged) >= point

        api.delay = 0.05
        async with bot_process("run", config, env) as second:
            try:
                await started(fake, second, fake.gateway.ready_count)
                await fake.state.pulse.wait_until(
                    functools.partial(all_ended, list(acknowledged.values())), 30, lambda: "ends"
                )
            except BaseException:
                print(second.output)
                print({p: [m.content for m in h.messages] for p, h in acknowledged.items()})
                raise
            finally:
                api.delay = 0.3
            # discord.py is still collecting guilds for a moment after connecting: a stop
            # then logs its cancelled task's traceback, which is not what this test is about
            async with asyncio.timeout(10):
                while "connected as" not in second.output:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert await second.stop() == 0, second.output
        assert "Traceback" not in second.output
        for prompt, handle in acknowledged.items():
            texts = [m.content for m in handle.messages if m.ephemeral and not m.loading]
            if DONE in texts:
                # a kill between posting a result and recording it posts it again (known)
                results = result_for(fake, prompt)
                assert 1 <= len(results) <= 2, prompt
                assert results[0].pinged_ids == [handle.record.user.id]
            else:  # the one the provider was working on when the bot died
                assert INTERRUPTED in texts, (prompt, texts)
        made = Counter(r.body.get("prompt") for r in api.requests)
        assert all(made[p] <= 1 for p in handles), made
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_requests_killed_while_their_uploads_download_are_finished_after_a_restart(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """Killed while reading two uploads: after the restart one is queued, one is told why not.

    The second upload is gone from the CDN by then: its member reads the reason in place of
    "thinking…", and nothing is asked of the provider for it.
    """
    from bot.testing.images import png_bytes

    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api)
    env = bot_env(fake.token, api.api_key)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    kept, gone = fake.add_attachment(picture, "kept.png"), fake.add_attachment(picture, "gone.png")
    fake.cdn_gate = asyncio.Event()  # the downloads hang until the process is gone
    async with bot_process("run", config, env) as first:
        await started(fake, first, fake.gateway.ready_count)
        handles = {
            "kept": await fake.slash("edit", {"prompt": "kept", "image": kept}),
            "gone": await fake.slash("edit", {"prompt": "gone", "image": gone}),
        }
        for handle in handles.values():
            assert (await handle.response()).type == 5
        await fake.state.pulse.wait_until(
            lambda: True if len(fake.cdn_requests) >= 2 else None, 5, lambda: "the downloads"
        )
        first.process.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    del fake.state.blobs[int(gone["id"])]
    fake.cdn_gate.set()
    fake.cdn_gate = None

    async with bot_process("run", config, env) as second:
        try:
            await started(fake, second, fake.gateway.ready_count)
            await shows(handles["kept"], DONE)
            (result,) = result_for(fake, "kept")
            assert result.pinged_ids == [handles["kept"].record.user.id]
            await shows(handles["gone"], CATALOG.text("error.upload_unavailable"))
        except BaseException:
            print(second.output)
            raise
        async with asyncio.timeout(10):
            while "connected as" not in second.output:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert await second.stop() == 0, second.output
    assert "Traceback" not in second.output
    assert [r.body.get("prompt") for r in api.requests] == ["kept"]
    assert result_for(fake, "gone") == []
    assert fake.spec_violations == [] and api.spec_violations == []
