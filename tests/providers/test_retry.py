"""Parsing of the provider's wait hints and the backoff schedule."""

from __future__ import annotations

import email.utils

import pytest

from bot.providers.retry import (
    BACKOFF_CAP_SECONDS,
    backoff_delay,
    parse_duration,
    retry_delay_from_headers,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("250ms", 0.25),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("20ms", 0.02),
        ("7", 7.0),
        ("1.5", 1.5),
        ("", None),
        ("soon", None),
        ("5 s", None),
        ("1s2", None),
        ("-3", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    result = parse_duration(text)
    assert result == pytest.approx(seconds) if seconds is not None else result is None


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_delay_from_headers({"Retry-After": "3"}) == 3.0
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert retry_delay_from_headers({"retry-after": date}, now=lambda: now) == pytest.approx(12)
    past = email.utils.formatdate(now - 50, usegmt=True)
    assert retry_delay_from_headers({"retry-after": past}, now=lambda: now) == 0.0


def test_retry_after_ms_wins() -> None:
    headers = {"retry-after-ms": "150", "retry-after": "9"}
    assert retry_delay_from_headers(headers) == pytest.approx(0.15)


def test_reset_headers_prefer_the_exhausted_limit() -> None:
    headers = {
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-requests": "20",
        "x-ratelimit-reset-tokens": "250ms",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert retry_delay_from_headers(headers) == pytest.approx(0.25)
    del headers["x-ratelimit-remaining-tokens"]
    assert retry_delay_from_headers(headers) == pytest.approx(360)


def test_no_usable_hint() -> None:
    assert retry_delay_from_headers({}) is None
    assert retry_delay_from_headers({"retry-after": "whenever"}) is None


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    assert [backoff_delay(a, lambda: 1.0) for a in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_delay(20, lambda: 1.0) == BACKOFF_CAP_SECONDS
    assert backoff_delay(3, lambda: 0.25) == 2.0
    assert backoff_delay(3, lambda: 0.0) == 0.0
