"""HTTP from the provider's side treated as untrusted: where we connect, how much we read.

A provider's answer is input like any upload. A ``url`` in it can point anywhere, a redirect
can lead anywhere, and a body can be of any size once decoded, whatever ``Content-Length``
says. So:

* **Hosts** (``HostPolicy``): an image URL, and every redirect hop, may go to a public address
  only. Private, loopback, link-local and other non-global addresses are refused, checked on
  the addresses the name resolves to (a name like ``admin.internal`` or ``localtest.me`` is no
  way around it) and again on the address actually connected to (a DNS answer that changed in
  between). Two exceptions: the configured ``base_url``'s own host, which the operator chose
  (a compatible server on 127.0.0.1 serves its images from itself), and ``allowed_hosts``.
  "The same host" means the same name as written in ``base_url`` and the same port: another
  port on 127.0.0.1 is another service (an admin panel, a database) and is refused.
* **Redirects**: at most ``MAX_REDIRECTS``, each hop checked like the first URL. API calls
  themselves follow none.
* **Size**: bodies are read in chunks and decoded here (gzip or deflate, never trusting the
  server's own size claims); reading stops the moment the decoded bytes pass the cap, so a
  small gzip bomb costs at most the cap in memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from bot.providers.errors import MalformedResponse, ProviderUnavailable

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What we can decode while counting; a server that sends anything else is refused.
ACCEPT_ENCODING = "gzip, deflate"
CHUNK = 64 * 1024
#: Bytes a response may hold unread before the socket stops being read (aiohttp's
#: ``read_bufsize``; its default, 64 KB, paused and resumed reading a dozen times per 2 MB
#: answer: an eighth of the CPU of reading one). The answers are held whole anyway.
READ_BUFFER = 1024 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which hosts may be fetched although their addresses are not public."""

    #: (lower-case host, port or None for every port).
    trusted: frozenset[tuple[str, int | None]]

    @classmethod
    def from_settings(cls, base_url: str, allowed_hosts: Iterable[str] = ()) -> HostPolicy:
        """``base_url``'s host and port, plus each ``allowed_hosts`` entry ("host[:port]")."""
        base = yarl.URL(base_url)
        trusted = {((base.host or "").lower(), base.port)}
        for entry in allowed_hosts:
            parsed = yarl.URL(f"http://{entry.strip()}")
            port = parsed.explicit_port if parsed.explicit_port else None
            trusted.add(((parsed.host or "").lower(), port))
        return cls(frozenset(trusted))

    def trusts(self, url: yarl.URL) -> bool:
        host = (url.host or "").lower()
        return (host, url.port) in self.trusted or (host, None) in self.trusted

    async def check(self, url: yarl.URL) -> None:
        """Refuse ``url`` unless it is http(s) and trusted or every address it has is public."""
        if url.scheme not in {"http", "https"} or not url.host:
            raise MalformedResponse(detail="image url is not an http(s) URL")
        if self.trusts(url):
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                url.host, url.port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise ProviderUnavailable(detail=f"image url host does not resolve ({exc})") from None
        for info in infos:
            _check_public(url, str(info[4][0]))

    def check_peer(self, url: yarl.URL, response: aiohttp.ClientResponse) -> None:
        """The address actually connected to, in case the name resolved differently meanwhile."""
        if self.trusts(url) or response.connection is None:
            return
        transport = response.connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer:
            _check_public(url, str(peer[0]))


def _check_public(url: yarl.URL, address: str) -> None:
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        raise MalformedResponse(
            detail=f"url host {url.host} is at a private address ({ip}); "
            "add it to provider.allowed_hosts if it is meant to be fetched"
        )


@asynccontextmanager
async def checked_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    policy: HostPolicy,
    max_redirects: int = 0,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """One request whose every hop ``policy`` allowed; redirects followed up to the limit.

    A hop past ``max_redirects`` is refused; with 0, a redirect answer is returned as it is.
    Only bodiless GETs (image downloads) follow redirects, so the method never changes.
    Bodies are never decoded by aiohttp: ``read_capped`` does it while counting.
    """
    current = yarl.URL(url)
    all_headers = {**(headers or {}), "Accept-Encoding": ACCEPT_ENCODING}
    for hop in range(max_redirects + 1):
        await policy.check(current)
        async with session.request(
            method,
            current,
            headers=all_headers,
            allow_redirects=False,
            auto_decompress=False,
            **kwargs,
        ) as response:
            policy.check_peer(current, response)
            location = response.headers.get("Location")
            if max_redirects == 0 or response.status not in _REDIRECTS or not location:
                yield response
                return
            if hop == max_redirects:
                raise MalformedResponse(detail=f"url: more than {max_redirects} redirects")
            try:
                current = current.join(yarl.URL(location))
            except ValueError:
                raise MalformedResponse(detail="url: redirect to an invalid URL") from None


async def read_capped(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The decoded body, refused as soon as it passes ``limit`` bytes.

    An uncompressed body (the usual megabytes of base64) is taken as the socket delivers it and
    joined once: a quarter less time on the event loop than fixed chunks copied into a growing
    buffer and then once more into bytes."""
    if _decoder(response.headers.get("Content-Encoding", ""), what) is not None:
        return b"".join([data async for data in decoded_chunks(response, limit, what)])
    if (response.content_length or 0) > limit:
        raise MalformedResponse(detail=f"{what}: answer larger than {limit} bytes")
    parts, total = [], 0
    async for chunk in response.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise MalformedResponse(detail=f"{what}: answer larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def decoded_chunks(
    response: aiohttp.ClientResponse, limit: int, what: str
) -> AsyncIterator[bytes]:
    """The body as it arrives, decoded; refused as soon as the total passes ``limit`` bytes.

    For answers read while they come (server-sent events) as much as for whole bodies."""
    too_large = MalformedResponse(detail=f"{what}: answer larger than {limit} bytes")
    if (response.content_length or 0) > limit and not response.headers.get("Content-Encoding"):
        raise too_large
    decoder = _decoder(response.headers.get("Content-Encoding", ""), what)
    total = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        if decoder is None:
            total += len(chunk)
            if total > limit:
                raise too_large
            yield chunk
            continue
        try:
            data = decoder.decompress(chunk, limit - total + 1)
            while True:
                total += len(data)
                if total > limit:
                    raise too_large
                if data:
                    yield data
                if not decoder.unconsumed_tail:
                    break
                data = decoder.decompress(decoder.unconsumed_tail, limit - total + 1)
        except zlib.error:
            raise MalformedResponse(detail=f"{what}: answer does not decompress") from None


def _decoder(encoding: str, what: str) -> Any:
    name = encoding.strip().lower()
    if name in {"", "identity"}:
        return None
    if name in {"gzip", "x-gzip", "deflate"}:
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    raise MalformedResponse(detail=f"{what}: answer in an unsupported encoding {encoding!r}")
