"""Members' defaults kept between requests: read once per few seconds, not per request, and
read again at once after the member changes them (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from bot.db.engine import Storage
from bot.quotas import kept_defaults
from bot.quotas.kept_defaults import DEFAULTS_SECONDS, KeptDefaults
from bot.quotas.member_defaults import reset_defaults, save_defaults

MEMBER, OTHER = 41, 42


async def test_defaults_are_kept_a_few_seconds_then_read_again(storage: Storage) -> None:
    now = [10.0]
    kept = KeptDefaults(storage.sessions, clock=lambda: now[0])
    await save_defaults(storage.sessions, MEMBER, {"size": "512x512"})
    assert (await kept.of(MEMBER)).size == "512x512"

    await save_defaults(storage.sessions, MEMBER, {"size": "256x256"})  # another process
    now[0] += DEFAULTS_SECONDS - 0.5
    assert (await kept.of(MEMBER)).size == "512x512"
    now[0] += 1.0
    assert (await kept.of(MEMBER)).size == "256x256"
    assert (await kept.of(OTHER)).chosen() == {}


async def test_a_change_forgotten_is_read_at_once(storage: Storage) -> None:
    kept = KeptDefaults(storage.sessions, clock=lambda: 0.0)
    await save_defaults(storage.sessions, MEMBER, {"n": 3, "private": True})
    assert (await kept.of(MEMBER)).private

    await reset_defaults(storage.sessions, MEMBER)
    kept.forget(MEMBER)

    defaults = await kept.of(MEMBER)
    assert not defaults.private and defaults.chosen() == {}


async def test_the_oldest_members_go_first_past_the_bound(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kept_defaults, "KEPT_MEMBERS", 2)
    now = [0.0]
    kept = KeptDefaults(storage.sessions, clock=lambda: now[0])
    for member in (1, 2, 3):
        await save_defaults(storage.sessions, member, {"n": member})
        await kept.of(member)
    for member in (1, 2, 3):
        await save_defaults(storage.sessions, member, {"n": 4})

    assert (await kept.of(3)).n == 3  # kept
    assert (await kept.of(1)).n == 4  # the oldest, dropped: read again


async def test_a_burst_of_one_members_requests_reads_their_defaults_once(storage: Storage) -> None:
    """200 requests at once with nothing kept (after a quiet moment, or a restart) made 200
    reads of the same row, queued for the database before the first could be answered."""
    kept = KeptDefaults(storage.sessions, clock=lambda: 0.0)
    await save_defaults(storage.sessions, MEMBER, {"n": 2})
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(storage.engine.sync_engine, "before_cursor_execute", count)
    try:
        found = await asyncio.gather(*(kept.of(MEMBER) for _ in range(200)))
    finally:
        event.remove(storage.engine.sync_engine, "before_cursor_execute", count)
    assert {defaults.n for defaults in found} == {2}
    assert statements == 1
