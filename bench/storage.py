"""Database growth per 1,000 images: while results wait, once posted, after the retention.

Run: python bench/storage.py [--quick]   (about 90 s; --quick: about 10 s, for CI)

Jobs run through the real job runner, engine and SQLite database against the fake image API,
which answers with photo-like PNGs (about 1.6 MB at 1024x1024, what real answers weigh). Half
the jobs are /imagine, half /edit of a phone-photo-sized upload (a 2048x1536 PNG of about 5 MB,
normalized to the 1024x1024 square PNG that is sent). The database file (with its WAL) is
measured after every job has made its images (results waiting to be posted), after every result
is recorded as posted (the bot drops a result's bytes then), and after a retention pass as if
``retention_days`` had passed. Figures are per 1,000 images made.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's queue module, which asyncio imports: take
# this folder off the import path before anything else is imported, and put the project on it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

from PIL import Image, ImageDraw  # noqa: E402

from bot.app import build_catalogues, open_engine, open_storage  # noqa: E402
from bot.config import (  # noqa: E402
    DatabaseSettings,
    JobsSettings,
    ProviderSettings,
    Settings,
)
from bot.db.engine import Storage  # noqa: E402
from bot.db.models import Job, utcnow  # noqa: E402
from bot.generation import ImageOrder  # noqa: E402
from bot.jobs import JobOrigin, JobRunner, store  # noqa: E402
from bot.jobs.retention import prune  # noqa: E402
from bot.providers import GeneratedImage, Operation  # noqa: E402
from bot.testing.harness import ROOMY_QUOTAS  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402
from bot.testing.openai_rules import make_noisy_image  # noqa: E402

JOBS, QUICK_JOBS = 60, 6
RETENTION_DAYS = 30
SIZE = "1024x1024"


def _mask() -> bytes:
    """White marks the area to repaint (the lower third of the photo)."""
    image = Image.new("L", (2048, 1536), 0)
    ImageDraw.Draw(image).rectangle((0, 1024, 2047, 1535), fill=255)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


MASK = _mask()


class Made:
    """The runner's listener: counts finished jobs; results are posted later, all at once."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.posted: list[int] = []
        self.images = 0
        self.changed = asyncio.Event()

    async def job_queued(self, job: Job, place: Any) -> None:
        pass

    async def job_succeeded(self, job: Job, images: list[GeneratedImage]) -> list[tuple[int, int]]:
        self.images += len(images)
        self.posted.append(job.id)
        self._finish(job)
        return []  # recorded as delivered below, once the database is measured

    async def job_failed(self, job: Job, error: Any) -> None:
        raise SystemExit(f"job {job.id} failed: {error}")

    async def job_interrupted(self, job: Job) -> None:
        self._finish(job)

    def _finish(self, job: Job) -> None:
        self.done.append(job.id)
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        while len(self.done) < count:
            self.changed.clear()
            await self.changed.wait()


async def database_bytes(storage: Storage, path: Path) -> int:
    async with storage.engine.connect() as connection:
        await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def orders(count: int) -> list[tuple[ImageOrder, str]]:
    result = []
    for index in range(count):
        if index % 2 == 0:
            prompt = f"a harbour at dawn {index}"
            result.append((ImageOrder(Operation.GENERATE, prompt=prompt, size=SIZE), "imagine"))
        else:
            photo = make_noisy_image(2048, 1536, (90, 120, 160 - index % 50), "png", 2)
            prompt = f"add a boat {index}"
            edit = ImageOrder(Operation.EDIT, prompt=prompt, image=photo, mask=MASK, size=SIZE)
            result.append((edit, "edit"))
    return result


async def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bot.db"
        async with FakeImagesAPI() as api:
            api.noise_bits = 2
            settings = Settings(
                provider=ProviderSettings(
                    base_url=api.base_url,
                    api_key=api.api_key,
                    model="dall-e-2",
                    max_retries=0,
                    user_salt="bench",
                    images_per_minute=100_000,
                ),
                database=DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"),
                jobs=JobsSettings(concurrency=2, max_queued_per_member=1000),
                quotas=ROOMY_QUOTAS,
            )
            async with open_storage(settings) as storage, open_engine(settings) as engine:
                await prune(storage, timedelta(days=RETENTION_DAYS))  # a bot's first pass
                empty = await database_bytes(storage, path)
                prices = build_catalogues(settings).prices
                runner = JobRunner(engine, storage.sessions, settings, prices=prices)
                made = Made()
                runner.set_listener(made)
                await runner.start()
                uploads = 0
                try:
                    for index, (order, command) in enumerate(orders(count)):
                        uploads += len(order.image or b"") + len(order.mask or b"")
                        origin = JobOrigin(
                            user_id=index,
                            guild_id=1,
                            channel_id=1,
                            parent_channel_id=None,
                            role_ids=(),
                        )
                        await runner.submit(order, origin, command=command)
                    await made.wait_for(count)
                    await runner.wait_idle()  # the last results are recorded, not only posted
                finally:
                    await runner.close()
                waiting = await database_bytes(storage, path)
                for job_id in made.posted:
                    await store.record_delivery(storage.sessions, job_id, [(1, 10_000 + job_id)])
                await prune(storage, timedelta(days=RETENTION_DAYS))  # tokens; gives space back
                posted = await database_bytes(storage, path)
                later = utcnow() + timedelta(days=RETENTION_DAYS + 1)
                await prune(storage, timedelta(days=RETENTION_DAYS), now=later)
                after = await database_bytes(storage, path)
    per_thousand = 1000 / made.images
    return {
        "waiting": (waiting - empty) * per_thousand,
        "posted": (posted - empty) * per_thousand,
        "pruned": (after - empty) * per_thousand,
        "raw uploads": uploads * per_thousand,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_JOBS} jobs instead of {JOBS}")
    count = QUICK_JOBS if parser.parse_args().quick else JOBS
    figures = asyncio.run(measure(count))
    mb = 1_000_000
    print(f"### Database growth per 1,000 images ({count} jobs, half /imagine, half /edit)\n")
    print("| stage | bytes per 1,000 images |")
    print("|---|---:|")
    print(f"| made, waiting to be posted | {figures['waiting'] / mb:,.0f} MB |")
    print(f"| posted (inputs of edits kept for Redo/Remix) | {figures['posted'] / mb:,.0f} MB |")
    pruned = figures["pruned"] / mb
    print(f"| after {RETENTION_DAYS} days (pruned: the ledger rows) | {pruned:,.2f} MB |")
    print(
        f"| (for comparison) the edits' raw uploads, no longer kept | "
        f"{figures['raw uploads'] / mb:,.0f} MB |"
    )


if __name__ == "__main__":
    main()
