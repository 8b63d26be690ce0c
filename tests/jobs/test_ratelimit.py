"""The provider's images-per-minute limit is never exceeded, and capacity is not wasted."""

from __future__ import annotations

import random

from bot.jobs.ratelimit import ImageRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulate(limit: int, sizes: list[int], seconds: float) -> list[tuple[float, int]]:
    clock = Clock()
    limiter = ImageRateLimiter(limit, clock=clock)
    sent: list[tuple[float, int]] = []
    end = clock.now + seconds
    index = 0
    while clock.now < end:
        n = min(sizes[index % len(sizes)], limit)
        wait = limiter.delay(n)
        if wait > 0:
            clock.now += wait
            continue
        limiter.acquire(n)
        sent.append((clock.now, n))
        index += 1
    return sent


def max_in_any_minute(sent: list[tuple[float, int]]) -> int:
    best = 0
    for start, _ in sent:
        best = max(best, sum(n for t, n in sent if start <= t < start + 60.0))
    return best


def test_never_more_than_the_limit_in_any_minute() -> None:
    rng = random.Random(7)
    sizes = [rng.randint(1, 10) for _ in range(200)]
    for limit in (5, 50, 600):
        sent = simulate(limit, sizes, seconds=600)
        assert max_in_any_minute(sent) <= limit


def test_throughput_is_at_least_95_percent_of_the_limit() -> None:
    for limit, sizes in ((50, [1]), (50, [4, 1, 2]), (300, [1, 10, 3])):
        sent = simulate(limit, sizes, seconds=600)
        per_minute = sum(n for _, n in sent) / 10
        assert per_minute >= 0.95 * limit, (limit, per_minute)


def test_a_quiet_bot_answers_the_first_requests_at_once() -> None:
    clock = Clock()
    limiter = ImageRateLimiter(50, clock=clock)
    for _ in range(5):
        assert limiter.delay(1) == 0
        limiter.acquire(1)
    assert limiter.delay(1) > 0  # then it spaces requests out


def test_a_request_larger_than_the_limit_still_goes_eventually() -> None:
    clock = Clock()
    limiter = ImageRateLimiter(3, clock=clock)
    assert limiter.delay(10) == 0
    limiter.acquire(10)
    wait = limiter.delay(1)
    assert 0 < wait < 400


def test_a_429s_retry_after_holds_back_every_request_until_then() -> None:
    clock = Clock()
    limiter = ImageRateLimiter(600, clock=clock)
    assert limiter.delay(1) == 0
    limiter.pause(5.0)
    assert limiter.delay(1) == 5.0
    limiter.pause(1.0)  # a shorter pause does not shorten it
    clock.now += 4.0
    assert limiter.delay(1) == 1.0
    clock.now += 1.0
    assert limiter.delay(1) == 0


def test_a_request_released_unsent_gives_its_images_back() -> None:
    """A job refused before its request went out (the moderation pre-check) counts for nothing:
    the window and the spacing are as if it had never started."""
    clock = Clock()
    limiter = ImageRateLimiter(2, burst=2, clock=clock)
    limiter.acquire(2, key="refused")
    assert limiter.delay(1) > 0
    limiter.release("refused")
    assert limiter.in_flight == 0 and limiter.images_in_window == 0
    assert limiter.delay(2) == 0
    limiter.finish("refused")  # the dispatcher's own call afterwards changes nothing
    assert limiter.images_in_window == 0
    limiter.release("never acquired")
    assert limiter.delay(2) == 0
