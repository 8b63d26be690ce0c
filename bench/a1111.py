"""AUTOMATIC1111 client: how old a live preview is when it is passed on, and the client's overhead.

Run: python bench/a1111.py   (about 30 s; no network: the fake A1111 server on 127.0.0.1)
``--quick``: two jobs of each instead of ten and fifteen, to prove the script works (CI runs it).

The fake server samples 20 steps of 50 ms per 512x512 image and makes a preview every 2 steps,
as a fast GPU with ``show_progress_every_n_steps = 2`` would. The client polls at its default
interval (0.5 s). For each preview the progress callback receives we take its age: the time
since the server reached the step the preview shows (issue 12's target for the whole path to
the Discord edit: under 500 ms at the median; the edit itself is not in this figure). The
client's own time per update is the time from the server making the preview to the callback
getting it, decoded and verified. A1111 makes a preview when it is asked for one, so a preview
is never older than the last step; what a member sees lags by up to the poll interval between
two previews. Overhead per job: the whole ``generate`` call minus the time the server spent on
the job, from reading the request to encoding the answer (target: under 50 ms at the median).

Then the whole bot on ``[provider] type = "automatic1111"`` (fake Discord, the queue, SQLite,
the image worker), the fake server in a process of its own with answers of real renders' weight
(1024x1024 PNGs of about 1.6 MB): the time from an /imagine to its result posted, minus the
client's own time for the txt2img call (request sent to answer read), as bench/e2e.py measures
it for OpenAI. Target: under 50 ms at the median.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402

from bot.config import ProviderSettings  # noqa: E402
from bot.imaging import ImageWorker  # noqa: E402
from bot.imaging.backend_masks import white_repaints  # noqa: E402
from bot.providers import GenerateRequest  # noqa: E402
from bot.providers.automatic1111 import Automatic1111Client  # noqa: E402
from bot.providers.progress import ProgressUpdate  # noqa: E402
from bot.testing.automatic1111 import FakeAutomatic1111  # noqa: E402
from bot.testing.harness import a1111_backend  # noqa: E402

QUICK = False
RUNS = 10
BOT_RUNS = 15
SOURCES = ("channel", "followup", "response")
STEPS = 20
STEP_SECONDS = 0.05


async def main() -> None:
    ages: list[float] = []
    client_times: list[float] = []
    overheads: list[float] = []
    gaps: list[float] = []
    async with (
        FakeAutomatic1111(step_delay=STEP_SECONDS) as fake,
        aiohttp.ClientSession() as session,
        ImageWorker() as images,
    ):
        fake.options["show_progress_every_n_steps"] = 2

        async def convert_mask(mask: bytes) -> bytes:
            return await images.run(white_repaints, mask)

        settings = ProviderSettings(type="automatic1111", base_url=fake.base_url, model="")
        client = Automatic1111Client(
            session, settings, verify=images.verify_results, convert_mask=convert_mask
        )
        for index in range(RUNS):
            received: list[float] = []

            def on_progress(update: ProgressUpdate, received: list[float] = received) -> None:
                if update.preview is not None:
                    received.append(time.monotonic())

            started = time.monotonic()
            await client.generate(
                GenerateRequest(f"a lighthouse {index}", size="512x512", steps=STEPS),
                progress=on_progress,
            )
            total = time.monotonic() - started
            run = fake.runs[-1]
            overheads.append(total - (run.answered - run.arrived))
            gaps.extend(later - earlier for earlier, later in itertools.pairwise(received))
            for got in received:
                made, step = max((p for p in run.previews if p[0] <= got), default=(got, 0))
                if step:
                    ages.append(got - run.step_times[step - 1])
                    client_times.append(got - made)

    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(
        f"### A1111 client benchmark ({RUNS} jobs of {STEPS} steps x {STEP_SECONDS * 1000:.0f} ms,"
        f" preview every 2 steps, polled every 0.5 s){mode}\n"
    )
    print("| measure | median | 90th percentile |")
    print("|---|---:|---:|")
    for name, values, target in (
        ("preview age when passed on (step reached -> callback)", ages, 0.5),
        ("client time per preview (made -> callback: HTTP, decode, verify)", client_times, None),
        ("time between two previews passed on (the poll interval)", gaps, None),
        ("client overhead per job (call minus request read -> answer encoded)", overheads, 0.05),
    ):
        _bench.print_timing_row(name, values, target)
    print(f"\n{len(ages)} previews passed on; the CPU was shared with the fake server.")


async def bot_overhead(base_url: str) -> None:
    """The whole bot on ``[provider] type = "automatic1111"`` (see bench/_bench.py bot_overhead)."""
    server = FakeAutomatic1111()  # not started: the one in the other process answers
    server.base_url = base_url
    overheads, cpu = await _bench.bot_overhead(a1111_backend(server), "txt2img", BOT_RUNS)
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    _bench.report_overhead(
        f"Bot on an A1111 backend (median of {BOT_RUNS} /imagine, 20 steps x 50 ms, "
        f"one 1024x1024 PNG of about 1.6 MB each){mode}",
        "txt2img call: request sent to answer read",
        "A1111",
        overheads,
        cpu,
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        RUNS = 2
        BOT_RUNS = 2
    with _bench.a1111_process(step_delay=STEP_SECONDS) as url:
        asyncio.run(main())
        asyncio.run(bot_overhead(url))
