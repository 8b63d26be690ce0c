"""Posting a 1.6 MB result: the bot's upload buffer versus a plain BytesIO, in the same process.

Run: python bench/upload.py   (a few seconds; no network: a server on 127.0.0.1)
``--quick``: a few posts, to prove the script works (CI runs it).

Each post is what discord.py sends for a result: a multipart body with ``payload_json`` and one
``files[0]`` part, the photo-like 1024x1024 PNG of about 1.6 MB the image-API fake answers. A
plain ``io.BytesIO`` goes through aiohttp's BytesIOPayload (it asks for the buffer, which copies
the shared bytes, then writes 64 KB pieces with a loop turn between each); the bot's
``bot.discord.files.UploadBuffer`` is written in one piece from the bytes themselves. The two
alternate, post after post, against an aiohttp server in a process of its own that reads each
body whole (as Discord's intake does) and answers. Printed: medians of the wall time of a post
and of this process's CPU for it, and the ratio of ours to the baseline.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import io  # noqa: E402
import multiprocessing  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.discord.files import UploadBuffer  # noqa: E402
from bot.testing import openai_rules  # noqa: E402

POSTS, WARMUP = 400, 40


def _serve(sock: socket.socket) -> None:
    async def intake(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=str(len(body)))

    async def run() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", intake)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(run())


async def measure(url: str, image: bytes) -> dict[str, tuple[list[float], list[float]]]:
    kinds = {"io.BytesIO (baseline)": io.BytesIO, "UploadBuffer (ours)": UploadBuffer}
    figures: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in kinds}
    async with aiohttp.ClientSession() as session:
        for number in range(WARMUP + POSTS):
            name = list(kinds)[number % 2]
            form = aiohttp.FormData()
            form.add_field("payload_json", "{}", content_type="application/json")
            form.add_field("files[0]", kinds[name](image), filename="image_1.png")
            wall, cpu = time.perf_counter(), time.process_time()
            async with session.post(url, data=form) as response:
                assert int(await response.text()) > len(image), "the server got less than sent"
            if number >= WARMUP:
                figures[name][0].append(time.perf_counter() - wall)
                figures[name][1].append(time.process_time() - cpu)
    return figures


def main(quick: bool) -> None:
    image = openai_rules.make_noisy_image(1024, 1024, (90, 140, 200), "png", 2)
    sock = socket.create_server(("127.0.0.1", 0))
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        figures = asyncio.run(measure(url, image))
    finally:
        server.terminate()
        server.join()
    mode = " (quick mode: not the benchmark)" if quick else ""
    print(f"### Upload benchmark ({POSTS} posts of a {len(image) / 1e6:.1f} MB PNG){mode}\n")
    print("| upload buffer | wall per post (median) | CPU per post, the poster's (median) |")
    print("|---|---:|---:|")
    medians = {}
    for name, (walls, cpus) in figures.items():
        medians[name] = statistics.median(walls), statistics.median(cpus)
        wall, cpu = medians[name]
        print(f"| {name} | {wall * 1000:.2f} ms | {cpu * 1000:.2f} ms |")
    (base_wall, base_cpu), (our_wall, our_cpu) = medians.values()
    print(f"\nours / baseline: wall {our_wall / base_wall:.2f}x, CPU {our_cpu / base_cpu:.2f}x")


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        POSTS, WARMUP = 10, 2
    main(QUICK)
