"""Acknowledged requests that are not jobs yet: written before "thinking…", gone once queued.

Between the moment the bot defers an interaction and the moment its job row is committed, the
bot reads the member's uploads and checks the quotas; a process killed then used to leave the
member looking at "thinking…" forever. An intake row is committed before the defer, deleted in
the transaction that inserts the job (or when the request is refused), and every row a killed
process left behind is finished at the next start by an :class:`IntakeRecovery` (the Discord
layer, which can read the uploads again and answer through the interaction).

Requests with nothing to download, on this process's own queue (SQLite), need no intake: their
job is admitted before the defer, and its row is the durable record (bot.discord.generate).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from bot.db import Sessions
from bot.db.engine import Transactions
from bot.db.models import Intake
from bot.generation import ORDER_SETTINGS, ImageOrder
from bot.providers import Operation


@dataclass(frozen=True)
class IntakeUpload:
    """A member's upload as Discord described it: enough to download it again."""

    subject: str
    url: str
    size: int | None
    filename: str


@dataclass(frozen=True)
class IntakeRequest:
    """What the member asked for, as stored in ``intakes.request`` (JSON)."""

    order: dict[str, Any]
    uploads: list[IntakeUpload] = field(default_factory=list)
    role_ids: list[int] = field(default_factory=list)
    source_job_id: int | None = None
    source_index: int | None = None
    #: The order's image and mask are the stored inputs of this job (Redo, Remix, Retry).
    inputs_from_job: int | None = None
    attachment_size_limit: int | None = None
    #: The channel is age-restricted (``JobOrigin.age_restricted``), as seen when asked.
    age_restricted: bool = False
    #: The result goes only to the requester (``JobOrigin.private``), as decided when asked.
    private: bool = False
    #: The process that acknowledged it (the shared queue, PostgreSQL): while that process
    #: lives, no other finishes it (bot.jobs.shared.recover_intakes).
    owner: str | None = None

    def image_order(self) -> ImageOrder:
        """The order without its uploads (read again from ``uploads`` or ``inputs_from_job``)."""
        options = dict(self.order)
        return ImageOrder(Operation(options.pop("operation")), **options)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> IntakeRequest:
        raw = json.loads(text)
        raw["uploads"] = [IntakeUpload(**upload) for upload in raw.get("uploads", ())]
        return cls(**raw)


def order_options(order: ImageOrder) -> dict[str, Any]:
    """The order's settings (every one of ``ORDER_SETTINGS``) as JSON values; its image bytes
    are left out."""
    options: dict[str, Any] = {"operation": order.operation.value, "user_id": order.user_id}
    options.update({name: getattr(order, name) for name in ORDER_SETTINGS})
    return options


@dataclass(frozen=True)
class IntakeOrigin:
    """The interaction an intake answers."""

    interaction_id: int
    application_id: int | None
    interaction_token: str | None
    interaction_at: datetime
    guild_id: int | None
    channel_id: int | None
    parent_channel_id: int | None
    user_id: int
    locale: str | None


class IntakeRecovery(Protocol):
    """Finishes an intake a killed process left: queues it, or tells the member why not."""

    async def intake_pending(self, intake: Intake) -> None: ...


class IntakeBook:
    """Writes intakes, a burst of them in one commit.

    Every request waits for its intake before Discord's 3 seconds to acknowledge it run out;
    one transaction each would queue a burst of 200 behind the database lock (and behind the
    quota reservations) past that deadline. Rows that arrive while a commit is under way are
    written together in the next one.
    """

    def __init__(self, transactions: Transactions, owner: str | None = None) -> None:
        """``transactions``: the hot path's (bot.db.engine): on SQLite the intakes are written
        in the event loop as the admissions are, in turn with them, never starved by them in
        the database's busy wait. ``owner``: this process's id, stamped on each intake (the shared
        queue)."""
        self._transactions = transactions
        self._owner = owner
        self._pending: list[tuple[Intake, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def open(self, origin: IntakeOrigin, command: str, request: IntakeRequest) -> int:
        """Commit the intake; its id."""
        if self._owner is not None:
            request = dataclasses.replace(request, owner=self._owner)
        row = Intake(
            interaction_id=origin.interaction_id,
            application_id=origin.application_id,
            interaction_token=origin.interaction_token,
            interaction_at=origin.interaction_at,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            parent_channel_id=origin.parent_channel_id,
            user_id=origin.user_id,
            locale=origin.locale,
            command=command,
            request=request.to_json(),
        )
        written = asyncio.get_running_loop().create_future()
        self._pending.append((row, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="intakes")
        return await asyncio.shield(written)

    async def drop(self, intake_id: int) -> None:
        """The request was answered without a job (refused): nothing is left to finish. In
        the hot path's transactions too: a burst's refusals wait in turn with its admissions."""
        await self._transactions.run(partial(delete_intake_sync, intake_id=intake_id))

    async def close(self) -> None:
        """Wait for the batch being written: its requests are acknowledged on its commit."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._transactions.run(partial(_insert, [row for row, _ in batch]))
            except Exception as exc:
                for _, written in batch:
                    written.set_exception(exc)
                continue
            for row, written in batch:
                written.set_result(row.id)


def delete_intake_sync(session: Session, intake_id: int) -> int:
    """Delete an intake (its job admitted, or its request refused); how many rows went (0:
    finished elsewhere already)."""
    deleted = session.execute(_DELETE, {"finished_intake": intake_id})
    return int(deleted.rowcount)  # type: ignore[attr-defined]


#: Built once: on every request that went through an intake (building it cost more than running).
_INTAKES = Intake.metadata.tables[Intake.__tablename__]
_DELETE = delete(_INTAKES).where(_INTAKES.c.id == bindparam("finished_intake"))


def _insert(rows: list[Intake], session: Session) -> None:
    session.add_all(rows)
    session.flush()


async def pending_intakes(sessions: Sessions) -> list[Intake]:
    async with sessions() as session:
        result = await session.execute(select(Intake).order_by(Intake.interaction_at, Intake.id))
        return list(result.scalars())
