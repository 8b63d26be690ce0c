"""The per-member request rate: a full bucket at first, refilled evenly, one bucket per member."""

from __future__ import annotations

import pytest

from bot.quotas.policy import TooManyRequests
from bot.quotas.ratelimit import MemberRequestLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ten_at_once_then_one_every_six_seconds() -> None:
    clock = Clock()
    limiter = MemberRequestLimiter(10, clock)
    for _ in range(10):
        limiter.take(1)
    with pytest.raises(TooManyRequests) as refused:
        limiter.take(1)
    assert refused.value.params == {"limit": 10, "seconds": 6}
    assert str(refused.value) == "You can start 10 requests a minute. Try again in 6 s."
    limiter.take(2)  # another member's bucket is full
    clock.now += 3
    with pytest.raises(TooManyRequests) as refused:
        limiter.take(1)
    assert refused.value.params["seconds"] == 3
    clock.now += 3
    limiter.take(1)  # one request refilled
    with pytest.raises(TooManyRequests):
        limiter.take(1)
    clock.now += 3600  # a long pause fills the bucket, never beyond its size
    for _ in range(10):
        limiter.take(1)
    with pytest.raises(TooManyRequests):
        limiter.take(1)
