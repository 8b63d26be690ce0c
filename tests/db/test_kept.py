"""Values kept a few seconds (bot.db.kept): a burst of requests needing one value while nothing
is kept makes one read, not one each; a change forgotten during a read is not hidden by it."""

from __future__ import annotations

import asyncio

import pytest

from bot.db.kept import Kept


class Reads:
    """A read that counts its calls and ends when the test says so."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()
        self.go = asyncio.Event()
        self.value = "first"

    async def __call__(self) -> str:
        self.calls += 1
        self.called.set()
        value = self.value
        await self.go.wait()
        return value


async def test_requests_arriving_together_share_one_read() -> None:
    kept: Kept[int, str] = Kept(5.0, clock=lambda: 0.0)
    reads = Reads()
    waiting = [asyncio.ensure_future(kept.get(1, reads)) for _ in range(200)]
    await asyncio.sleep(0)
    reads.go.set()
    assert await asyncio.gather(*waiting) == ["first"] * 200
    assert reads.calls == 1
    assert await kept.get(1, reads) == "first" and reads.calls == 1  # kept now


async def test_kept_for_its_seconds_from_when_the_read_began() -> None:
    now = [100.0]
    kept: Kept[int, str] = Kept(5.0, clock=lambda: now[0])
    reads = Reads()
    reads.go.set()
    await kept.get(1, reads)
    reads.value = "second"
    now[0] += 4.9
    assert await kept.get(1, reads) == "first"
    now[0] += 0.2
    assert await kept.get(1, reads) == "second" and reads.calls == 2


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    kept: Kept[int, str] = Kept(5.0, clock=lambda: 0.0)
    calls = 0

    async def broken() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise ConnectionError("database unavailable")

    results = await asyncio.gather(*(kept.get(1, broken) for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3 and calls == 1
    assert kept.last(1) is None
    with pytest.raises(ConnectionError):
        await kept.get(1, broken)
    assert calls == 2  # tried again, not answered from a failure


async def test_one_waiter_cancelled_does_not_cancel_the_others_read() -> None:
    kept: Kept[int, str] = Kept(5.0, clock=lambda: 0.0)
    reads = Reads()
    first = asyncio.ensure_future(kept.get(1, reads))
    second = asyncio.ensure_future(kept.get(1, reads))
    await asyncio.sleep(0)
    first.cancel()
    reads.go.set()
    assert await second == "first"
    assert first.cancelled() and reads.calls == 1


async def test_a_value_forgotten_during_its_read_is_read_again() -> None:
    """An admin's change lands while a burst's read is under way: that read may have seen the
    old value, so it answers its own waiters but is not kept; the next request sees the new."""
    kept: Kept[int, str] = Kept(5.0, clock=lambda: 0.0)
    reads = Reads()
    before = asyncio.ensure_future(kept.get(1, reads))
    await reads.called.wait()  # its read has begun
    reads.called.clear()
    reads.value = "changed"
    kept.forget(1)
    after = asyncio.ensure_future(kept.get(1, reads))
    await reads.called.wait()
    reads.go.set()
    assert await before == "first" and await after == "changed"
    assert reads.calls == 2 and kept.last(1) == "changed"
    assert await kept.get(1, reads) == "changed" and reads.calls == 2


async def test_the_oldest_read_goes_first_past_the_bound() -> None:
    kept: Kept[int, int] = Kept(5.0, most=2, clock=lambda: 0.0)

    async def read(value: int) -> int:
        return value

    for key in (1, 2, 3):
        await kept.get(key, lambda key=key: read(key))  # type: ignore[misc]
    assert [kept.last(key) for key in (1, 2, 3)] == [None, 2, 3]
