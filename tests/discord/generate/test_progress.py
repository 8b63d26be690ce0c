"""Live progress in a running job's private status message, through the real Discord layer.

The bot runs against the fake Discord with a slow fake image API, so a job stays running while
the test hands the job's listener the updates a backend would report (a fraction, a step, a
preview) and watches the status message as the member sees it: the bar and the step, the
newest preview attached in place of the last, at most one edit per second, a 429 or a refused
edit that changes nothing for the job, and no progress edit once the result is posted. The
last test runs the whole way on an AUTOMATIC1111 backend: its own progress and previews.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.db.models import Job, JobStatus
from bot.discord.i18n import Catalog
from bot.jobs import store
from bot.providers.progress import ProgressUpdate
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, InteractionHandle, StoredMessage
from bot.testing.discord.rest import RequestRecord
from bot.testing.harness import Harness, a1111_backend, make_settings, run_bot
from bot.testing.images import colour_of, decode_image, png_bytes
from bot.testing.openai_api import FakeImagesAPI

CATALOG = Catalog.load()
DONE = CATALOG.text("status.done")
ORIGINAL_EDIT = "/messages/@original"


@pytest.fixture
async def running(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    """The bot with a 3 s image API: a job runs long enough to show progress."""
    async with run_bot(fake_discord, fake_images_api, settings_factory()) as harness:
        fake_images_api.delay = 3.0
        yield harness
        fake_images_api.delay = 0.0
    assert fake_discord.spec_violations == []


async def start_job(h: Harness) -> tuple[InteractionHandle, Job]:
    """/imagine, and the job once it runs (what the runner hands the listener)."""
    handle = await h.fake.slash("imagine", {"prompt": "a lighthouse"}, user=h.fake.user)
    runner = h.bot.runner
    for _ in range(200):
        if runner.running:
            break
        await asyncio.sleep(0.01)
    (job_id,) = runner.running
    job = await store.get_job(h.bot.storage.sessions, job_id)
    assert job is not None
    await handle.wait_message(lambda m: bool(m.content))  # "Making 1 image…" shown
    return handle, job


def pace(h: Harness, seconds: float) -> None:
    """Edits of a status as often as ``seconds`` (1 s with a preview, 2 s without in production)."""
    h.bot.delivery.status.progress_seconds = h.bot.delivery.status.text_seconds = seconds


def update(percent: int, preview: bytes | None = None) -> ProgressUpdate:
    return ProgressUpdate(percent / 100, f"step {percent}/100", percent, 100, preview=preview)


def progress_edits(fake: FakeDiscord) -> list[RequestRecord]:
    """The status edits that showed progress (they carry a percentage), in order."""
    return [
        r
        for r in fake.requests
        if r.method == "PATCH"
        and r.path.endswith(ORIGINAL_EDIT)
        and "%" in str((r.json or {}).get("content"))
    ]


def result_post(fake: FakeDiscord) -> RequestRecord:
    """The follow-up that posted the result (the one with files)."""
    (post,) = [r for r in fake.requests if r.method == "POST" and r.files and r.status == 200]
    return post


async def shows(handle: InteractionHandle, check: Callable[[StoredMessage], bool]) -> StoredMessage:
    return await handle.wait_message(check, timeout=5.0)


async def test_a_running_job_shows_its_progress_and_the_newest_preview(running: Harness) -> None:
    h = running
    pace(h, 0.2)
    handle, job = await start_job(h)
    red, blue = png_bytes(32, 32, (200, 0, 0)), png_bytes(32, 32, (0, 0, 200))

    h.bot.delivery.job_progress(job, update(45, red))
    first = await shows(handle, lambda m: "45%" in m.content)
    assert "step 45 of 100" in first.content
    assert CATALOG.text("status.working", n=1) in first.content
    assert [a.filename for a in first.attachments] == ["preview.png"]
    assert colour_of(first.attachments[0].data) == (200, 0, 0)

    # A newer preview replaces the last: one attachment, the new picture.
    h.bot.delivery.job_progress(job, update(70, blue))
    second = await shows(handle, lambda m: "70%" in m.content)
    assert [colour_of(a.data) for a in second.attachments] == [(0, 0, 200)]

    # An update without a preview moves the bar and keeps the picture.
    h.bot.delivery.job_progress(job, update(90))
    third = await shows(handle, lambda m: "90%" in m.content)
    assert [colour_of(a.data) for a in third.attachments] == [(0, 0, 200)]

    result = await h.result()
    assert len(result.attachments) == 1
    done = await shows(handle, lambda m: m.content == DONE)
    assert done.attachments == []  # "done" stands alone: the preview went with the progress


async def test_nonsense_from_a_backend_still_shows_a_sane_status(running: Harness) -> None:
    """A fraction that is not a number and an endless estimate (a server's division by zero):
    the member sees 0% and no end time, and the next update shows as usual."""
    h = running
    pace(h, 0.2)
    handle, job = await start_job(h)
    h.bot.delivery.job_progress(job, ProgressUpdate(math.nan, "?", eta_seconds=math.inf))
    odd = await shows(handle, lambda m: "%" in m.content)
    assert "` 0%" in odd.content and "<t:" not in odd.content
    h.bot.delivery.job_progress(job, ProgressUpdate(0.5, "step 10/20", 10, 20, eta_seconds=30))
    sane = await shows(handle, lambda m: "50%" in m.content)
    assert "step 10 of 20" in sane.content and "<t:" in sane.content
    await h.result()


async def test_progress_edits_come_at_most_once_a_second_showing_the_newest(
    running: Harness,
) -> None:
    """A backend reporting 20 times a second gets an edit a second while it sends previews,
    one every two seconds while only the bar moves (the production pace), and the last edit
    shows the last update, not one of those in between (the last one is shown by a timer:
    nothing follows it)."""
    h = running
    assert (h.bot.delivery.status.progress_seconds, h.bot.delivery.status.text_seconds) == (1, 2)
    h.api.delay = 10.0
    handle, job = await start_job(h)
    for percent in range(1, 41):  # 2 s of updates, each with a new preview
        h.bot.delivery.job_progress(job, update(percent, png_bytes(8, 8, (percent, 0, 0))))
        await asyncio.sleep(0.05)
    last = await shows(handle, lambda m: "40%" in m.content)
    assert [colour_of(a.data) for a in last.attachments] == [(40, 0, 0)]
    with_previews = progress_edits(h.fake)
    for percent in range(41, 101):  # 3 s of updates without previews
        h.bot.delivery.job_progress(job, update(percent))
        await asyncio.sleep(0.05)
    await shows(handle, lambda m: "100%" in m.content)
    edits = progress_edits(h.fake)
    text_only = edits[len(with_previews) :]
    assert 2 <= len(with_previews) <= 3, [e.json for e in with_previews]
    assert min(gaps(with_previews)) >= 0.9, gaps(with_previews)
    assert all(not e.files for e in text_only) and 1 <= len(text_only) <= 3
    assert min(gaps(edits[len(with_previews) - 1 :])) >= 1.9, gaps(edits)
    await h.result()


def gaps(edits: list[RequestRecord]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(edits)]


async def test_a_429_on_an_edit_is_waited_out_and_the_next_edit_is_the_newest(
    running: Harness,
) -> None:
    h = running
    pace(h, 0.2)
    handle, job = await start_job(h)
    h.fake.fail_next("PATCH", ORIGINAL_EDIT, 429, 0, "You are being rate limited.", retry_after=0.5)
    await asyncio.sleep(0.3)  # the pace after "Making 1 image…" has passed: the next goes at once
    h.bot.delivery.job_progress(job, update(10))
    await asyncio.sleep(0.1)  # the edit is waiting out its 429
    for percent in (20, 30, 40):
        h.bot.delivery.job_progress(job, update(percent))
    await shows(handle, lambda m: "40%" in m.content)
    statuses = [(r.status, str(r.json["content"]).count("40%")) for r in progress_edits(h.fake)]
    # the refused edit, its retry (discord.py's), then straight to the newest state
    assert statuses == [(429, 0), (200, 0), (200, 1)]
    result = await h.result()
    assert len(result.attachments) == 1
    await shows(handle, lambda m: m.content == DONE)


async def test_refused_progress_edits_do_not_fail_the_job(running: Harness) -> None:
    h = running
    pace(h, 0.2)
    handle, job = await start_job(h)
    # Discord refuses the next two edits of the status (an invalid body, an outage...).
    h.fake.fail_next("PATCH", ORIGINAL_EDIT, 400, 50035, "Invalid Form Body", times=2)
    h.bot.delivery.job_progress(job, update(10, png_bytes(32, 32)))
    await asyncio.sleep(0.4)
    h.bot.delivery.job_progress(job, update(20))
    await asyncio.sleep(0.4)
    assert [r.status for r in progress_edits(h.fake)] == [400, 400]
    h.bot.delivery.job_progress(job, update(30))
    await shows(handle, lambda m: "30%" in m.content)
    result = await h.result()
    assert len(result.attachments) == 1
    await shows(handle, lambda m: m.content == DONE)
    await h.idle()
    finished = await store.get_job(h.bot.storage.sessions, job.id)
    assert finished is not None and finished.status is JobStatus.DELIVERED


async def test_no_progress_edit_lands_after_the_result(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """Updates keep coming while the result is posted, and one edit is waiting out a 429 when
    the images are ready: every progress edit reaches Discord before the result, none after
    it or after "done"."""
    async with run_bot(fake_discord, fake_images_api, settings_factory()) as h:
        pace(h, 0.1)
        fake_images_api.delay = 1.0
        handle, job = await start_job(h)
        stop = asyncio.Event()

        async def backend() -> None:
            percent = 0
            while not stop.is_set():
                percent = min(percent + 1, 99)
                h.bot.delivery.job_progress(job, update(percent, png_bytes(8, 8, (percent, 0, 0))))
                await asyncio.sleep(0.01)

        reporter = asyncio.create_task(backend())
        try:
            await asyncio.sleep(0.5)
            # The next edit is refused with a retry_after outlasting the job's last 0.5 s.
            fake_discord.fail_next("PATCH", ORIGINAL_EDIT, 429, 0, "rate limited", retry_after=0.8)
            result = await h.result()
            await shows(handle, lambda m: m.content == DONE)
            await asyncio.sleep(0.5)  # updates still coming: none may be shown now
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        posted = result_post(fake_discord)
        edits = progress_edits(fake_discord)
        assert any(r.status == 429 for r in edits)
        assert edits and all(r.at < posted.at for r in edits)
        last_edit = [r for r in fake_discord.requests if r.method == "PATCH"][-1]
        assert last_edit.json["content"] == DONE
        assert handle.original is not None and handle.original.content == DONE
        assert result.attachments
        await h.idle()
    assert fake_discord.spec_violations == []


async def test_an_automatic1111_job_shows_previews_before_its_result_and_none_after(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """End to end on ``[provider] type = "automatic1111"``: the backend's own progress and
    live previews reach the member's status message while the image forms, then the result,
    then "done" alone."""
    async with FakeAutomatic1111(step_delay=0.1) as sd:
        sd.options["show_progress_every_n_steps"] = 4  # 20 steps: previews at 4, 8, 12...
        settings = make_settings(tmp_path, fake_discord, fake_images_api, **a1111_backend(sd))
        async with run_bot(fake_discord, fake_images_api, settings, a1111=sd) as h:
            handle = await h.fake.slash("imagine", {"prompt": "a lighthouse"}, user=h.fake.user)
            result = await h.result(timeout=30)
            await shows(handle, lambda m: m.content == DONE)
            await h.idle()
        assert len(result.attachments) == 1
        posted = result_post(fake_discord)
        edits = progress_edits(fake_discord)
        with_preview = [e for e in edits if e.files]
        assert with_preview, [e.json for e in edits]
        assert len(sd.runs[-1].previews) >= len(with_preview)
        for edit in with_preview:
            (upload,) = edit.files
            assert upload.filename == "preview.png" and decode_image(upload.data).size == (512, 512)
        assert all(e.at < posted.at for e in edits)
        after = [r for r in fake_discord.requests if r.method == "PATCH" and r.at > posted.at]
        assert [r.json["content"] for r in after] == [DONE]
        assert handle.original is not None and handle.original.attachments == []
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []


async def test_a_progress_update_the_discord_layer_cannot_take_never_fails_the_job(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in showing progress (here: the status board raising on every update) is logged
    once for the job, and the member gets the images as if nothing happened."""
    async with FakeAutomatic1111(step_delay=0.1) as sd:
        sd.options["show_progress_every_n_steps"] = 2
        settings = make_settings(tmp_path, fake_discord, fake_images_api, **a1111_backend(sd))
        async with run_bot(fake_discord, fake_images_api, settings, a1111=sd) as h:
            calls = 0

            def broken(job: Job, update: ProgressUpdate) -> None:
                nonlocal calls
                calls += 1
                raise RuntimeError("status board bug")

            h.bot.delivery.status.progress = broken  # type: ignore[method-assign]
            handle = await h.fake.slash("imagine", {"prompt": "a lighthouse"}, user=h.fake.user)
            result = await h.result(timeout=30)
            await shows(handle, lambda m: m.content == DONE)
            await h.idle()
        assert len(result.attachments) == 1
        assert calls >= 2  # the backend went on reporting; each update was handed over
        failures = [r for r in caplog.records if "showing progress failed" in r.getMessage()]
        assert len(failures) == 1
    assert fake_discord.spec_violations == []


async def test_a_gpt_image_job_shows_its_partial_images_before_its_result(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """``partial_images = 2`` on gpt-image-1: each partial image the API streams reaches the
    member's status message as a preview while the job runs, then the result, then "done"
    alone."""
    settings = settings_factory(model="gpt-image-1")
    provider = dataclasses.replace(settings.provider, partial_images=2)
    fake_images_api.stream_interval = 0.5  # between the streamed events: time to show each
    settings = dataclasses.replace(settings, provider=provider)
    async with run_bot(fake_discord, fake_images_api, settings) as h:
        pace(h, 0.2)
        options = {"prompt": "a kite", "size": "1024x1024", "quality": "low"}
        handle = await h.fake.slash("imagine", options, user=h.fake.user)
        result = await h.result(timeout=30)
        await shows(handle, lambda m: m.content == DONE)
        await h.idle()
    assert len(result.attachments) == 1
    sent = fake_images_api.requests[0].body
    assert (sent["stream"], sent["partial_images"]) == (True, 2)
    posted = result_post(fake_discord)
    previews = [
        r
        for r in fake_discord.requests
        if r.method == "PATCH" and r.path.endswith(ORIGINAL_EDIT) and r.files
    ]
    assert 1 <= len(previews) <= 2, [r.json for r in previews]
    for edit in previews:
        (upload,) = edit.files
        assert upload.filename.startswith("preview.")
        assert decode_image(upload.data).size == (1024, 1024)  # a partial of the asked size
        assert edit.at < posted.at
    after = [r for r in fake_discord.requests if r.method == "PATCH" and r.at > posted.at]
    assert [r.json["content"] for r in after] == [DONE]
    assert handle.original is not None and handle.original.attachments == []
    assert fake_discord.spec_violations == [] and fake_images_api.spec_violations == []
