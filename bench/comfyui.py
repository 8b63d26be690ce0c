"""ComfyUI client: how old a preview is when it is passed on, and the client's overhead per job.

Run: python bench/comfyui.py   (about 15 s; no network: the fake ComfyUI on 127.0.0.1)
``--quick``: two jobs instead of ten, to prove the script works (CI runs it).

The fake server samples 20 steps of 50 ms per 512x512 image and sends a JPEG preview frame
after each step on the prompt's websocket, as ComfyUI started with ``--preview-method auto``
does. For each preview the progress callback receives we take its age: the time since the
server sent the frame (issue 12's target for the whole path to the Discord edit: under 500 ms
at the median; the edit itself is not in this figure), which covers reading the frame,
checking it on the image worker and the callback. Overhead per job: the whole ``generate`` call
minus the time the server had the prompt, from receiving it to writing its history (target:
under 50 ms at the median): the uploads are none here, so it is the websocket, the prompt's
submission, ``/history`` and ``/view``, and verifying the image.

Then the whole bot on ``[provider] type = "comfyui"`` (fake Discord, the queue, SQLite, the image
worker), the fake ComfyUI in a process of its own making 1024x1024 PNGs of about 1.6 MB: the time
from an /imagine to its result posted, minus the client's own time for the ComfyUI call
(bench/_bench.py ``bot_overhead``). Target: under 50 ms at the median.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402

from bot.config import ProviderSettings  # noqa: E402
from bot.imaging import ImageWorker  # noqa: E402
from bot.imaging.backend_masks import white_repaints  # noqa: E402
from bot.providers import GenerateRequest  # noqa: E402
from bot.providers.comfyui import ComfyUIClient  # noqa: E402
from bot.providers.progress import ProgressUpdate  # noqa: E402
from bot.testing.comfyui import FakeComfyUI  # noqa: E402
from bot.testing.harness import comfyui_backend  # noqa: E402

QUICK = False
RUNS = 10
BOT_RUNS = 15
STEPS = 20
STEP_SECONDS = 0.05


async def main() -> None:
    ages: list[float] = []
    overheads: list[float] = []
    cpu: list[float] = []
    async with (
        FakeComfyUI(step_delay=STEP_SECONDS) as fake,
        aiohttp.ClientSession() as session,
        ImageWorker() as images,
    ):

        async def convert_mask(mask: bytes) -> bytes:
            return await images.run(white_repaints, mask)

        settings = ProviderSettings(type="comfyui", base_url=fake.base_url, model="")
        client = ComfyUIClient(
            session,
            settings,
            name="bench",
            verify=images.verify_results,
            convert_mask=convert_mask,
        )
        for index in range(RUNS):
            received: list[float] = []

            def on_progress(update: ProgressUpdate, received: list[float] = received) -> None:
                if update.preview is not None:
                    received.append(time.monotonic())

            started, started_cpu = time.monotonic(), time.process_time()
            await client.generate(
                GenerateRequest(f"a lighthouse {index}", size="512x512", steps=STEPS),
                progress=on_progress,
            )
            total = time.monotonic() - started
            cpu.append(time.process_time() - started_cpu)
            run = fake.runs[list(fake.runs)[-1]]
            overheads.append(total - (run.finished - run.arrived))
            ages.extend(got - sent for sent, got in zip(run.previews, received, strict=False))

    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(
        f"### ComfyUI client benchmark ({RUNS} jobs of {STEPS} steps x "
        f"{STEP_SECONDS * 1000:.0f} ms, a preview frame per step){mode}\n"
    )
    print("| measure | median | 90th percentile |")
    print("|---|---:|---:|")
    for name, values, target in (
        ("preview age when passed on (frame sent -> callback)", ages, 0.5),
        (
            "client overhead per job (call minus prompt received -> history written)",
            overheads,
            0.05,
        ),
        ("CPU time per job, client and fake server together", cpu, None),
    ):
        _bench.print_timing_row(name, values, target)
    print(f"\n{len(ages)} previews passed on; the CPU was shared with the fake server.")


async def bot_overhead(base_url: str) -> None:
    """The whole bot on ``[provider] type = "comfyui"`` (see bench/_bench.py bot_overhead)."""
    server = FakeComfyUI()  # not started: the one in the other process answers
    server.base_url = base_url
    overheads, cpu = await _bench.bot_overhead(comfyui_backend(server), "prompt", BOT_RUNS)
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    _bench.report_overhead(
        f"Bot on a ComfyUI backend (median of {BOT_RUNS} /imagine, {STEPS} steps x "
        f"{STEP_SECONDS * 1000:.0f} ms, one 1024x1024 PNG of about 1.6 MB each){mode}",
        "ComfyUI call: prompt submitted to images fetched",
        "ComfyUI",
        overheads,
        cpu,
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        RUNS = 2
        BOT_RUNS = 2
    with _bench.comfyui_process(step_delay=STEP_SECONDS) as url:
        asyncio.run(main())
        asyncio.run(bot_overhead(url))
