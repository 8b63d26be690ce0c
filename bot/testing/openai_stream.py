"""Streamed answers of the fake Images API (``stream: true``), as the real API sends them.

``text/event-stream``: for each image, ``partial_images`` (0-3) ``*.partial_image`` events, then
one ``*.completed`` event with the image and its ``usage`` (``image_generation.*`` on
/images/generations, ``image_edit.*`` on /images/edits). Every event is validated against the
spec's stream event schema before it is sent; a violation is recorded like a request's. Each
partial is a real picture in the requested format and size, fading from grey to the final
colour (photo-like when the fake's ``noise_bits`` are set). ``usage`` counts the final image's
tokens only: the spec describes ``output_tokens`` as the output image's, and nothing says the
partials (100 tokens each) are in it.

Scripted failures (``FakeImagesAPI.stream_fails_next``): the stream ends after some partials
without the completed event, or sends an ``error`` event there (``{"error": {...}}`` as the
official SDK reads it; the spec lists no error event).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from bot.testing import openai_rules as rules
from bot.testing.openapi import RequestValidator, schema_validator

_EVENTS = {"generations": "image_generation", "edits": "image_edit"}
_SCHEMAS = {"generations": "ImageGenStreamEvent", "edits": "ImageEditStreamEvent"}
#: Sizes the spec's event schemas list (gpt-image-2's free sizes are newer than them).
_SPEC_SIZES = frozenset({"1024x1024", "1024x1536", "1536x1024", "auto"})
_GREY = (128, 128, 128)


@dataclass
class StreamFailure:
    """How the next stream breaks: after ``after`` partials, it ends (``error`` None) or sends
    that error object; ``drop``: the connection is cut instead (no end of the chunked body)."""

    after: int = 0
    error: dict[str, Any] | None = None
    drop: bool = False


@dataclass
class ImageStreamAnswer:
    """One streamed answer, ready to be written to its request."""

    endpoint: str
    #: (event name, data object) in order.
    events: list[tuple[str, dict[str, Any]]]
    headers: dict[str, str]
    #: Seconds between events (a test watching previews arrive slows it), waited with
    #: ``sleep`` (the server's, which ends early when it shuts down).
    interval: float = 0.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    failure: StreamFailure | None = None
    violations: list[str] = field(default_factory=list)

    async def send(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", **self.headers}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        partials, failure = 0, self.failure
        try:
            for number, (name, data) in enumerate(self.events):
                if failure is not None and (
                    name.endswith(".completed") or partials >= failure.after
                ):
                    if failure.error is not None:
                        await response.write(_frame("error", {"error": failure.error}))
                    if failure.drop and request.transport is not None:
                        request.transport.abort()
                        return response
                    break
                if number and self.interval:
                    await self.sleep(self.interval)
                await response.write(_frame(name, data))
                partials += name.endswith(".partial_image")
            await response.write_eof()
        except ConnectionResetError:  # the client went away (it had what it wanted, or gave up)
            pass
        return response


def stream_answer(
    endpoint: str,
    payload: dict[str, Any],
    body: dict[str, Any],
    usages: list[dict[str, Any]],
    headers: dict[str, str],
    *,
    free_sizes: bool,
    noise_bits: int = 0,
) -> ImageStreamAnswer:
    """The events of a streamed answer to ``body``, from the answer ``payload`` it would get;
    partials as photo-like as the final image with ``noise_bits`` (FakeImagesAPI's)."""
    prefix = _EVENTS[endpoint]
    partials = _partial_count(body)
    fmt = payload["output_format"]
    width, height = (int(side) for side in payload["size"].split("x"))
    common = {
        "created_at": int(time.time()),
        "size": payload["size"],
        "quality": payload["quality"],
        "background": payload["background"],
        "output_format": fmt,
    }
    events: list[tuple[str, dict[str, Any]]] = []
    for item, usage in zip(payload["data"], usages, strict=True):
        try:
            colour = _colour_of(base64.b64decode(item.get("b64_json", "")))
        except (ValueError, OSError):  # a scripted broken image: the partials stay grey
            colour = _GREY
        for index in range(partials):
            shade = _fade(colour, (index + 1) / (partials + 1))
            if noise_bits:
                image = rules.make_noisy_image(width, height, shade, fmt, noise_bits)
            else:
                image = rules.make_image(width, height, shade, fmt)
            events.append(
                (
                    f"{prefix}.partial_image",
                    {
                        "type": f"{prefix}.partial_image",
                        "b64_json": base64.b64encode(image).decode(),
                        **common,
                        "partial_image_index": index,
                    },
                )
            )
        b64 = item.get("b64_json", "")
        completed = {"type": f"{prefix}.completed", "b64_json": b64, **common}
        events.append((f"{prefix}.completed", {**completed, "usage": usage}))
    answer = ImageStreamAnswer(endpoint, events, headers)
    validator = schema_validator("openai", _SCHEMAS[endpoint])
    if validator is not None:
        answer.violations = _violations(validator, events, free_sizes)
    return answer


def wants_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") in {True, "true"}


def _partial_count(body: dict[str, Any]) -> int:
    value = body.get("partial_images")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value <= 3 else 0


def _violations(
    validator: RequestValidator, events: list[tuple[str, dict[str, Any]]], free_sizes: bool
) -> list[str]:
    found = []
    for name, data in events:
        checked = data
        if free_sizes and data["size"] not in _SPEC_SIZES:
            checked = {**data, "size": "auto"}
        errors = validator.errors(checked)
        if errors:
            found.append(f"stream event {name}: " + "; ".join(errors))
    return found


def _colour_of(image: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(image)) as opened:
        r, g, b = opened.convert("RGB").getpixel((0, 0))  # type: ignore[misc]
    return r, g, b


def _fade(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    r, g, b = (round(grey + (c - grey) * amount) for grey, c in zip(_GREY, colour, strict=True))
    return r, g, b


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
