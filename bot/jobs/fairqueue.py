"""Round-robin between guilds, then between members of a guild: the order jobs run in.

A busy guild must not starve a quiet one, and within a guild one member's batch must not starve
the others. Each turn serves the next guild in rotation, and within it the next member in
rotation, who gives up their oldest job. A guild that arrives joins the end of the rotation, so
its first job waits at most one turn per other guild, however long their backlogs are.

Every operation is O(1) except :meth:`FairQueue.remove` (O(jobs of that member)).
:meth:`FairQueue.order` is lazy: the first k jobs in order cost O(k), however long the queue,
so positions are counted only as far as they are shown.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: int
    guild: Hashable
    user: Hashable
    images: int = 1
    #: Whose turn it waits for: its backend's (bot.jobs.lanes).
    lane: str = "default"


class _Guild:
    __slots__ = ("members", "size")

    def __init__(self) -> None:
        #: Member -> their jobs, oldest first; the order of keys is the members' rotation.
        self.members: OrderedDict[Hashable, deque[QueuedJob]] = OrderedDict()
        self.size = 0


class FairQueue:
    def __init__(self) -> None:
        self._guilds: OrderedDict[Hashable, _Guild] = OrderedDict()
        self._jobs: dict[int, QueuedJob] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def push(self, job: QueuedJob) -> None:
        if job.job_id in self._jobs:
            raise ValueError(f"job {job.job_id} is already queued")
        guild = self._guilds.get(job.guild)
        if guild is None:
            guild = self._guilds[job.guild] = _Guild()
        jobs = guild.members.get(job.user)
        if jobs is None:
            jobs = guild.members[job.user] = deque()
        jobs.append(job)
        guild.size += 1
        self._jobs[job.job_id] = job

    def peek(self) -> QueuedJob | None:
        """The job :meth:`pop` would return, without taking it."""
        if not self._guilds:
            return None
        guild = next(iter(self._guilds.values()))
        return next(iter(guild.members.values()))[0]

    def pop(self) -> QueuedJob | None:
        """The next job in fair order, or None when the queue is empty."""
        if not self._guilds:
            return None
        guild_key, guild = next(iter(self._guilds.items()))
        user_key, jobs = next(iter(guild.members.items()))
        job = jobs.popleft()
        if jobs:
            guild.members.move_to_end(user_key)
        else:
            del guild.members[user_key]
        guild.size -= 1
        if guild.members:
            self._guilds.move_to_end(guild_key)
        else:
            del self._guilds[guild_key]
        del self._jobs[job.job_id]
        return job

    def remove(self, job_id: int) -> QueuedJob | None:
        """Take a job out wherever it is (cancelled); None if it is not queued."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return None
        guild = self._guilds[job.guild]
        jobs = guild.members[job.user]
        jobs.remove(job)
        guild.size -= 1
        if not jobs:
            del guild.members[job.user]
        if not guild.members:
            del self._guilds[job.guild]
        return job

    def count(self, *, guild: Hashable, user: Hashable | None = None) -> int:
        """Queued jobs of a guild, or of one member in it (for the queue caps)."""
        found = self._guilds.get(guild)
        if found is None:
            return 0
        if user is None:
            return found.size
        return len(found.members.get(user, ()))

    def order(self) -> Iterator[QueuedJob]:
        """Every queued job in the order :meth:`pop` would return them (a simulation).

        Lazy, and O(1) per job: stop early to count only the first positions. The queue must
        not change while the iterator is in use (read it in one go, with no await between)."""
        return _round_robin(
            _round_robin(iter(jobs) for jobs in guild.members.values())
            for guild in self._guilds.values()
        )


def _round_robin(sources: Iterable[Iterator[T]]) -> Iterator[T]:
    """One item from each source in turn, in the order :meth:`FairQueue.pop` serves them.

    The rotation as it stands comes first (``sources``, taken only when reached), then each
    source again at the end of the line while it has items, as a popped guild or member is."""
    fresh = iter(sources)
    again: deque[Iterator[T]] = deque()
    while True:
        source = next(fresh, None)
        if source is None:
            if not again:
                return
            source = again.popleft()
        for item in source:
            yield item
            again.append(source)
            break
