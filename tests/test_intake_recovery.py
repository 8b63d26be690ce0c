"""Acknowledged requests a SIGKILLed process left unfinished, finished by the next process.

Two cases the burst test in tests/test_kill_restart.py does not reach: a request whose
interaction token died while the bot was down (over 15 minutes) is answered in the channel,
never through the dead token; and the requests of Redo, Remix and Retry, whose images are the
source job's stored inputs rather than uploads, are made from those inputs. Each on SQLite
and on PostgreSQL. On SQLite such a request, with nothing to download, is admitted as its job
before it is acknowledged (the job's row is its durable record); on PostgreSQL's shared queue
it is an intake until its job is admitted.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from bot.db import create_engine, create_sessionmaker
from bot.db.models import Intake, Job, JobStatus
from bot.quotas.member_defaults import save_defaults
from bot.testing.discord import FakeDiscord, InteractionHandle
from bot.testing.discord.models import walk_components
from bot.testing.harness import job_id_of
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import BotProcess, bot_env, bot_process
from tests.test_kill_restart import (
    CATALOG,
    DONE,
    INTERRUPTED,
    result_for,
    shows,
    started,
    write_config,
)

UNAVAILABLE = CATALOG.text("error.upload_unavailable")


async def intakes_of(url: str) -> list[Intake]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.execute(select(Intake))).scalars())
    finally:
        await engine.dispose()


async def queued_commands(url: str) -> list[str]:
    """The commands of the jobs waiting in the queue, sorted."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await session.execute(select(Job.command).where(Job.status == JobStatus.QUEUED))
            return sorted(found.scalars())
    finally:
        await engine.dispose()


