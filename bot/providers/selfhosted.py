"""One HTTP exchange with a self-hosted server (AUTOMATIC1111, ComfyUI), the way both need it.

A GPU server runs what reaches it, and runs it again if it is sent again: a generation must
never be re-sent once it may have arrived. So only a refused connection (nothing was sent) is
tried again, with backoff; a timeout or a broken connection after sending is an outage that may
have made the images (``possibly_billed``: the job keeps that fact). Bodies are read through
``fetch`` (hosts checked, decoded bytes capped); anything but a 2xx is the caller's
``classify``'s to name, and every detail is scrubbed of the server's credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from bot.providers import retry
from bot.providers.errors import ProviderError, ProviderUnavailable, scrub
from bot.providers.fetch import HostPolicy, checked_request, read_capped

log = logging.getLogger(__name__)

#: Names the error for a non-2xx answer: (status, body) -> the error to raise.
Classify = Callable[[int, bytes], ProviderError]


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    what: str,
    server: str,
    policy: HostPolicy,
    limits: aiohttp.ClientTimeout,
    max_bytes: int,
    classify: Classify,
    retries: int,
    sleep: Callable[[float], Awaitable[Any]],
    random: Callable[[], float],
    secrets: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: aiohttp.FormData | None = None,
) -> tuple[int, bytes]:
    """Status and body of one 2xx answer from ``url``; ``what`` names the call in errors and
    logs, ``server`` the kind of server in logs ("A1111")."""
    attempt = 0
    while True:
        try:
            async with checked_request(
                session,
                method,
                url,
                policy=policy,
                headers=headers,
                json=json_body,
                data=data,
                timeout=limits,
            ) as response:
                raw = await read_capped(response, max_bytes, what)
                if 200 <= response.status < 300:
                    return response.status, raw
                raise classify(response.status, raw)
        except aiohttp.ClientConnectorError as exc:
            # Refused before anything was sent: safe to try again, even a generation.
            reason = scrub(f"{type(exc).__name__}: {exc}", secrets)
            error = ProviderUnavailable(detail=f"{what}: {reason}")
            if attempt >= retries:
                raise error from exc
            attempt += 1
            wait = retry.backoff_delay(attempt - 1, random)
            log.warning("%s %s: %s; retry %d in %.2f s", server, what, error.detail, attempt, wait)
            await sleep(wait)
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = scrub(f"{type(exc).__name__}: {exc}".rstrip(": "), secrets)
            error = ProviderUnavailable(detail=f"{what}: {reason}")
            error.possibly_billed = True
            raise error from exc
