"""A 429 that says how long to wait is told to whoever keeps the rate limit (every worker
holds back that backend, not only the request that drew it); nothing else is."""

from __future__ import annotations

import pytest

from bot.app import RateLimitRelay
from bot.providers import GenerateRequest, OperatorProblem, RateLimited
from bot.testing.openai_api import FakeImagesAPI
from tests.providers.conftest import MakeClient, RecordingSleep

REQUEST = GenerateRequest("a lighthouse at dusk", size="256x256")


class Told:
    """Records what the client tells, and how many waits its retry loop had done by then."""

    def __init__(self, sleeps: RecordingSleep) -> None:
        self.sleeps = sleeps
        self.calls: list[tuple[str, float, int]] = []

    async def __call__(self, backend: str, seconds: float) -> None:
        self.calls.append((backend, seconds, len(self.sleeps.waits)))


async def test_a_429s_retry_after_is_told_before_the_client_waits_it_out(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    told = Told(sleeps)
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "2"})
    client = make_client(model="dall-e-2", name="cloud", max_retries=1, on_rate_limited=told)
    result = await client.generate(REQUEST)
    assert result.images
    assert told.calls == [("cloud", 2.0, 0)]  # before its own wait: the others stop at once
    assert sleeps.waits == [2.0]


async def test_a_wait_too_long_to_retry_holds_the_others_back_as_long_as_one_may_wait(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    """An hour's reset (a daily limit) would freeze the queue for an hour: the others wait
    ``max_retry_wait_seconds``, then try (and fail "busy" at once if it still holds)."""
    told = Told(sleeps)
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "300"})
    client = make_client(model="dall-e-2", max_retry_wait_seconds=60, on_rate_limited=told)
    with pytest.raises(RateLimited):
        await client.generate(REQUEST)
    assert told.calls == [("default", 60.0, 0)]


async def test_a_429_without_a_hint_or_for_no_credit_is_not_told(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    told = Told(sleeps)
    client = make_client(model="dall-e-2", max_retries=1, on_rate_limited=told)
    fake_images_api.fail_next(429, code="rate_limit_exceeded")  # backoff, no pause for others
    assert (await client.generate(REQUEST)).images
    fake_images_api.quota_next()  # "no credit" is a 429 too, and the operator's problem
    with pytest.raises(OperatorProblem):
        await client.generate(REQUEST)
    fake_images_api.fail_next(503, headers={"retry-after": "1"})  # an outage, not a limit
    assert (await client.generate(REQUEST)).images
    assert told.calls == []


async def test_a_limit_keeper_that_cannot_be_told_does_not_fail_the_request(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    sleeps: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The composition root's relay: with nobody plugged in yet (the one-shot commands) and
    with a keeper whose database is down, the request goes on as the provider asked."""
    relay = RateLimitRelay()
    client = make_client(model="dall-e-2", max_retries=1, on_rate_limited=relay)
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "1"})
    assert (await client.generate(REQUEST)).images

    async def database_down(backend: str, seconds: float) -> None:
        raise ConnectionRefusedError("the database is down")

    relay.pause = database_down
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "1"})
    assert (await client.generate(REQUEST)).images
    assert sleeps.waits == [1.0, 1.0]
    assert "could not hold back 'default' for 1.0 s after a 429" in caplog.text
