"""The started-jobs journal: what the next start reads to tell a sent job from a queued one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.jobs import journal as journal_module
from bot.jobs.journal import StartedJournal

AT = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_a_restart_reads_every_job_sent_and_skips_a_line_cut_short(tmp_path: Path) -> None:
    journal = StartedJournal(tmp_path / "bot.db-inflight" / "started.log")
    for job_id in (1, 2, 3):
        journal.started(job_id, AT)
    journal.settled(2)  # settled jobs stay listed: their rows are no longer queued
    with open(journal.path, "a", encoding="ascii") as file:
        file.write("4")  # killed in the middle of a write
    assert StartedJournal(journal.path).read() == {1: AT, 2: AT, 3: AT}


def test_it_is_emptied_at_start_and_stays_small_keeping_the_running_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "COMPACT_LINES", 5)
    journal = StartedJournal(tmp_path / "started.log")
    for job_id in range(1, 6):
        journal.started(job_id, AT)
        if job_id != 3:
            journal.settled(job_id)
    journal.started(6, AT)  # the sixth line: rewritten with the two still running
    assert journal.path.read_text(encoding="ascii").count("\n") == 2
    assert StartedJournal(journal.path).read() == {3: AT, 6: AT}
    journal.settled(3)
    journal.reset()
    assert StartedJournal(journal.path).read() == {6: AT}
    journal.close()