async def age_intakes(url: str, age: timedelta) -> None:
    """The intakes' interactions happened ``age`` ago (the bot was down that long)."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            old = datetime.now(UTC) - age
            await session.execute(update(Intake).values(interaction_at=old))
    finally:
        await engine.dispose()


async def stop(fake: FakeDiscord, bot: BotProcess) -> None:
    # discord.py is still collecting guilds for a moment after connecting (see test_kill_restart)
    async with asyncio.timeout(10):
        while "connected as" not in bot.output:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert await bot.stop() == 0, bot.output
    assert "Traceback" not in bot.output


async def kill(bot: BotProcess) -> None:
    bot.process.send_signal(signal.SIGKILL)
    assert await bot.wait() == -signal.SIGKILL


def channel_notes(fake: FakeDiscord, user_id: int) -> list[str]:
    """The public text messages the bot addressed to the member (no images)."""
    return [
        m.content
        for m in fake.state.messages.values()
        if not m.ephemeral and not m.attachments and m.content.startswith(f"<@{user_id}>")
    ]


async def test_requests_whose_token_died_during_the_restart_are_answered_in_the_channel(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, database_url: str
) -> None:
    """Killed while reading two uploads; the bot is down 20 minutes, the tokens are dead.

    After the restart one request is made and posted in the channel for its member; the other
    (its upload gone) is told why in the channel. Nothing is sent through the dead tokens.
    """
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api, database_url)
    env = bot_env(fake.token, api.api_key)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    kept, gone = fake.add_attachment(picture, "kept.png"), fake.add_attachment(picture, "gone.png")
    fake.cdn_gate = asyncio.Event()  # the downloads hang until the process is gone
    async with bot_process("run", config, env) as first:
        await started(fake, first, fake.gateway.ready_count)
        handles = {
            "kept": await fake.slash("edit", {"prompt": "kept", "image": kept}),
            "gone": await fake.slash("edit", {"prompt": "gone", "image": gone}, user=fake.admin),
        }
        for handle in handles.values():
            assert (await handle.response()).type == 5
        await fake.state.pulse.wait_until(
            lambda: True if len(fake.cdn_requests) >= 2 else None, 5, lambda: "the downloads"
        )
        await kill(first)
    del fake.state.blobs[int(gone["id"])]
    fake.cdn_gate.set()
    fake.cdn_gate = None
    assert len(await intakes_of(database_url)) == 2
    await age_intakes(database_url, timedelta(minutes=20))
    for handle in handles.values():
        fake.expire_interaction(handle)
    tokens = [handle.token for handle in handles.values()]
    calls_before = len(fake.requests)

    async with bot_process("run", config, env) as second:
        try:
            await started(fake, second, fake.gateway.ready_count)
            await fake.state.pulse.wait_until(
                lambda: True if result_for(fake, "kept") else None, 10, lambda: "the result"
            )
            (result,) = result_for(fake, "kept")
            assert result.source == "channel"
            assert result.pinged_ids == [fake.user.id]
            admin = fake.admin.id
            await fake.state.pulse.wait_until(
                lambda: True if channel_notes(fake, admin) else None, 10, lambda: "the refusal"
            )
            assert channel_notes(fake, admin) == [f"<@{admin}> {UNAVAILABLE}"]
        except BaseException:
            print(second.output)
            raise
        await stop(fake, second)
    after = fake.requests[calls_before:]
    assert not [r.path for r in after if any(token in r.path for token in tokens)]
    assert await intakes_of(database_url) == []
    assert [r.body.get("prompt") for r in api.requests] == ["kept"]
    assert fake.spec_violations == [] and api.spec_violations == []


def remix_input_id(click: InteractionHandle) -> str:
    assert click.modal is not None
    (text_input,) = [c for c in walk_components(click.modal["components"]) if c.get("type") == 4]
    return str(text_input["custom_id"])


async def test_redo_remix_and_retry_killed_before_they_were_queued_run_after_a_restart(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, database_url: str
) -> None:
    """Redo and Remix of an edited image, and Retry of an interrupted edit, each acknowledged
    ("thinking…") when the process is killed, before any of them has run: on SQLite each is a
    queued job already, on PostgreSQL an intake. After the restart each is made from the
    source job's stored upload and its member sees it done."""
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api, database_url)
    env = bot_env(fake.token, api.api_key)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    alice, bob = fake.admin, fake.user

    # --- 1: an edit posted, another one killed while the provider works on it ------------------
    async with bot_process("run", config, env) as first:
        await started(fake, first, fake.gateway.ready_count)
        upload = fake.add_attachment(picture, "room.png")
        made = await fake.slash("edit", {"prompt": "a red room", "image": upload}, user=bob)
        await shows(made, DONE)
        (source,) = result_for(fake, "a red room")
        api.delay = 30.0
        upload = fake.add_attachment(picture, "hall.png")
        cut = await fake.slash("edit", {"prompt": "a long hall", "image": upload}, user=bob)
        async with asyncio.timeout(10):
            while len(api.requests) < 2:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.01)
        await kill(first)
    api.delay = 0.0

    # --- 2: Redo, Remix and Retry acknowledged, then killed before they are queued -------------
    async with bot_process("run", config, env) as second:
        try:
            await started(fake, second, fake.gateway.ready_count)
            notice = await shows(cut, INTERRUPTED)
            (retry_id,) = notice.custom_ids
            job = job_id_of(source)
            remix = await fake.click(source, f"ib:remix:{job}", user=alice)
            assert (await remix.response()).type == 9
            # Discord takes each defer, but the bot never hears back: it hangs right after
            # its intake is stored and "thinking…" is shown, until the kill
            fake.callback_gate = asyncio.Event()
            asked = {
                "redo": await fake.click(source, f"ib:redo:{job}", user=alice),
                "remix": await fake.submit_modal(
                    remix, {remix_input_id(remix): "a blue room"}, user=alice
                ),
                "retry": await fake.click(notice, retry_id, user=bob),
            }
            await fake.state.pulse.wait_until(
                lambda: True if all(h.response_type == 5 for h in asked.values()) else None,
                10,
                lambda: "the defers",
            )
        except BaseException:
            print(second.output)
            raise
        await kill(second)
    fake.callback_gate.set()
    fake.callback_gate = None
    left = await intakes_of(database_url)
    if database_url.startswith("sqlite"):  # admitted before the defer: no intake needed
        assert left == []
        assert await queued_commands(database_url) == ["redo", "remix", "retry"]
    else:
        assert sorted(intake.command for intake in left) == ["redo", "remix", "retry"]
        assert await queued_commands(database_url) == []
    calls_before = len(api.requests)

    # --- 3: each is made from the stored upload -------------------------------------------------
    async with bot_process("run", config, env) as third:
        try:
            await started(fake, third, fake.gateway.ready_count)
            for handle in asked.values():
                await shows(handle, DONE)
            await fake.state.pulse.wait_until(
                lambda: True if len(result_for(fake, "a red room")) == 2 else None,
                10,
                lambda: "the redo",
            )
        except BaseException:
            print(third.output)
            raise
        await stop(fake, third)
    redone = result_for(fake, "a red room")[1]
    (remixed,) = result_for(fake, "a blue room")
    (retried,) = result_for(fake, "a long hall")
    assert redone.pinged_ids == remixed.pinged_ids == [alice.id]
    assert retried.pinged_ids == [bob.id]
    made_now = api.requests[calls_before:]
    assert sorted(r.body.get("prompt") for r in made_now) == [
        "a blue room",
        "a long hall",
        "a red room",
    ]
    for request in made_now:
        sent = request.file("image")
        assert sent is not None and sent.data.startswith(b"\x89PNG"), request.body
    assert await intakes_of(database_url) == []
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_a_redo_killed_before_it_ran_survives_a_prune_only_once_it_is_a_job(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, database_url: str
) -> None:
    """Redo acknowledged, the process killed; the operator prunes before starting it again.

    On SQLite the redo was admitted before its "thinking…": its job holds its own copy of the
    upload, which the prune leaves (the job is the work itself), and it is made after the
    restart. On PostgreSQL it was still an intake pointing at the source job's upload, which
    the prune took: the member reads in place of "thinking…" that the result is too old, and
    nothing is asked of the provider (an edit without its image would be refused there, or
    worse, billed).
    """
    from tests.bot_process import run_cli

    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api, database_url)
    env = bot_env(fake.token, api.api_key)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    admitted_first = database_url.startswith("sqlite")
    async with bot_process("run", config, env) as first:
        await started(fake, first, fake.gateway.ready_count)
        upload = fake.add_attachment(picture, "room.png")
        made = await fake.slash("edit", {"prompt": "a red room", "image": upload})
        await shows(made, DONE)
        (source,) = result_for(fake, "a red room")
        fake.callback_gate = asyncio.Event()
        redo = await fake.click(source, f"ib:redo:{job_id_of(source)}", user=fake.admin)
        await fake.state.pulse.wait_until(
            lambda: True if redo.response_type == 5 else None, 10, lambda: "the defer"
        )
        await kill(first)
    fake.callback_gate.set()
    fake.callback_gate = None
    intakes = [intake.command for intake in await intakes_of(database_url)]
    assert intakes == ([] if admitted_first else ["redo"])
    assert await queued_commands(database_url) == (["redo"] if admitted_first else [])
    code, out, err = await run_cli("db", "prune", "--days", "0", "--config", str(config), env=env)
    assert code == 0 and "of 1 jobs" in out, (out, err)

    async with bot_process("run", config, env) as second:
        try:
            await started(fake, second, fake.gateway.ready_count)
            if admitted_first:
                await shows(redo, DONE)
            else:
                await shows(redo, CATALOG.text("error.result_too_old", days=30))
        except BaseException:
            print(second.output)
            raise
        await stop(fake, second)
    if admitted_first:
        assert [r.body.get("prompt") for r in api.requests] == ["a red room", "a red room"]
        sent = api.requests[1].file("image")
        assert sent is not None and sent.data.startswith(b"\x89PNG")
        assert len(result_for(fake, "a red room")) == 2
    else:
        assert len(api.requests) == 1
    assert await intakes_of(database_url) == []
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_private_requests_killed_before_they_were_queued_stay_private(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, database_url: str
) -> None:
    """Two private edits acknowledged, then the process is killed while it reads their
    uploads: one private by its option, one by its member's default, which the member turns
    off while the bot is down. The choice made when asked is kept with the intake: after the
    restart both results are ephemeral follow-ups, and the channel sees neither."""
    fake, api = fake_discord, fake_images_api
    config = write_config(tmp_path, fake, api, database_url)
    env = bot_env(fake.token, api.api_key)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    first_upload = fake.add_attachment(picture, "one.png")
    second_upload = fake.add_attachment(picture, "two.png")
    async with bot_process("run", config, env) as first:
        await started(fake, first, fake.gateway.ready_count)
        chose = await fake.slash("settings", {"private": True}, subcommand="set", user=fake.admin)
        await chose.wait_message()
        fake.cdn_gate = asyncio.Event()  # the downloads hang until the process is gone
        handles = [
            await fake.slash(
                "edit", {"prompt": "by option", "image": first_upload, "private": True}
            ),
            await fake.slash(
                "edit", {"prompt": "by default", "image": second_upload}, user=fake.admin
            ),
        ]
        for handle in handles:
            assert (await handle.response()).type == 5
        await fake.state.pulse.wait_until(
            lambda: True if len(fake.cdn_requests) >= 2 else None, 5, lambda: "the downloads"
        )
        await kill(first)
    fake.cdn_gate.set()
    fake.cdn_gate = None
    assert len(await intakes_of(database_url)) == 2
    engine = create_engine(database_url)
    try:  # the member changes their mind while the bot is down: the request was asked private
        await save_defaults(create_sessionmaker(engine), fake.admin.id, {"private": False})
    finally:
        await engine.dispose()

    async with bot_process("run", config, env) as second:
        try:
            await started(fake, second, fake.gateway.ready_count)
            results = [
                await handle.wait_message(lambda m: bool(m.attachments), timeout=10)
                for handle in handles
            ]
        except BaseException:
            print(second.output)
            raise
        await stop(fake, second)
    assert all(result.ephemeral for result in results)
    assert result_for(fake, "by option") == result_for(fake, "by default") == []
    assert [m for m in fake.messages() if m.source == "channel"] == []
    assert await intakes_of(database_url) == []
    assert fake.spec_violations == [] and api.spec_violations == []
