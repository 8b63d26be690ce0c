"""Who this process is, among the bot processes that share one database.

On PostgreSQL several processes (gateway shards, workers) share the queue; each claims jobs,
holds leases and heartbeats under its own id. On SQLite there is one process, and the id only
labels its rows. The composition root (bot.app) makes one :class:`ProcessInfo` per process.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

#: What a process does: ``both`` (the one-process default), ``gateway`` (shards, no jobs),
#: ``worker`` (jobs, no gateway).
ROLES = ("both", "gateway", "worker")


def new_process_id() -> str:
    """Unique across machines and restarts: host, pid and a random part (a restarted process
    with a reused pid is a new process: its old claims are not its own)."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ProcessInfo:
    role: str = "both"
    #: The gateway shards this process runs (None: all, or none for a worker).
    shard_ids: tuple[int, ...] | None = None
    shard_count: int | None = None
    id: str = field(default_factory=new_process_id)

    @property
    def runs_jobs(self) -> bool:
        return self.role in ("both", "worker")

    @property
    def runs_gateway(self) -> bool:
        return self.role in ("both", "gateway")


def is_shared(engine: AsyncEngine) -> bool:
    """Whether the queue lives in the database, shared by several processes (PostgreSQL), or
    in this process's memory, indexed over the job rows (SQLite, one process)."""
    return engine.dialect.name == "postgresql"
