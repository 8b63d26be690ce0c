"""Streamed previews: what reading a streamed answer costs the bot, against the same unstreamed.

Run: python bench/stream.py   (about a minute; no network: the fake image API on 127.0.0.1)
``--quick``: two rounds instead of 15, to prove the script works (CI runs it).

The ImagesClient asks the fake image API (a process of its own) for one 1024x1024 gpt-image-1
image, a photo-like PNG of about 1.6 MB (``noise_bits = 2``), and so is each partial image. Per
request, in this process: the CPU time (``time.process_time``: the event loop, the threads that
decode base64 and the image worker that checks every picture, partials included), the wall time,
and the longest stall of the event loop (the largest gap of a task that sleeps 1 ms in a loop,
minus that 1 ms): a streamed answer is split into lines on the loop, but its base64 is decoded
and its pictures are checked off it, so the stall must not grow with the partials. Baseline:
the same request unstreamed (no progress callback), in the same process, the modes interleaved
round by round. Figures are medians; the ratio is CPU time against the unstreamed request.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()
_bench.skip_spec_checks()  # the fake's request checks are not the bot's cost

import asyncio  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402

from bot.config import ProviderSettings  # noqa: E402
from bot.imaging import ImageWorker  # noqa: E402
from bot.providers import GenerateRequest, ImagesClient, build_model_table  # noqa: E402
from bot.providers.progress import ProgressUpdate  # noqa: E402

ROUNDS = 15
#: Partial images per mode; None: asked for without streaming (the baseline).
MODES: tuple[int | None, ...] = (None, 1, 3)
TICK = 0.001


class Stalls:
    """The longest gap of a task sleeping ``TICK`` in a loop, while it runs."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stalls:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - TICK)
            last = now


async def one(client: ImagesClient, partials: int | None) -> tuple[float, float, float, int]:
    """CPU ms, wall ms, longest stall ms and previews of one request."""
    previews: list[ProgressUpdate] = []
    request = GenerateRequest("a lighthouse at dusk", size="1024x1024", quality="low")
    cpu, wall = time.process_time(), time.perf_counter()
    async with Stalls() as stalls:
        progress = None if partials is None else previews.append
        result = await client.generate(request, progress=progress)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert len(result.images) == 1 and len(previews) == (partials or 0)
    return cpu * 1000, wall * 1000, stalls.longest * 1000, len(previews)


async def main(base_url: str, api_key: str) -> None:
    async with aiohttp.ClientSession() as session, ImageWorker() as worker:
        clients = {
            mode: ImagesClient(
                session,
                ProviderSettings(
                    base_url=base_url,
                    api_key=api_key,
                    model="gpt-image-1",
                    partial_images=mode or 1,
                    max_retries=0,
                ),
                build_model_table({}),
                verify=worker.verify_results,
            )
            for mode in MODES
        }
        for mode in MODES:  # warm up: the fake makes each picture once
            await one(clients[mode], mode)
        samples: dict[int | None, list[tuple[float, float, float, int]]] = {m: [] for m in MODES}
        for _ in range(ROUNDS):
            for mode in MODES:
                samples[mode].append(await one(clients[mode], mode))
    base = statistics.median(s[0] for s in samples[None])
    print(f"\n{ROUNDS} rounds, one 1024x1024 photo-like PNG (~1.6 MB) per picture\n")
    print("| request | previews | CPU ms (median) | ratio | wall ms (median) | longest stall ms |")
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        cpu = statistics.median(s[0] for s in samples[mode])
        wall = statistics.median(s[1] for s in samples[mode])
        stall = statistics.median(s[2] for s in samples[mode])
        name = "unstreamed" if mode is None else f"streamed, partial_images={mode}"
        previews = samples[mode][0][3]
        print(f"| {name} | {previews} | {cpu:.1f} | {cpu / base:.2f}x | {wall:.1f} | {stall:.1f} |")


if __name__ == "__main__":
    if _bench.quick_mode(__doc__):
        ROUNDS = 2
    with _bench.images_api_process(noise_bits=2) as (url, key):
        asyncio.run(main(url, key))
