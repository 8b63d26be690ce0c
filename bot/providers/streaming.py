"""Streamed answers of the Images API: partial images as previews, then the finished image.

With ``stream=true`` and ``partial_images`` (0-3) a GPT image model answers
``text/event-stream``: ``image_generation.partial_image`` events (``image_edit.*`` for edits),
each a picture of the work so far, then one ``*.completed`` event with the image and ``usage``
(the final image may come before every partial). Partial events carry no image index, so one
image per request is streamed (n = 1); larger batches are asked for without streaming.

Each partial is billed 100 image output tokens. The spec describes the completed event's
``usage.output_tokens`` as "the number of image tokens in the output image", and nothing says
it counts the partials, so the bot adds ``PARTIAL_IMAGE_TOKENS`` per partial it received to the
usage it records: if the API does count them, a job is recorded 100 tokens per partial dearer
than billed (on the operator's side), never cheaper.

The spec lists no error event; the official SDK treats an ``error`` event (or any event whose
data has an ``error`` object) as an API error, and so does this reader. An answer already
streaming is not retried: the image is being made and billed, and the member has seen it start.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import pybase64

from bot.config import ProviderSettings
from bot.providers.capabilities import ModelSpec
from bot.providers.errors import MalformedResponse, ProviderError, ProviderUnavailable, scrub
from bot.providers.progress import ProgressCallback, ProgressUpdate, tell
from bot.providers.sse import ServerEvent, server_events
from bot.providers.types import ImageUsage

log = logging.getLogger(__name__)

#: Image output tokens each partial image costs (OpenAI's image generation guide).
PARTIAL_IMAGE_TOKENS = 100
#: The events' ``type`` prefix per endpoint.
EVENT_PREFIXES = {"/images/generations": "image_generation", "/images/edits": "image_edit"}

#: Where an event's base64 text starts: ``"b64_json": "``.
_B64_START = re.compile(rb'"b64_json"\s*:\s*"')

Classify = Callable[[int, Mapping[str, str], bytes], ProviderError]
Verify = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]


def streamed_partials(spec: ModelSpec, settings: ProviderSettings, n: int) -> int:
    """How many partial images a request of ``n`` images on ``spec`` asks for when it is made
    with a progress callback (what its reservation must include)."""
    return settings.partial_images if spec.streams and n == 1 else 0


def with_partials(usage: ImageUsage | None, partials: int) -> ImageUsage | None:
    """``usage`` plus the image output tokens of ``partials`` partial images."""
    if usage is None or partials == 0:
        return usage
    extra = partials * PARTIAL_IMAGE_TOKENS
    return ImageUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens + extra,
        total_tokens=usage.total_tokens + extra,
        input_text_tokens=usage.input_text_tokens,
        input_image_tokens=usage.input_image_tokens,
        output_image_tokens=usage.output_image_tokens + extra if usage.output_image_tokens else 0,
        output_text_tokens=usage.output_text_tokens,
    )


class ImageStream:
    """Reads one streamed answer: each partial, verified, to ``progress``; the completed event
    as the JSON body a non-streamed answer would have been, so both are read by one path."""

    def __init__(
        self,
        event_prefix: str,
        partials: int,
        *,
        progress: ProgressCallback,
        verify: Verify,
        classify: Classify,
        limit: int,
        what: str,
        secrets: tuple[str, ...],
    ) -> None:
        self._prefix = event_prefix
        self.partials = partials
        self._progress = progress
        self._verify = verify
        self._classify = classify
        self._limit = limit
        self._what = what
        self._secrets = secrets
        #: Partial images received in the last answer read (each billed).
        self.received = 0

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        self.received = 0
        try:
            async for event in server_events(response, self._limit, self._what):
                body = await self._handle(event)
                if body is not None:
                    return body
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._broken(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        raise self._broken("the stream ended before the image was complete")

    def _broken(self, reason: str) -> ProviderUnavailable:
        reason = scrub(reason, self._secrets)
        error = ProviderUnavailable(detail=f"{self._what} (streamed): {reason}")
        error.possibly_billed = True
        return error

    async def _handle(self, event: ServerEvent) -> bytes | None:
        if event.name == "error":
            raise self._error(event.data)
        try:
            fields, b64 = await asyncio.to_thread(_event_fields, event.data)
        except MalformedResponse:  # a proxy's keep-alive, "[DONE]": not an event of ours
            log.debug("image stream: an event that is not a JSON object ignored")
            return None
        if isinstance(fields.get("error"), dict):
            raise self._error(event.data)
        kind = fields.get("type") if isinstance(fields.get("type"), str) else event.name
        if kind == f"{self._prefix}.partial_image":
            await self._partial(b64)
            return None
        if kind == f"{self._prefix}.completed":
            return await asyncio.to_thread(_as_answer, fields, b64)
        log.debug("image stream: event %r ignored", kind)
        return None

    async def _partial(self, b64: bytes | memoryview | None) -> None:
        self.received += 1
        index = self.received
        try:
            if b64 is None:
                raise ValueError("partial image without b64_json")
            image = await asyncio.to_thread(pybase64.b64decode, b64, validate=True)
            await self._verify([image])
        except (ValueError, binascii.Error) as exc:
            log.warning("image stream: partial image %d unusable (%s): not shown", index, exc)
            return
        shown = min(index, self.partials)
        fraction = shown / (self.partials + 1)
        text = f"partial {shown}/{self.partials}"
        await tell(self._progress, ProgressUpdate(fraction, text, preview=image))

    def _error(self, data: bytes) -> ProviderError:
        """An error event: classified like the same error before the stream, marked billed."""
        try:
            raw = json.loads(data)
        except ValueError:
            raw = {}
        error = raw.get("error") if isinstance(raw, dict) else None
        error = error if isinstance(error, dict) else {}
        body = json.dumps({"error": error}).encode()
        server_side = error.get("type") == "server_error" or not error
        status = 500 if server_side else 400
        classified = self._classify(status, {}, body)
        classified.detail = classified.detail.replace(f"HTTP {status}", "stream error event", 1)
        classified.possibly_billed = True
        return classified


def _event_fields(data: bytes) -> tuple[dict[str, Any], bytes | memoryview | None]:
    """An event's JSON object without its ``b64_json``, and that base64 text.

    The text (megabytes) is cut out before parsing, as :func:`bot.providers.client._answer`
    does for whole answers; an event that does not allow that is parsed plainly."""
    found = _B64_START.search(data)
    end = data.find(b'"', found.end()) if found else -1
    b64: bytes | memoryview | None = None
    rest = data
    if found is not None and end >= 0 and data.find(b"\\", found.end(), end) < 0:
        b64 = memoryview(data)[found.end() : end]  # megabytes: not copied
        rest = data[: found.end()] + data[end:]
    try:
        fields = json.loads(rest)
    except ValueError:
        raise MalformedResponse(detail="image stream: an event's data is not JSON") from None
    if not isinstance(fields, dict):
        raise MalformedResponse(detail="image stream: an event's data is not an object")
    if b64 is None and isinstance(fields.get("b64_json"), str):
        b64 = fields["b64_json"].encode()
    fields.pop("b64_json", None)
    return fields, b64


def _as_answer(fields: dict[str, Any], b64: bytes | memoryview | None) -> bytes:
    """The completed event as the JSON of a non-streamed answer (``data``: the one image)."""
    answer: dict[str, Any] = {
        key: fields[key]
        for key in ("size", "quality", "background", "output_format", "usage")
        if key in fields
    }
    if isinstance(fields.get("created_at"), int):
        answer["created"] = fields["created_at"]
    if b64 is None:
        answer["data"] = [{}]
        return json.dumps(answer).encode()
    head = json.dumps({**answer, "data": [{"b64_json": ""}]}).encode()
    cut = head.rindex(b'""')  # base64 needs no JSON escaping: the text goes in as it is
    return b"".join((head[: cut + 1], b64, head[cut + 1 :]))
