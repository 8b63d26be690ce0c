"""The test's view of one dispatched interaction: its callback and its messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import EPHEMERAL, StoredMessage
from .state import InteractionRecord

if TYPE_CHECKING:
    from .server import FakeDiscord

Predicate = Callable[[StoredMessage], bool]


@dataclass
class CallbackResponse:
    type: int
    data: dict[str, Any]

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & EPHEMERAL)


class InteractionHandle:
    """A dispatched interaction: await its response, read its messages."""

    def __init__(self, fake: FakeDiscord, rec: InteractionRecord) -> None:
        self.fake, self.record = fake, rec

    def __repr__(self) -> str:
        return f"<InteractionHandle id={self.id} type={self.type} response={self.response_type}>"

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def type(self) -> int:
        """2 command, 3 component, 5 modal submit."""
        return self.record.type

    @property
    def payload(self) -> dict[str, Any]:
        """The INTERACTION_CREATE data the bot received."""
        return self.record.payload

    @property
    def response_type(self) -> int | None:
        """The callback type (4 reply, 5 defer, 6 deferred update, 7 update, 9 modal) or None."""
        return self.record.response_type

    @property
    def response_data(self) -> dict[str, Any] | None:
        return self.record.response_data

    @property
    def original(self) -> StoredMessage | None:
        """The @original message (after any edits); for type 6/7 the clicked message."""
        return self.record.original

    @property
    def followups(self) -> list[StoredMessage]:
        """Messages sent through the webhook (the first after a defer IS the original)."""
        return list(self.record.followups)

    @property
    def messages(self) -> list[StoredMessage]:
        return self.record.messages

    @property
    def deferred(self) -> bool:
        return self.record.response_type in (5, 6)

    @property
    def ephemeral(self) -> bool:
        data = self.record.response_data or {}
        return bool(int(data.get("flags") or 0) & EPHEMERAL)

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.record.response_data if self.record.response_type == 9 else None

    @property
    def responded_within(self) -> float | None:
        rec = self.record
        if rec.responded_at is None or rec.dispatched_at is None:
            return None
        return rec.responded_at - rec.dispatched_at

    async def response(self, timeout: float = 5.0) -> CallbackResponse:  # noqa: ASYNC109
        """The callback the bot made (waits for it); raises TimeoutError with what happened."""
        rec = self.record

        def check() -> CallbackResponse | None:
            if rec.response_type is None:
                return None
            return CallbackResponse(rec.response_type, dict(rec.response_data or {}))

        return await self.fake.state.pulse.wait_until(check, timeout, self._describe)

    async def wait_message(
        self,
        predicate: Predicate | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a default that fails with a clear message
    ) -> StoredMessage:
        """The first original/follow-up message (not "thinking...", not deleted) that matches."""

        def check() -> StoredMessage | None:
            for msg in self.record.messages:
                if not msg.deleted and not msg.loading and (predicate is None or predicate(msg)):
                    return msg
            return None

        return await self.fake.state.pulse.wait_until(check, timeout, self._describe)

    def expire(self) -> None:
        self.record.expired = True

    def _describe(self) -> str:
        rec = self.record
        msgs = [
            f"{m.source} {m.id}: {m.content[:80]!r} embeds={len(m.embeds)} "
            f"files={list(m.files)} flags={m.flags}{' deleted' if m.deleted else ''}"
            for m in rec.messages
        ]
        late = " (a callback came after the deadline)" if rec.late_callback else ""
        mine = [r for r in self.fake.requests if rec.token in r.path or str(rec.id) in r.path]
        calls = [f"{r.method} {r.path.replace(rec.token, '<token>')} -> {r.status}" for r in mine]
        return (
            f"interaction {rec.id} (type {rec.type}){late}: response={rec.response_type}, "
            f"messages={msgs or 'none'}, its requests={calls or 'none'}"
        )
