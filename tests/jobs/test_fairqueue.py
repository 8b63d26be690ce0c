"""Fair order: what members of a quiet server notice when a busy server floods the queue."""

from __future__ import annotations

import pytest

from bot.jobs.fairqueue import FairQueue, QueuedJob


def fill(queue: FairQueue, guild: str, user: str, count: int, start: int) -> list[int]:
    ids = list(range(start, start + count))
    for job_id in ids:
        queue.push(QueuedJob(job_id, guild, user))
    return ids


def drain(queue: FairQueue) -> list[int]:
    out = []
    while (job := queue.pop()) is not None:
        out.append(job.job_id)
    return out


def test_lone_job_waits_at_most_one_turn_behind_a_backlog() -> None:
    queue = FairQueue()
    fill(queue, "busy", "spammer", 1000, start=1)
    queue.pop()  # the busy guild is already being served
    queue.push(QueuedJob(5000, "quiet", "member"))
    order = drain(queue)
    assert order.index(5000) <= 1


def test_round_robin_between_guilds_then_members() -> None:
    queue = FairQueue()
    fill(queue, "A", "a1", 3, start=1)  # 1, 2, 3
    fill(queue, "A", "a2", 2, start=10)  # 10, 11
    fill(queue, "B", "b1", 2, start=20)  # 20, 21
    assert list(j.job_id for j in queue.order()) == [1, 20, 10, 21, 2, 11, 3]
    assert drain(queue) == [1, 20, 10, 21, 2, 11, 3]


def test_each_member_keeps_their_own_order() -> None:
    queue = FairQueue()
    fill(queue, "A", "x", 5, start=1)
    fill(queue, "A", "y", 5, start=100)
    order = drain(queue)
    assert [j for j in order if j < 100] == [1, 2, 3, 4, 5]
    assert [j for j in order if j >= 100] == [100, 101, 102, 103, 104]


def test_remove_and_counts() -> None:
    queue = FairQueue()
    fill(queue, "A", "x", 3, start=1)
    fill(queue, "B", "y", 1, start=9)
    assert queue.count(guild="A") == 3 and queue.count(guild="A", user="x") == 3
    assert queue.remove(2) is not None and queue.remove(2) is None
    assert queue.remove(9) is not None
    assert queue.count(guild="B") == 0
    assert 2 not in queue and len(queue) == 2
    assert drain(queue) == [1, 3]


def test_peek_matches_pop_and_duplicates_are_refused() -> None:
    queue = FairQueue()
    assert queue.peek() is None and queue.pop() is None
    fill(queue, "A", "x", 2, start=1)
    fill(queue, "B", "y", 1, start=5)
    while (head := queue.peek()) is not None:
        assert queue.pop() == head
    queue.push(QueuedJob(1, "A", "x"))
    with pytest.raises(ValueError):
        queue.push(QueuedJob(1, "B", "z"))


def test_order_is_the_pop_order_while_members_and_guilds_come_and_go() -> None:
    queue = FairQueue()
    for job_id in range(300):
        queue.push(QueuedJob(job_id, f"g{job_id * 7 % 5}", f"u{job_id * 11 % 9}"))
        if job_id % 4 == 3:
            queue.pop()
        if job_id % 10 == 9:
            queue.remove(job_id - 5)
    expected = list(queue.order())
    assert len(expected) == len(queue)
    assert [queue.pop() for _ in range(len(expected))] == expected
