"""Live previews: from the backend making a preview to Discord receiving the edit that shows it.

Run: python bench/preview.py   (about 80 s; no network: the fakes on 127.0.0.1)
``--quick``: one short job per row, to prove the script works (CI runs it).

The whole path a member's preview takes: the fake AUTOMATIC1111 server samples 20 steps of
150 ms (a 512x512 image on a mid-range GPU) and makes a live preview when asked, once
``show_progress_every_n_steps`` steps passed (A1111's default 10; then 4 and 2: previews about
as often as one edit a second, and faster); the real A1111 client polls it every 0.5 s and
hands each update to the bot's listener; the status board coalesces and paces them and a real
discord.py client edits the job's private status message on the fake Discord, which limits the
interaction webhook to 5 requests per 2 s. For every edit that carries a preview: the time from
the server making that preview to the fake Discord receiving the edit (issue 12's target: under
500 ms at the median), split into the client's part (made -> handed to the listener) and the
bot's (listener -> edit received: the wait for the pace, the multipart upload). The bot runs as
configured with ``[provider] type = "automatic1111"``: each job goes the way a member's does.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()
_bench.skip_spec_checks()

import hashlib  # noqa: E402
import itertools  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.db.models import Job  # noqa: E402
from bot.providers.progress import ProgressUpdate  # noqa: E402
from bot.testing.automatic1111 import FakeAutomatic1111  # noqa: E402
from bot.testing.discord import FakeDiscord  # noqa: E402
from bot.testing.harness import Harness, a1111_backend, make_settings, run_bot  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
RUNS = 6
#: The A1111 client's default steps (the member chose none).
STEPS = 20
STEP_SECONDS = 0.15
TARGET = 0.5


async def one_job(h: Harness, fake_sd: FakeAutomatic1111, index: int) -> dict[str, list[float]]:
    """One /imagine on the A1111 backend; the figures of its status message's edits."""
    seen = len(h.fake.requests)
    before = set(h.fake.state.messages)
    await h.fake.slash("imagine", {"prompt": f"a lighthouse {index}"}, user=h.fake.user)
    await h.result(lambda m: m.id not in before, timeout=60)
    await h.idle()
    run = fake_sd.runs[-1]
    figures: dict[str, list[float]] = {"total": [], "client": [], "bot": [], "gaps": []}
    edits = [
        r
        for r in h.fake.requests[seen:]
        if r.method == "PATCH"
        and r.path.endswith("/@original")
        and "%" in str((r.json or {}).get("content"))
    ]
    figures["gaps"] = [b.at - a.at for a, b in itertools.pairwise(edits)]
    for edit in edits:
        if not edit.files:
            continue
        got = HANDED.get(digest(edit.files[0].data))
        if got is None:
            continue
        made = max((t for t, _ in run.previews if t <= got), default=None)
        if made is None:
            continue
        figures["total"].append(edit.at - made)
        figures["client"].append(got - made)
        figures["bot"].append(edit.at - got)
    figures["made"] = [float(len(run.previews))]
    figures["refused"] = [float(sum(1 for r in h.fake.requests[seen:] if r.status == 429))]
    return figures


#: Preview digest -> when the bot's listener was handed it (see :func:`note_handing`).
HANDED: dict[str, float] = {}


def note_handing(h: Harness) -> None:
    """Note when each preview reaches the listener (to split the time into the client's part
    and the bot's); the update goes on to the listener unchanged."""
    delivery = h.bot.delivery
    listener = delivery.job_progress

    def job_progress(job: Job, update: ProgressUpdate) -> None:
        if update.preview is not None:
            HANDED[digest(update.preview)] = time.monotonic()
        listener(job, update)

    delivery.job_progress = job_progress  # type: ignore[method-assign]


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


#: (name, show_progress_every_n_steps): A1111's default, and previews as often as one edit a
#: second, and faster than that (the period lowered), where some are superseded.
SCENARIOS = (
    ("A1111 default: a preview every 10 steps", 10),
    ("a preview every 4 steps", 4),
    ("a preview every 2 steps", 2),
)


async def main() -> None:
    results: list[tuple[str, dict[str, list[float]]]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with (
            FakeDiscord() as fake,
            FakeImagesAPI() as api,
            FakeAutomatic1111(step_delay=STEP_SECONDS) as fake_sd,
        ):
            fake.limit_route("*", r"^/webhooks/", 5, 2.0)
            settings = make_settings(Path(folder), fake, api, **a1111_backend(fake_sd))
            async with run_bot(fake, api, settings, a1111=fake_sd) as h:
                note_handing(h)
                for name, every in SCENARIOS:
                    fake_sd.options["show_progress_every_n_steps"] = every
                    totals: dict[str, list[float]] = {}
                    for index in range(RUNS):
                        for key, values in (await one_job(h, fake_sd, index)).items():
                            totals.setdefault(key, []).extend(values)
                    results.append((name, totals))
    report(results)


def report(results: list[tuple[str, dict[str, list[float]]]]) -> None:
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(
        f"### Preview benchmark ({RUNS} jobs per row, {STEPS} steps x {STEP_SECONDS * 1000:.0f} ms"
        f" each, polled every 0.5 s; edits at most 1/s, the bar alone every 2 s){mode}\n"
    )
    print(
        "| backend | previews made / shown | made -> edit received, median (p90) |"
        " client part | bot part | edits: shortest gap | 429s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, totals in results:
        total = totals.get("total", [])
        made, refused = int(sum(totals.get("made", []))), int(sum(totals.get("refused", [])))
        gaps = totals.get("gaps", [])
        verdict = ""
        if total:
            ok = statistics.median(total) < TARGET
            verdict = f" (target < {TARGET * 1000:.0f} ms: {'yes' if ok else 'NO'})"
        print(
            f"| {name} | {made} / {len(total)} | {_ms(total)}{verdict} |"
            f" {_ms(totals.get('client', []), p90=False)} | {_ms(totals.get('bot', []), p90=False)}"
            f" | {f'{min(gaps) * 1000:.0f} ms' if gaps else 'one edit'} | {refused} |"
        )
    print(
        "\nclient part: made -> handed to the bot's listener (the A1111 client's polls);"
        " bot part: listener -> edit received by the fake Discord (the pace, the upload)."
        " One process: the bot, both fakes and the client share the CPU."
    )


def _ms(values: list[float], *, p90: bool = True) -> str:
    if not values:
        return "none"
    median = statistics.median(values) * 1000
    if not p90:
        return f"{median:.0f} ms"
    high = (statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]) * 1000
    return f"{median:.0f} ms ({high:.0f} ms)"


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        RUNS, STEP_SECONDS = 1, 0.06
    import asyncio

    asyncio.run(main())
