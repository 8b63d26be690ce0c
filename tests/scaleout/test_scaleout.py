"""Scale-out end to end: gateway shards and workers as separate ``python -m bot`` processes on one
PostgreSQL database, against the fake Discord and the fake image API (issue 13, section 4).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bot.testing.discord import FakeDiscord, InteractionHandle
from bot.testing.openai_api import FakeImagesAPI
from tests.scaleout.cluster import (
    CANCELLED,
    CATALOG,
    DONE,
    INTERRUPTED,
    QUEUED_PREFIX,
    Cluster,
    cluster,
    guild_on_shard,
    late,
    shown,
)

WORKING = CATALOG.text("status.working", n=1)
POST_INTERRUPTED = CATALOG.text("status.post_interrupted")
POSTED = CATALOG.text("result.posted")
GONE = CATALOG.text("error.result_gone")


async def test_one_process_on_postgresql_serves_an_imagine(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """``python -m bot run`` stays the one-process default, on PostgreSQL too."""
    fake, api = fake_discord, fake_images_api
    async with cluster(tmp_path, fake, api, postgres_url) as bots:
        await bots.start("both", "run")
        await fake.wait_ready(timeout=30)
        await bots.synced()
        handle = await bots.imagine(fake.user, "one process")
        assert (await handle.response()).type == 5
        await handle.wait_message(lambda m: m.ephemeral and m.content == DONE, timeout=15)
        (result,) = bots.results("one process")
        assert result.pinged_ids == [fake.user.id]
        assert DONE in shown(handle)
        await bots.stop("both")
    assert bots.provider_prompts() == ["one process"]
    assert fake.spec_violations == [] and api.spec_violations == []


# --- several processes: 2 gateway shards (no jobs) and workers ------------------------------

SHARDS = 2
#: The bot's images per minute; its limiter sends at most BURST + 5 s / (60 s / LIMIT) = 22 images
#: in any 5 s (GCRA: a burst of LIMIT / 10, then one every 0.5 s). The fake provider refuses
#: (429) a 27th in 5 s: processes that each kept their own limit would send 44.
LIMIT, WINDOW, PROVIDER_ALLOWS = 120, 5.0, 26
PRICE_USD = 0.016  # dall-e-2 at 256x256


def ended(handle: InteractionHandle) -> bool:
    """The member's private message says how the request ended (done, interrupted, cancelled,
    or why it was refused)."""
    texts = shown(handle)
    if not texts:
        return False
    last = texts[-1]
    return not last.startswith(QUEUED_PREFIX) and last != WORKING


async def all_ended(bots: Cluster, handles: Iterable[InteractionHandle], timeout: float) -> None:  # noqa: ASYNC109
    waiting = list(handles)
    await bots.until(lambda: all(ended(h) for h in waiting), "every request to end", timeout)


async def test_a_burst_across_both_shards_is_answered_made_once_paced_and_fair(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """2 gateways (shards 0 and 1 of 2) and 2 workers take a burst of 30 /imagine from a busy
    server (shard 0) and another (shard 1), then one from a lone server (shard 1): every
    interaction is answered within 3 s, every result is posted once, the provider sees no 429
    though the burst is over its limit, and the lone server's job is not left behind the busy
    server's backlog."""
    fake, api = fake_discord, fake_images_api
    busy = guild_on_shard(fake, "Busy", 0, SHARDS)
    other = guild_on_shard(fake, "Other", 1, SHARDS)
    lone = guild_on_shard(fake, "Lone", 1, SHARDS)
    busy_members = [fake.add_member(busy, f"busy{i}") for i in range(4)]
    other_members = [fake.add_member(other, f"other{i}") for i in range(2)]
    loner = fake.add_member(lone, "loner")
    api.delay = 0.2
    api.images_per_minute, api.rate_window = PROVIDER_ALLOWS, WINDOW
    workers, concurrency = 2, 2
    async with cluster(
        tmp_path, fake, api, postgres_url, images_per_minute=LIMIT, concurrency=concurrency
    ) as bots:
        await bots.scale(SHARDS, workers)

        burst = [(m, f"busy {m.user.name} {i}") for i in range(6) for m in busy_members]
        burst += [(m, f"other {m.user.name} {i}") for i in range(3) for m in other_members]
        handles = dict(
            zip(
                (prompt for _, prompt in burst),
                await asyncio.gather(*(bots.imagine(m, prompt) for m, prompt in burst)),
                strict=True,
            )
        )
        await bots.until(lambda: all(h.deferred for h in handles.values()), "the burst's defers")
        await bots.until(lambda: bool(api.requests), "the first request at the provider")
        sent_before = len(api.requests)
        handles["lone"] = await bots.imagine(loner, "lone")
        await all_ended(bots, handles.values(), timeout=60)
        # the operator's check sees every process alive
        code, checked = await bots.check()
        pids = [p.process.pid for p in bots.processes.values()]

    assert late(handles.values()) == []
    assert code == 0, checked
    (processes,) = [line for line in checked.splitlines() if "alive" in line]
    assert "4 alive" in processes and all(f"pid {pid}" in processes for pid in pids), checked
    for prompt, handle in handles.items():
        assert shown(handle)[-1] == DONE, (prompt, shown(handle))
        (result,) = bots.results(prompt)
        assert result.pinged_ids == [handle.record.user.id]
    made = bots.provider_prompts()
    assert Counter(made) == dict.fromkeys(handles, 1)
    assert api.count_429 == 0
    # the commands were synced once, not by every process
    syncs = [r for r in fake.requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(syncs) == 1, [r.path for r in syncs]
    # the lone server waits at most one turn per worker and per other server, behind what
    # the workers had already taken (their slots); first come, first served would be ~20
    waited = made.index("lone") - sent_before
    assert waited <= workers * concurrency + workers + 2, (sent_before, made)
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_a_killed_worker_s_jobs_are_reported_interrupted_once_and_the_rest_finish(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """SIGKILL of a worker while its two requests are at the provider: after the lease
    (5 s), each of its requesters is told once, with a Retry button, and the job is recorded
    as possibly billed; every other request finishes on the other worker, made once."""
    fake, api = fake_discord, fake_images_api
    guilds = [guild_on_shard(fake, f"Server {shard}", shard, SHARDS) for shard in range(SHARDS)]
    members = [fake.add_member(g, f"m{g.name[-1]}{i}") for g in guilds for i in range(3)]
    lease = 5.0
    api.gate = asyncio.Event()  # requests are held at the provider until the kill
    async with cluster(
        tmp_path, fake, api, postgres_url, concurrency=2, lease_seconds=lease
    ) as bots:
        await bots.scale(SHARDS, workers=2)
        handles = {
            f"from {m.user.name}": await bots.imagine(m, f"from {m.user.name}") for m in members
        }
        victim = bots.processes["worker-0"].process.pid

        async def both_workers_at_the_provider() -> bool:
            running = [j for j in await bots.jobs() if j.worker_id and j.status == "running"]
            return len(api.requests) >= 4 and len({j.worker_id for j in running}) == 2

        await bots.until_async(both_workers_at_the_provider, "both workers at the provider")
        cut = {
            j.prompt: j
            for j in await bots.jobs()
            if j.status == "running" and j.worker_id and f":{victim}:" in j.worker_id
        }
        assert len(cut) == 2, [(j.prompt, j.status, j.worker_id) for j in await bots.jobs()]
        await bots.kill("worker-0")
        api.gate.set()  # the other worker's two requests are answered, and any that follow
        killed_at, killed_wall = time.monotonic(), time.time()
        told_after = {}
        for prompt in cut:
            await handles[prompt].wait_message(
                lambda m: m.ephemeral and m.content == INTERRUPTED, timeout=lease + 30
            )
            told_after[prompt] = time.monotonic() - killed_at
        await all_ended(bots, handles.values(), timeout=30)
        await asyncio.sleep(lease / 2)  # a second notice would come from the other processes
        jobs = {j.prompt: j for j in await bots.jobs()}

        # Retry is the requester's, whichever process takes the click and runs it
        prompt = next(iter(cut))
        (notice,) = [m for m in handles[prompt].messages if m.content == INTERRUPTED]
        (retry_id,) = notice.custom_ids
        assert retry_id == f"ib:retry:{jobs[prompt].id}"
        retry = await fake.click(notice, retry_id, user=handles[prompt].record.user)
        await retry.wait_message(lambda m: m.ephemeral and m.content == DONE, timeout=15)

    assert late([*handles.values(), retry]) == []
    for prompt, handle in handles.items():
        texts = shown(handle)
        if prompt in cut:
            notices = [m for m in handle.messages if m.ephemeral and m.content == INTERRUPTED]
            assert len(notices) == 1 and texts.count(INTERRUPTED) == 1, texts
            assert [m.custom_ids for m in notices] == [[f"ib:retry:{jobs[prompt].id}"]]
            assert jobs[prompt].status == "interrupted" and jobs[prompt].possibly_billed
            # not before the lease the dead worker last renewed ran out, not long after it
            lease_left = cut[prompt].lease_until.timestamp() - killed_wall  # type: ignore[union-attr]
            assert lease_left - 0.5 <= told_after[prompt] < lease_left + 15, (
                lease_left,
                told_after,
            )
        else:
            assert texts[-1] == DONE, (prompt, texts)
            assert len(bots.results(prompt)) == 1
            assert jobs[prompt].status == "delivered" and not jobs[prompt].possibly_billed
    retried = next(iter(cut))
    assert [p for p in cut if bots.results(p)] == [retried]
    assert len(bots.results(retried)) == 1
    # nothing was asked twice but the retried one: the killed worker's requests are not
    # silently repeated
    expected = dict.fromkeys(handles, 1) | {retried: 2}
    assert Counter(bots.provider_prompts()) == expected
    assert fake.spec_violations == []


async def test_a_worker_killed_while_posting_leaves_the_requester_a_post_button_once(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """SIGKILL of a worker after it took the right to post a result and before the post
    arrived: nobody posts it on their own (it might be on Discord), but after the lease the
    requester is told once, with a Post result button that posts it once, at no new cost."""
    fake, api = fake_discord, fake_images_api
    guild = guild_on_shard(fake, "Server 0", 0, SHARDS)
    member = fake.add_member(guild, "poster")
    lease = 5.0
    fake.followup_gate = asyncio.Event()  # results wait at Discord's door
    async with cluster(
        tmp_path, fake, api, postgres_url, concurrency=2, lease_seconds=lease
    ) as bots:
        await bots.scale(SHARDS, workers=1)
        handle = await bots.imagine(member, "made, then cut off")

        async def owned() -> bool:
            return any(j.delivery_owner and j.status == "succeeded" for j in await bots.jobs())

        await bots.until_async(owned, "the worker took the right to post")
        await asyncio.sleep(0.5)  # its post is on the wire, held by the fake
        await bots.kill("worker-0")
        fake.followup_gate.set()  # the dead worker's post never arrives
        notice = await handle.wait_message(
            lambda m: m.ephemeral and m.content == POST_INTERRUPTED, timeout=lease + 30
        )
        assert bots.results("made, then cut off") == []
        (job,) = await bots.jobs()
        assert notice.custom_ids == [f"ib:post:{job.id}"]
        await asyncio.sleep(lease / 2)  # a second notice would come from another reaper pass

        clicks = await asyncio.gather(  # a double click: one posts, the other is told
            *(fake.click(notice, f"ib:post:{job.id}", user=member.user) for _ in range(2))
        )
        answers = [
            await click.wait_message(lambda m: m.ephemeral and m.content in (POSTED, GONE))
            for click in clicks
        ]
        assert sorted(m.content for m in answers) == sorted([POSTED, GONE])
        await handle.wait_message(lambda m: m.ephemeral and m.content == DONE, timeout=15)
        (job,) = await bots.jobs()

    assert len(bots.results("made, then cut off")) == 1
    assert shown(handle).count(POST_INTERRUPTED) == 1
    assert job.status == "delivered" and job.n_charged == 1 and not job.possibly_billed
    assert bots.provider_prompts() == ["made, then cut off"]  # made once, paid once
    assert fake.spec_violations == []


async def test_a_quota_race_across_processes_admits_exactly_the_quota(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """The operator's daily spend cap (5 images' worth) over every server: 12 members of
    servers on both shards ask at once, through both gateway processes. Exactly 5 are made;
    the other 7 are told why not; nothing more is spent."""
    fake, api = fake_discord, fake_images_api
    guilds = [guild_on_shard(fake, f"Server {shard}", shard, SHARDS) for shard in range(SHARDS)]
    members = [fake.add_member(g, f"m{g.name[-1]}{i}") for g in guilds for i in range(6)]
    quota = 5
    refused_text = CATALOG.template("quota.total_day") or ""
    async with cluster(
        tmp_path,
        fake,
        api,
        postgres_url,
        quotas_extra=f"total_spend_per_day_usd = {quota * PRICE_USD}\n",
    ) as bots:
        await bots.scale(SHARDS, workers=1)
        handles = await asyncio.gather(*(bots.imagine(m, f"race {m.user.name}") for m in members))
        await all_ended(bots, handles, timeout=30)
        jobs = await bots.jobs()

    assert late(handles) == []
    finals = [shown(h)[-1] for h in handles]
    assert finals.count(DONE) == quota
    refused = [text for text in finals if text != DONE]
    assert len(refused) == len(members) - quota
    assert all(text.startswith(refused_text.split("{", 1)[0]) for text in refused), refused
    assert len(api.requests) == quota
    assert sum(len(bots.results(f"race {m.user.name}")) for m in members) == quota
    assert sum(j.cost_micro_usd or 0 for j in jobs) == round(quota * PRICE_USD * 1_000_000)
    assert fake.spec_violations == []


async def test_cancel_on_a_restarted_gateway_stops_a_job_queued_by_its_predecessor(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """A job queued through the shard-0 gateway waits for the worker (busy with a shard-1
    request). The shard-0 gateway is replaced (a rolling restart); Cancel pressed on the job's
    status message reaches the new process, and the worker never runs the job.

    A click arrives on the connection of its server's shard, so the process that takes it is
    the one that took the /imagine, unless that process was replaced in between: this test
    makes it another process by replacing it."""
    fake, api = fake_discord, fake_images_api
    runner = fake.add_member(guild_on_shard(fake, "Shard one", 1, SHARDS), "runner")
    waiter = fake.add_member(guild_on_shard(fake, "Shard zero", 0, SHARDS), "waiter")
    api.gate = asyncio.Event()  # the first request is held at the provider until the end
    async with cluster(tmp_path, fake, api, postgres_url, concurrency=1) as bots:
        await bots.scale(SHARDS, workers=1)
        running = await bots.imagine(runner, "keeps running")
        await bots.until(lambda: bool(api.requests), "the first request at the provider")
        queued = await bots.imagine(waiter, "changed my mind")
        status = await queued.wait_message(
            lambda m: m.ephemeral and m.content.startswith(QUEUED_PREFIX), timeout=10
        )
        (cancel,) = status.custom_ids
        assert cancel.startswith("ib:cancel:")
        # its place comes from the shared queue: first in line, behind the running job
        assert status.content.startswith(f"{QUEUED_PREFIX}1."), status.content

        await bots.stop("gateway-0")
        await bots.gateway("gateway-0-again", 0, SHARDS)
        click = await fake.click(status, cancel, user=waiter)
        assert (await click.response()).type == 7  # the status message itself is updated
        assert queued.original is not None and queued.original.content == CANCELLED
        assert queued.original.components == []
        api.gate.set()
        await running.wait_message(lambda m: m.ephemeral and m.content == DONE, timeout=20)
        await asyncio.sleep(2.0)  # the worker is free: it would take the job now (poll: 1 s)
        jobs = {j.prompt: j for j in await bots.jobs()}

    assert bots.provider_prompts() == ["keeps running"]
    assert bots.results("changed my mind") == []
    assert len(bots.results("keeps running")) == 1
    cancelled = jobs["changed my mind"]
    assert cancelled.status == "cancelled"
    assert (cancelled.n_charged, cancelled.cost_micro_usd) == (0, 0)
    assert queued.original.content == CANCELLED  # no late queue update overwrote it
    assert late([running, queued, click]) == []
    assert fake.spec_violations == []
