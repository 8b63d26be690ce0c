"""Server-sent events as a server may send them: lines split anywhere, CRLF, comments."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from bot.imaging import ImageWorker
from bot.providers.errors import MalformedResponse, classify_error
from bot.providers.progress import ProgressUpdate
from bot.providers.sse import ServerEvent, server_events
from bot.providers.streaming import ImageStream
from tests.providers.conftest import png
from tests.web_app import served

Serve = Callable[[list[bytes], dict[str, str]], str]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """A server answering with the given chunks, each written (and flushed) on its own."""
    answers: list[tuple[list[bytes], dict[str, str]]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        chunks, headers = answers[int(request.match_info["n"])]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{n}", handler)
    async with served(app) as base_url:

        def add(chunks: list[bytes], headers: dict[str, str]) -> str:
            answers.append((chunks, headers))
            return f"{base_url}/{len(answers) - 1}"

        yield add


async def _events(url: str, limit: int = 10_000_000) -> list[ServerEvent]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, auto_decompress=False) as response,
    ):
        return [event async for event in server_events(response, limit, "test")]


async def test_events_split_anywhere_with_crlf_comments_and_multiline_data(serve: Serve) -> None:
    big = b"A" * 300_000  # one data line far past aiohttp's readline limit
    text = (
        b": keep-alive\r\n\r\nevent: one\r\ndata: " + big + b"\r\n\r\n"
        b"event: two\ndata: first\ndata:second\nid: 7\n\n"
        b"event: no data\n\n"
        b"data: cut off at the end"
    )
    chunks = [text[i : i + 1000] for i in range(0, len(text), 1000)]
    events = await _events(serve(chunks, {}))
    assert events == [ServerEvent("one", big), ServerEvent("two", b"first\nsecond")]


async def test_gzip_streams_are_decoded_and_capped_after_decoding(serve: Serve) -> None:
    text = b"event: one\ndata: " + b"B" * 200_000 + b"\n\n"
    url = serve([gzip.compress(text)], {"Content-Encoding": "gzip"})
    assert await _events(url) == [ServerEvent("one", b"B" * 200_000)]
    url = serve([gzip.compress(text)], {"Content-Encoding": "gzip"})
    with pytest.raises(MalformedResponse) as caught:
        await _events(url, limit=100_000)
    assert "larger than 100000 bytes" in caught.value.detail


async def test_an_image_stream_skips_what_is_not_its_events(serve: Serve) -> None:
    """A proxy's keep-alive data, an event of another kind: ignored; the image still comes."""
    picture = base64.b64encode(png(32, 32)).decode()
    partial = {"type": "image_generation.partial_image", "b64_json": picture}
    completed = {"type": "image_generation.completed", "b64_json": picture, "size": "32x32"}
    text = (
        "data: ping\n\n"
        "event: image_generation.something_new\ndata: {}\n\n"
        f"event: image_generation.partial_image\ndata: {json.dumps(partial)}\n\n"
        "data: [DONE]\n\n"
        f"event: image_generation.completed\ndata: {json.dumps(completed)}\n\n"
    ).encode()
    seen: list[ProgressUpdate] = []
    async with ImageWorker() as worker:
        stream = ImageStream(
            "image_generation",
            1,
            progress=seen.append,
            verify=worker.verify_results,
            classify=classify_error,
            limit=10_000_000,
            what="/images/generations",
            secrets=(),
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(serve([text], {}), auto_decompress=False) as response,
        ):
            body = json.loads(await stream.read(response))
    assert [update.text for update in seen] == ["partial 1/1"] and stream.received == 1
    assert body == {"size": "32x32", "data": [{"b64_json": picture}]}
