"""Paid images kept on disk while the database cannot take them.

When the provider has answered but the database write fails (locked past the busy timeout, disk
full, a read-only file), losing the images means the operator pays twice: the member retries.
The runner writes them here instead (``[storage] spool_dir``), posts them from here, and records
them once the database is back (at start and on a timer), then removes them. A result posted
while its delivery could not be recorded leaves a small "posted" note, so it is recorded as
delivered rather than posted again.

Files are named by job id and written atomically (a temporary file, then a rename): the JSON
file is written last, so a process killed mid-way leaves either a whole entry or no entry.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.providers import GeneratedImage, ImageResult
from bot.providers.types import ImageUsage


@dataclass(frozen=True)
class Posted:
    """Where a spooled (or unrecorded) result was posted."""

    channel_id: int | None
    message_id: int


@dataclass(frozen=True)
class SpoolEntry:
    """One job's kept result (None: only its posting is left to record) and its posting."""

    job_id: int
    result: ImageResult | None
    cost: int
    posted: Posted | None


class Spool:
    """A directory of results waiting for the database; every method is synchronous file I/O
    (call it through ``asyncio.to_thread``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def keep(self, job_id: int, result: ImageResult, cost: int) -> None:
        """Write the images, then the JSON that makes the entry whole."""
        self.directory.mkdir(parents=True, exist_ok=True)
        images = []
        for position, image in enumerate(result.images):
            name = f"job-{job_id}-{position}.{image.extension}"
            _write(self.directory / name, image.data)
            images.append(
                {
                    "file": name,
                    "mime_type": image.mime_type,
                    "width": image.width,
                    "height": image.height,
                    "revised_prompt": image.revised_prompt,
                }
            )
        meta = {
            "job_id": job_id,
            "cost_micro_usd": cost,
            "images": images,
            "model": result.model,
            "size": result.size,
            "quality": result.quality,
            "background": result.background,
            "output_format": result.output_format,
            "usage": asdict(result.usage) if result.usage is not None else None,
            "created": result.created,
        }
        _write(self._meta(job_id), json.dumps(meta).encode())

    def mark_posted(self, job_id: int, channel_id: int | None, message_id: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        note = {"channel_id": channel_id, "message_id": message_id}
        _write(self._posted(job_id), json.dumps(note).encode())

    def has(self, job_id: int) -> bool:
        return self._meta(job_id).exists() or self._posted(job_id).exists()

    def entries(self) -> list[SpoolEntry]:
        """Every whole entry, oldest job first."""
        if not self.directory.is_dir():
            return []
        ids = set()
        for path in self.directory.glob("job-*.json"):
            number = path.name.removeprefix("job-").split(".", 1)[0]
            if number.isdigit():
                ids.add(int(number))
        return [self._entry(job_id) for job_id in sorted(ids)]

    def remove(self, job_id: int) -> None:
        """The entry is recorded: its files go (the JSON first, so no half entry is left)."""
        for path in (self._meta(job_id), self._posted(job_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path in self.directory.glob(f"job-{job_id}-*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _entry(self, job_id: int) -> SpoolEntry:
        result, cost = None, 0
        if self._meta(job_id).exists():
            meta = json.loads(self._meta(job_id).read_text(encoding="utf-8"))
            result = _result(meta, self.directory)
            cost = int(meta["cost_micro_usd"])
        posted = None
        if self._posted(job_id).exists():
            note = json.loads(self._posted(job_id).read_text(encoding="utf-8"))
            posted = Posted(note["channel_id"], int(note["message_id"]))
        return SpoolEntry(job_id, result, cost, posted)

    def _meta(self, job_id: int) -> Path:
        return self.directory / f"job-{job_id}.json"

    def _posted(self, job_id: int) -> Path:
        return self.directory / f"job-{job_id}.posted.json"


def _result(meta: dict[str, Any], directory: Path) -> ImageResult:
    images = tuple(
        GeneratedImage(
            (directory / image["file"]).read_bytes(),
            image["mime_type"],
            image["width"],
            image["height"],
            image["revised_prompt"],
        )
        for image in meta["images"]
    )
    usage = meta.get("usage")
    return ImageResult(
        images=images,
        model=meta["model"],
        size=meta["size"],
        quality=meta["quality"],
        background=meta["background"],
        output_format=meta["output_format"],
        usage=ImageUsage(**usage) if usage is not None else None,
        created=meta["created"],
    )


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader (or the next start) sees the old file or the whole new one."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
