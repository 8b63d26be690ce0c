"""A provider's answers are untrusted: where image URLs may lead and how much is read.

The fake Images API answers with URLs pointing at a second, hostile server on a loopback
address (another port, or 127.0.0.2), which serves oversized, compressed and redirecting
bodies and records every request, so a test can tell "refused before asking" from "read and
then dropped".
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from PIL import Image

from bot.providers import MalformedResponse
from bot.providers.types import GenerateRequest
from bot.testing.openai_api import FakeImagesAPI
from tests.providers.conftest import MakeClient

MB = 1024 * 1024


def noise_png(side: int) -> bytes:
    """A real PNG of about 3 bytes per pixel (noise does not compress)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def stored_png(side: int) -> bytes:
    """A real PNG stored without compression: gzip shrinks it about a thousand times."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 90, 90)).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


SMALL_PNG = noise_png(64)


@dataclass
class HostileServer:
    """Serves what a hostile image host would; ``hits`` lists every path asked for."""

    origin: str = ""
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    @property
    def port(self) -> int:
        return int(self.origin.rsplit(":", 1)[1])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/png", self._png)
        app.router.add_get("/big-chunked", self._big_chunked)
        app.router.add_get("/gzip-bomb", self._gzip_bomb)
        app.router.add_get("/hop/{left}", self._hop)
        app.router.add_get("/admin", self._png)
        app.router.add_get("/to/{target:.*}", self._redirect_to)
        app.middlewares.append(self._record)
        return app

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.hits.append(request.path)
        return await handler(request)

    async def _png(self, request: web.Request) -> web.Response:
        return web.Response(body=SMALL_PNG, content_type="image/png")

    async def _big_chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = noise_png(1300)  # about 5 MB, and a real picture
        for start in range(0, len(data), 256 * 1024):
            await response.write(data[start : start + 256 * 1024])
        await response.write_eof()
        return response

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        body = gzip.compress(stored_png(2000))  # 12 MB decoded
        headers = {"content-type": "image/png", "content-encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    async def _hop(self, request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        if left == 0:
            return web.Response(body=SMALL_PNG, content_type="image/png")
        raise web.HTTPFound(f"/hop/{left - 1}")

    async def _redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.match_info["target"])


async def start_server(server: HostileServer, host: str) -> AsyncIterator[HostileServer]:
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        pytest.skip(f"cannot listen on {host}: {exc}")
    port = runner.addresses[0][1]
    server.origin = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    """On 127.0.0.1 like the fake API, but on another port: another service."""
    async for server in start_server(HostileServer(), "127.0.0.1"):
        yield server


async def generate(client_factory: MakeClient, **settings: object) -> bytes:
    client = client_factory(model="dall-e-2", **settings)
    result = await client.generate(GenerateRequest("a fox", size="256x256"))
    return result.images[0].data


# --- where image URLs may lead --------------------------------------------------------------


async def test_an_image_on_another_port_of_the_api_host_is_not_fetched(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, hostile: HostileServer
) -> None:
    fake_images_api.misbehave_next(urls=[hostile.url("/admin")])
    with pytest.raises(MalformedResponse) as caught:
        await generate(make_client)
    assert "private address" in caught.value.detail
    assert hostile.hits == []  # refused before any request


@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
async def test_an_image_on_another_loopback_address_is_not_fetched(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, host: str
) -> None:
    async for server in start_server(HostileServer(), host):
        fake_images_api.misbehave_next(urls=[server.url("/png")])
        with pytest.raises(MalformedResponse) as caught:
            await generate(make_client)
        assert f"private address ({host})" in caught.value.detail
        assert server.hits == []


async def test_a_name_that_resolves_to_loopback_is_refused_by_its_address(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, hostile: HostileServer
) -> None:
    fake_images_api.misbehave_next(urls=[f"http://localhost:{hostile.port}/admin"])
    with pytest.raises(MalformedResponse) as caught:
        await generate(make_client)
    assert "localhost is at a private address" in caught.value.detail
    assert hostile.hits == []


async def test_a_redirect_from_the_api_host_to_an_admin_url_is_not_followed(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, hostile: HostileServer
) -> None:
    # The first hop is allowed (an operator allowed the host); the hop it leads to is not.
    async for other in start_server(HostileServer(), "127.0.0.2"):
        fake_images_api.misbehave_next(urls=[hostile.url(f"/to/{other.url('/admin')}")])
        with pytest.raises(MalformedResponse) as caught:
            await generate(make_client, allowed_hosts=(f"127.0.0.1:{hostile.port}",))
        assert "127.0.0.2" in caught.value.detail
        assert hostile.hits == [f"/to/{other.url('/admin')}"]
        assert other.hits == []


async def test_operators_may_allow_a_private_host(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, hostile: HostileServer
) -> None:
    fake_images_api.misbehave_next(urls=[hostile.url("/png")])
    assert await generate(make_client, allowed_hosts=("127.0.0.1",)) == SMALL_PNG


async def test_the_api_hosts_own_urls_keep_working(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.respond_with_url = True
    data = await generate(make_client)
    assert data.startswith(b"\x89PNG") and len(fake_images_api.downloads) == 1


@pytest.mark.parametrize(("hops", "followed"), [(3, True), (4, False)])
async def test_at_most_three_redirects_are_followed(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    hostile: HostileServer,
    hops: int,
    followed: bool,
) -> None:
    fake_images_api.misbehave_next(urls=[hostile.url(f"/hop/{hops}")])
    allowed = (f"127.0.0.1:{hostile.port}",)
    if followed:
        assert await generate(make_client, allowed_hosts=allowed) == SMALL_PNG
        return
    with pytest.raises(MalformedResponse) as caught:
        await generate(make_client, allowed_hosts=allowed)
    assert "more than 3 redirects" in caught.value.detail
    assert len(hostile.hits) == 4  # the first URL and three hops; the fourth hop not asked


# --- how much is read -----------------------------------------------------------------------


async def test_a_chunked_body_over_the_cap_is_refused(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, hostile: HostileServer
) -> None:
    fake_images_api.misbehave_next(urls=[hostile.url("/big-chunked")])
    settings = {"allowed_hosts": ("127.0.0.1",), "max_response_mb": 1}
    with pytest.raises(MalformedResponse) as caught:
        await generate(make_client, **settings)
    assert caught.value.detail == f"image download: answer larger than {MB} bytes"
    assert len(await generate(make_client, allowed_hosts=("127.0.0.1",))) > 0  # no cap: fine


async def test_a_gzip_bomb_is_refused_at_the_cap_of_decoded_bytes(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, hostile: HostileServer
) -> None:
    fake_images_api.misbehave_next(urls=[hostile.url("/gzip-bomb")])
    with pytest.raises(MalformedResponse) as caught:
        await generate(make_client, allowed_hosts=("127.0.0.1",), max_response_mb=1)
    assert caught.value.detail == f"image download: answer larger than {MB} bytes"


@pytest.mark.parametrize("compressed", [False, True], ids=["chunked", "gzip"])
async def test_a_json_answer_over_the_cap_is_refused(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, compressed: bool
) -> None:
    fake_images_api.misbehave_next(pad_bytes=3 * MB, gzip=compressed)
    with pytest.raises(MalformedResponse) as caught:
        await generate(make_client, max_response_mb=1)
    assert caught.value.detail == f"/images/generations: answer larger than {MB} bytes"


async def test_a_gzip_json_answer_within_the_cap_is_read(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.misbehave_next(pad_bytes=1000, gzip=True)
    assert (await generate(make_client)).startswith(b"\x89PNG")
