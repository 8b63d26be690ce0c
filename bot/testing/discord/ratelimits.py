"""Per-route rate limits, answered as Discord answers them (off unless a test sets one).

Discord counts requests per route and major parameter (a channel, a guild, a webhook with its
token) in windows that start with the first request: ``limit`` requests, then 429 until the
window resets. Every answer says where the bucket stands in ``X-RateLimit-*`` headers, and a
429 has the spec's ``RatelimitedResponse`` body (``retry_after``, ``global``, ``code``,
``message``) with ``Retry-After`` and ``Via`` (discord.py retries a 429 only when ``Via`` says it
came through Discord's proxy, not from Cloudflare).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field

#: The path parameters a bucket is kept per, as Discord's "major parameters".
MAJOR = ("channel_id", "guild_id", "webhook_id", "webhook_token")


@dataclass
class RouteLimit:
    """``limit`` requests per ``per`` seconds on the routes ``pattern`` matches."""

    method: str
    pattern: re.Pattern[str]
    limit: int
    per: float
    #: How many requests it answered with 429 so far.
    refused: int = 0
    #: Per bucket: (monotonic time the window resets, requests left in it).
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and self.pattern.search(path) is not None

    def take(self, bucket: str) -> tuple[bool, int, float]:
        """Count one request: (allowed, requests left, seconds until the window resets)."""
        now = time.monotonic()
        reset_at, remaining = self._windows.get(bucket, (0.0, self.limit))
        if now >= reset_at:
            reset_at, remaining = now + self.per, self.limit
        if remaining <= 0:
            self.refused += 1
            return False, 0, reset_at - now
        self._windows[bucket] = (reset_at, remaining - 1)
        return True, remaining - 1, reset_at - now


def bucket_of(method: str, template: str, params: dict[str, str]) -> str:
    """The bucket of one request: its route and its major parameters."""
    major = ":".join(params.get(name, "") for name in MAJOR)
    return f"{method} {template} {major}"


def limit_headers(
    limit: RouteLimit, bucket: str, remaining: int, reset_after: float
) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit.limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": hashlib.md5(bucket.encode()).hexdigest()[:16],
    }


def rate_limited(
    limit: RouteLimit, bucket: str, retry_after: float
) -> tuple[dict[str, object], dict[str, str]]:
    """The body and headers of Discord's 429 for ``bucket``."""
    body: dict[str, object] = {
        "message": "You are being rate limited.",
        "retry_after": round(retry_after, 3),
        "global": False,
        "code": 0,
    }
    headers = limit_headers(limit, bucket, 0, retry_after)
    headers.update(
        {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Scope": "user",
            "Via": "1.1 google",
        }
    )
    return body, headers
