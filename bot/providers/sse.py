"""Server-sent events (``text/event-stream``) read as they arrive, from an untrusted server.

The Images API streams each preview as one ``data:`` line of base64 (megabytes), so lines are
split here from the decoded chunks (aiohttp's ``readline`` refuses lines past 128 KiB), with
the same cap on decoded bytes as every other answer (:func:`bot.providers.fetch
.decoded_chunks`). Only what the image APIs use is kept: ``event`` and ``data`` fields; lines end
in LF or CRLF; comments (``:``), ``id`` and ``retry`` are ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from bot.providers.fetch import decoded_chunks


@dataclass(frozen=True)
class ServerEvent:
    #: The ``event:`` field ("" when the server sent none).
    name: str
    #: The ``data:`` lines joined by LF.
    data: bytes


def is_event_stream(response: aiohttp.ClientResponse) -> bool:
    return response.content_type == "text/event-stream"


async def server_events(
    response: aiohttp.ClientResponse, limit: int, what: str
) -> AsyncIterator[ServerEvent]:
    """Each complete event of ``response``; an event cut off by the end of the body is dropped."""
    buffer = bytearray()
    searched = 0  # bytes at the start of ``buffer`` known to hold no line end
    name, lines = "", list[bytes]()
    async for chunk in decoded_chunks(response, limit, what):
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", max(start, searched))) >= 0:
            line = bytes(buffer[start:end]).removesuffix(b"\r")
            start = end + 1
            if not line:  # a blank line ends the event; one without data is no event
                if lines:
                    yield ServerEvent(name, b"\n".join(lines))
                name, lines = "", []
                continue
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"event":
                name = value.decode("utf-8", "replace")
            elif field == b"data":
                lines.append(value)
        del buffer[:start]
        searched = len(buffer)
