"""Benchmark: the bot's peak memory while a burst of members vary 12-megapixel photos at once.

Run with ``python bench/memory.py`` (about 25 s; no network; ``--quick``: a burst of 4, to prove
the script works, as CI does). The bot runs as an operator starts it, ``python -m bot run`` in a
subprocess, against the fake Discord and the fake image API running in this process; so what is
measured is the bot alone, not this script's photos, the fake CDN's copies or its bookkeeping.

N members (each their own, so no per-member limit refuses one) send ``/vary`` with a 4000x3000
phone-like JPEG (4.4 MB) at the same moment. The fake CDN serves each upload as Discord does.
Measured: the bot's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``) once it is
connected and idle, and again after every request has its result posted; the slowest answer to
an interaction (Discord drops an interaction not answered within 3 s); and how many results
were posted. Target (DESIGN.md section 6): N=20 under 250 MB peak, every request answered
within 3 s, none lost.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.testing.discord import FakeDiscord  # noqa: E402
from bot.testing.images import photo_jpeg  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
BURST = 20
TARGET_MB = 250
ACK_WITHIN = 3.0
ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set since it started (Linux ``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM in /proc/<pid>/status (not Linux?)")


def write_config(folder: Path, fake: FakeDiscord, api: FakeImagesAPI) -> Path:
    path = folder / "config.toml"
    path.write_text(
        "[discord]\n"
        f'api_base_url = "{fake.api_base}"\n'
        f'gateway_url = "{fake.gateway_url}"\n'
        "[provider]\n"
        f'base_url = "{api.base_url}"\n'
        'model = "dall-e-2"\n'
        "max_retries = 0\n"
        "images_per_minute = 100000\n"  # the provider's pacing is bench/dispatch.py's subject
        "[database]\n"
        f'url = "sqlite+aiosqlite:///{folder / "bot.db"}"\n',
        encoding="utf-8",
    )
    return path


def bot_env(fake: FakeDiscord, api: FakeImagesAPI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEBOT_CONFIG", "DATABASE_URL")}
    env.update(
        PYTHONPATH=str(ROOT),
        DISCORD_TOKEN=fake.token,
        OPENAI_API_KEY=api.api_key,
    )
    return env


async def burst(n: int, photo: bytes) -> tuple[float, float, float, int]:
    """Idle peak MB, peak MB after the burst, slowest acknowledgement (s), results posted."""
    with tempfile.TemporaryDirectory() as folder:
        async with FakeDiscord() as fake, FakeImagesAPI() as api:
            config = write_config(Path(folder), fake, api)
            log = Path(folder) / "bot.log"
            with log.open("wb") as stderr:  # the child writes to its own copy
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    "run",
                    "--config",
                    str(config),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=stderr,
                    env=bot_env(fake, api),
                    cwd=folder,
                )
            try:
                await fake.wait_ready(count=1, timeout=30)
                await fake.state.pulse.wait_until(
                    lambda: True if fake.commands else None, 10, lambda: "the command sync"
                )
                await asyncio.sleep(1.0)  # discord.py collects the guilds for a moment
                members = [fake.add_member(fake.guild, f"member {i}") for i in range(n)]
                uploads = [fake.add_attachment(photo, f"photo{i}.jpg") for i in range(n)]
                await fake.flush()
                idle = peak_rss_mb(process.pid)
                handles = await asyncio.gather(
                    *(
                        fake.slash("vary", {"image": upload}, user=member)
                        for upload, member in zip(uploads, members, strict=True)
                    )
                )
                acks = []
                for handle in handles:
                    await handle.response(timeout=30)
                    acks.append(handle.responded_within or float("inf"))

                def posted() -> int:
                    return sum(
                        1
                        for m in fake.messages(sources=("channel", "followup", "response"))
                        if m.attachments and not m.ephemeral
                    )

                await fake.state.pulse.wait_until(
                    lambda: True if posted() >= n else None, 120, lambda: "the results"
                )
                peak = peak_rss_mb(process.pid)
                return idle, peak, max(acks), posted()
            except BaseException:
                print(log.read_text(errors="replace")[-4000:], file=sys.stderr)  # why it broke
                raise
            finally:
                process.terminate()
                await process.wait()


def main() -> None:
    photo = photo_jpeg()
    sizes = (4,) if QUICK else (1, 4, BURST)
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    rows = [(n, *asyncio.run(burst(n, photo))) for n in sizes]
    print(f"### Memory benchmark ({os.cpu_count()} CPUs){mode}")
    print()
    print(
        f"N members each /vary a 12 MP JPEG (4000x3000, {len(photo) / 1e6:.1f} MB) at once; "
        "`python -m bot run` in a subprocess:"
    )
    print()
    print("| uploads at once | peak RSS idle | peak RSS, burst | slowest answer | posted |")
    print("|---:|---:|---:|---:|---:|")
    for n, idle, peak, slowest, posted in rows:
        print(f"| {n} | {idle:.0f} MB | {peak:.0f} MB | {slowest:.2f} s | {posted}/{n} |")
    print()
    n, _, peak, slowest, posted = rows[-1]
    met = peak < TARGET_MB and slowest < ACK_WITHIN and posted == n
    print(
        f"target for N={BURST}: peak < {TARGET_MB} MB, every answer within {ACK_WITHIN:.0f} s, "
        f"none lost: {'yes' if met and n == BURST else 'NO' if n == BURST else 'n/a (quick)'}"
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    main()
