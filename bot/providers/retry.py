"""When to try again, and how long to wait first.

The provider says how long to wait in several ways (``retry-after`` in seconds or as an HTTP date,
``retry-after-ms``, and Go-style durations in ``x-ratelimit-reset-*``); honouring them avoids
hammering a limit that will not lift sooner. Without a hint, full-jitter exponential backoff keeps
many workers from retrying in lockstep after an outage.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0

#: Statuses worth another attempt: timeouts, conflicts, rate limits and server errors.
RETRYABLE_STATUSES = frozenset({408, 409, 429})

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration such as ``"6m0s"``, ``"250ms"`` or ``"1h2m3.5s"``; None if invalid.

    A bare number is read as seconds, which is what some compatible servers send.
    """
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    return total if pos == len(text) else None


def _retry_after(value: str, now: float) -> float | None:
    """``retry-after`` as delta-seconds or an HTTP date (RFC 9110)."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_delay_from_headers(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait, or None when it gave no usable hint.

    ``retry-after-ms`` and ``retry-after`` are explicit and win. Otherwise the reset time of an
    exhausted limit (remaining == 0) is used; if none is marked exhausted, the longest reset.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        ms = parse_duration(lowered["retry-after-ms"])
        if ms is not None:
            return ms / 1000
    if "retry-after" in lowered:
        seconds = _retry_after(lowered["retry-after"], now())
        if seconds is not None:
            return seconds
    resets: dict[str, float] = {}
    for kind in ("requests", "tokens", "images"):
        raw = lowered.get(f"x-ratelimit-reset-{kind}")
        parsed = parse_duration(raw) if raw is not None else None
        if parsed is not None:
            resets[kind] = parsed
    if not resets:
        return None
    exhausted = [
        s for kind, s in resets.items() if lowered.get(f"x-ratelimit-remaining-{kind}") == "0"
    ]
    candidates: list[float] = exhausted or list(resets.values())
    return max(candidates)


def backoff_delay(attempt: int, random: Callable[[], float]) -> float:
    """Full-jitter exponential backoff for the ``attempt``-th retry (0-based)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0**attempt)
    return random() * ceiling
