"""Every failure maps to the right typed error, retries happen only when they can help."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest

from bot.providers import (
    EditRequest,
    GenerateRequest,
    InvalidRequest,
    MalformedResponse,
    OperatorProblem,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SafetyRejected,
)
from bot.testing.openai_api import FakeImagesAPI
from tests.providers.conftest import MakeClient, RecordingSleep, png

REQUEST = GenerateRequest("a lighthouse at dusk", user_id="42")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- operator problems: never retried, members see a generic message ---------------------------


@pytest.mark.parametrize(
    ("script", "code"),
    [
        (lambda api: api.billing_next(), "billing_hard_limit_reached"),
        (lambda api: api.quota_next(), "insufficient_quota"),
        (lambda api: api.fail_next(403, type="permission_error", message="Org not verified"), None),
    ],
)
async def test_operator_problems(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    sleeps: RecordingSleep,
    script: object,
    code: str | None,
) -> None:
    script(fake_images_api)  # type: ignore[operator]
    with pytest.raises(OperatorProblem) as info:
        await make_client().generate(REQUEST)
    error = info.value
    assert error.operator_problem and error.code == code
    assert str(error) == OperatorProblem.template
    assert error.key == "provider.operator_problem"
    assert f"HTTP {error.status}" in error.detail
    assert len(fake_images_api.requests) == 1 and sleeps.waits == []


async def test_wrong_key_is_an_operator_problem_and_the_echo_is_scrubbed(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    with pytest.raises(OperatorProblem) as info:
        await make_client(api_key="sk-wrong-0123456789-secret").generate(REQUEST)
    error = info.value
    assert error.status == 401 and error.code == "invalid_api_key"
    assert "Incorrect API key provided: [redacted]" in error.detail
    assert "sk-" not in error.detail and "cret" not in error.detail
    assert "Incorrect" not in str(error)


async def test_model_missing_on_the_server(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(model="ghost", models={"ghost": {"based_on": "dall-e-2"}})
    with pytest.raises(OperatorProblem) as info:
        await client.generate(REQUEST)
    assert info.value.status == 404 and info.value.code == "model_not_found"
    assert "ghost" in info.value.detail and "ghost" not in str(info.value)


# --- member-fixable problems -------------------------------------------------------------------


@pytest.mark.parametrize("code", ["content_policy_violation", "moderation_blocked"])
async def test_safety_rejections(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep, code: str
) -> None:
    fake_images_api.safety_next(code)
    with pytest.raises(SafetyRejected) as info:
        await make_client().edit(EditRequest(png(), "something"))
    assert info.value.code == code and "safety system" in str(info.value)
    assert not info.value.operator_problem and sleeps.waits == []


async def test_safety_wording_without_a_code(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.fail_next(
        400, type="image_generation_user_error", message="Rejected by our safety system."
    )
    with pytest.raises(SafetyRejected):
        await make_client().generate(REQUEST)


async def test_invalid_request_carries_the_scrubbed_provider_message(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    fake_images_api.fail_next(
        400, code="invalid_value", param="size", message="Bad size for key sk-proj-abcdef123456"
    )
    with pytest.raises(InvalidRequest) as info:
        await make_client().generate(REQUEST)
    assert str(info.value) == "The image service rejected the request: Bad size for key [redacted]"
    assert info.value.param == "size" and sleeps.waits == []


async def test_server_side_rule_violation_reaches_the_member(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    # The operator widened the table beyond what the server accepts; the server's answer is used.
    client = make_client(model="dall-e-2", models={"dall-e-2": {"sizes": ["2048x2048"]}})
    with pytest.raises(InvalidRequest, match="Invalid value: '2048x2048'"):
        await client.generate(REQUEST)
    assert fake_images_api.spec_violations == []


# --- retries -----------------------------------------------------------------------------------


async def test_429_retry_honours_retry_after(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    fake_images_api.fail_next(
        429, code="rate_limit_exceeded", headers={"retry-after": "2"}, times=2
    )
    result = await make_client().generate(REQUEST)
    assert result.images and sleeps.waits == [2.0, 2.0]
    assert len(fake_images_api.requests) == 3 and fake_images_api.count_429 == 2


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-remaining-requests": "0"}, 90.0),
        ({"x-ratelimit-reset-tokens": "250ms"}, 0.25),
        ({"x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
        ({"retry-after-ms": "1500"}, 1.5),
    ],
)
async def test_429_retry_honours_reset_headers(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    sleeps: RecordingSleep,
    headers: dict[str, str],
    wait: float,
) -> None:
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers=headers)
    await make_client(max_retry_wait_seconds=4000).generate(REQUEST)
    assert sleeps.waits == [pytest.approx(wait)]


async def test_429_without_hint_backs_off_exponentially(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    fake_images_api.fail_next(429, code="rate_limit_exceeded", times=3)
    await make_client().generate(REQUEST)
    assert sleeps.waits == [0.5, 1.0, 2.0]  # random() is 0.5: half of 1, 2, 4 s


async def test_retry_after_longer_than_allowed_fails_at_once(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "300"})
    with pytest.raises(RateLimited) as info:
        await make_client(max_retry_wait_seconds=60).generate(REQUEST)
    assert info.value.retry_after == 300 and info.value.status == 429
    assert sleeps.waits == [] and len(fake_images_api.requests) == 1


async def test_rate_limited_after_retries(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    fake_images_api.fail_next(
        429, code="rate_limit_exceeded", headers={"retry-after": "1"}, times=9
    )
    with pytest.raises(RateLimited) as info:
        await make_client(max_retries=2).generate(REQUEST)
    assert info.value.retry_after == 1 and sleeps.waits == [1.0, 1.0]
    assert len(fake_images_api.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_then_success(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep, status: int
) -> None:
    fake_images_api.fail_next(status, times=2)
    result = await make_client().edit(EditRequest(png(), "x"))
    assert result.images and sleeps.waits == [0.5, 1.0]


async def test_5xx_retries_exhausted(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    sleeps: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_images_api.fail_next(500, times=10)
    with (
        caplog.at_level(logging.WARNING, logger="bot.providers"),
        pytest.raises(ProviderUnavailable) as info,
    ):
        await make_client(max_retries=3).generate(REQUEST)
    assert info.value.status == 500 and len(fake_images_api.requests) == 4
    assert len(sleeps.waits) == 3
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 3 and "retry 3 of 3" in retries[-1].getMessage()


async def test_html_error_page_is_retried_as_unavailable(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.garbage_next(status=502, times=5)
    with pytest.raises(ProviderUnavailable) as info:
        await make_client(max_retries=1).generate(REQUEST)
    assert info.value.status == 502 and "without an error message" in info.value.detail


async def test_timeout(make_client: MakeClient, fake_images_api: FakeImagesAPI) -> None:
    fake_images_api.delay = 2.0
    client = make_client(read_timeout_seconds=0.1, timeout_seconds=5, max_retries=1)
    with pytest.raises(ProviderUnavailable) as info:
        await client.generate(REQUEST)
    assert len(fake_images_api.requests) == 2
    assert "Timeout" in info.value.detail or "TimeoutError" in info.value.detail


async def test_total_timeout(make_client: MakeClient, fake_images_api: FakeImagesAPI) -> None:
    fake_images_api.delay = 2.0
    client = make_client(timeout_seconds=0.1, max_retries=0)
    with pytest.raises(ProviderUnavailable):
        await client.generate(REQUEST)


async def test_connection_refused(make_client: MakeClient, sleeps: RecordingSleep) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=2)
    with pytest.raises(ProviderUnavailable) as info:
        await client.generate(REQUEST)
    assert "ClientConnectorError" in info.value.detail and info.value.status is None
    assert len(sleeps.waits) == 2


# --- malformed answers -------------------------------------------------------------------------


async def test_garbage_200_is_malformed_and_not_retried(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.garbage_next()
    with pytest.raises(MalformedResponse, match="not a usable image"):
        await make_client().generate(REQUEST)
    assert len(fake_images_api.requests) == 1


async def test_bad_base64(make_client: MakeClient, fake_images_api: FakeImagesAPI) -> None:
    fake_images_api.bad_base64_next()
    with pytest.raises(MalformedResponse) as info:
        await make_client().generate(REQUEST)
    assert "base64" in info.value.detail


async def test_not_an_image(make_client: MakeClient, fake_images_api: FakeImagesAPI) -> None:
    fake_images_api.not_image_next()
    with pytest.raises(MalformedResponse) as info:
        await make_client(model="dall-e-2").generate(REQUEST)
    assert "does not decode" in info.value.detail


# --- the key never leaks -----------------------------------------------------------------------


async def test_api_key_never_leaks(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, caplog: pytest.LogCaptureFixture
) -> None:
    key = fake_images_api.api_key
    errors: list[ProviderError] = []
    caplog.set_level(logging.DEBUG)
    client = make_client(max_retries=2)
    # A server that echoes the whole key, through retries and into the final error.
    fake_images_api.fail_next(500, message=f"upstream rejected Bearer {key} ({key})", times=3)
    fake_images_api.fail_next(400, message=f"bad request with key {key}")
    fake_images_api.fail_next(401, message=f"key {key} revoked", code="invalid_api_key")
    for _ in range(3):
        with pytest.raises(ProviderError) as info:
            await client.generate(REQUEST)
        errors.append(info.value)
    with pytest.raises(ProviderError) as info:  # a wrong key, echoed partially
        await make_client(api_key=key + "-wrong").generate(REQUEST)
    errors.append(info.value)
    refused = make_client(base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1)
    with pytest.raises(ProviderError) as info:
        await refused.generate(REQUEST)
    errors.append(info.value)

    assert [type(e) for e in errors] == [
        ProviderUnavailable, InvalidRequest, OperatorProblem, OperatorProblem, ProviderUnavailable
    ]  # fmt: skip
    texts = [caplog.text, repr(client), repr(refused), repr(client._settings)]
    texts += [r.getMessage() for r in caplog.records]
    for error in errors:
        texts += [str(error), repr(error), repr(error.args), error.detail, repr(error.params)]
        texts.append("".join(traceback.format_exception(error)))
    for text in texts:
        assert key not in text
        assert key[-8:] not in text
    assert any(r.levelno == logging.WARNING for r in caplog.records)
