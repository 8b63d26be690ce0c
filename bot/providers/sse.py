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
            line_end = end - 1 if end > start and buffer[end - 1] == 13 else end  # CR LF
            line_start, start = start, end + 1
            if line_start == line_end:  # a blank line ends the event; one without data is none
                if lines:
                    yield ServerEvent(name, lines[0] if len(lines) == 1 else b"\n".join(lines))
                name, lines = "", []
            elif buffer.startswith((b"data:", b"event:"), line_start, line_end):
                # Megabytes of base64 in a data line: copied once, out of the buffer.
                colon = buffer.index(b":", line_start, line_end)
                value = colon + 1 + (buffer.startswith(b" ", colon + 1, line_end))
                with memoryview(buffer) as view:
                    text = bytes(view[value:line_end])
                if colon - line_start == 4:
                    lines.append(text)
                else:
                    name = text.decode("utf-8", "replace")
        del buffer[:start]
        searched = len(buffer)
