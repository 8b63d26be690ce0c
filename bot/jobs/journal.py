"""Which jobs were sent to the provider: the "running" mark, without a database transaction.

A job killed while its request was at the provider may have made and billed images, so the next
start must not run it again: it is interrupted and its estimate stays as possibly billed spend.
Writing "running" into its row cost a write transaction per job on the hot path; instead the
job's id (and when it started) is appended to this file before the request is sent: one small
``write()``, no fsync. Like a commit in SQLite's WAL with ``synchronous = NORMAL``, it survives
the process being killed, not the machine losing power.

The next start reads it: a job whose row is still queued and that is listed here was sent. Lines
of finished jobs are harmless (their rows are no longer queued), so nothing is removed per job:
the file is rewritten with the jobs still running when it grows past :data:`COMPACT_LINES`, and
emptied at every start once the jobs it lists are dealt with. Synchronous file I/O of a few
bytes, called on the event loop like a log line.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

#: Lines after which the file is rewritten with only the jobs still running.
COMPACT_LINES = 10_000


class StartedJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lines = 0
        #: Jobs started and not yet settled in the database: what a rewrite keeps.
        self._running: dict[int, datetime] = {}

    def started(self, job_id: int, at: datetime) -> None:
        """Note ``job_id`` as sent from ``at`` on; raises OSError when it cannot be noted."""
        self._running[job_id] = at
        if self._lines >= COMPACT_LINES:
            self._rewrite()
        else:
            self._append(_line(job_id, at))

    def settled(self, job_id: int) -> None:
        """Its outcome is in the database: a rewrite may leave it out."""
        self._running.pop(job_id, None)

    def read(self) -> dict[int, datetime]:
        """Every job the file lists as sent, with when it started (a torn last line is skipped)."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return {}
        started: dict[int, datetime] = {}
        for line in text.splitlines():
            number, _, stamp = line.partition(" ")
            with contextlib.suppress(ValueError):
                started[int(number)] = datetime.fromtimestamp(float(stamp), UTC)
        return started

    def reset(self) -> None:
        """The jobs listed are dealt with (at start): only the running ones, if any, stay."""
        self._rewrite()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, text: str) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, text.encode("ascii"))
        self._lines += 1

    def _rewrite(self) -> None:
        """Atomically: a kill leaves the old file or the new one."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        text = "".join(_line(job_id, at) for job_id, at in self._running.items())
        temporary.write_text(text, encoding="ascii")
        os.replace(temporary, self.path)
        self._lines = len(self._running)


def _line(job_id: int, at: datetime) -> str:
    return f"{job_id} {at.timestamp():.6f}\n"
