"""Spend alerts: the operator is told when the month's total spend passes 50 %, 80 % and 100 %
of ``[quotas] total_spend_per_month_usd``, and when a server reaches its own monthly budget.

Checked after a job's cost is recorded. Each alert is sent once per period: its key
(``total:2026-12:80``, ``guild:1234:2026-12:100``) is inserted into ``alerts_sent`` and only the
process whose insert wins sends it, so several processes never send one twice. The budgets are
the ones the admission enforces (:func:`bot.quotas.policy.guild_limits`; a server's month is in
its own time zone, as its counters are). Only this module writes ``alerts_sent``; the Discord
layer words and sends the alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.db.models import AlertSent, GuildSettings, utcnow
from bot.quotas import counters
from bot.quotas.policy import guild_limits
from bot.quotas.prices import MICRO

#: The shares of the operator's monthly cap that are told, in percent.
TOTAL_THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True)
class SpendAlert:
    """One alert to send: ``guild_id`` None for the operator's total."""

    key: str
    guild_id: int | None
    percent: int
    month: str
    spent_micro: int
    limit_micro: int


class SpendAlerts:
    """Finds the alerts that are due and claims each once (see the module's docstring)."""

    def __init__(self, sessions: Sessions, quotas: QuotaSettings) -> None:
        self.sessions, self.quotas = sessions, quotas
        #: Keys known to be sent (by any process): not tried again by this one.
        self._sent: set[str] = set()

    async def due(self, guild_id: int | None, moment: datetime | None = None) -> list[SpendAlert]:
        """The alerts this check won after a job of ``guild_id`` (None: a DM) was recorded.

        When one job passes several thresholds at once, only the highest is returned (all are
        marked sent)."""
        now = moment or utcnow()
        async with self.sessions() as session:
            row = await session.get(GuildSettings, guild_id) if guild_id is not None else None
            limits = guild_limits(self.quotas, row)
            keys = counters.keys_for(guild_id, 0, now, limits.timezone)
            wanted = [keys.total_month] + ([keys.guild_month] if guild_id is not None else [])
            found = await counters.read(session, wanted)
        reached: list[SpendAlert] = []
        cap = round(self.quotas.total_spend_per_month_usd * MICRO)
        total = found.get(keys.total_month, counters.Counts()).spend_micro
        month = keys.total_month.period
        if cap > 0:
            reached += [
                SpendAlert(f"total:{month}:{percent}", None, percent, month, total, cap)
                for percent in TOTAL_THRESHOLDS
                if total * 100 >= cap * percent
            ]
        if guild_id is not None:
            budget = limits.spend_per_month_micro
            spent = found.get(keys.guild_month, counters.Counts()).spend_micro
            guild_month = keys.guild_month.period
            if budget > 0 and spent >= budget:
                key = f"guild:{guild_id}:{guild_month}:100"
                reached.append(SpendAlert(key, guild_id, 100, guild_month, spent, budget))
        won = [alert for alert in reached if await self._claim(alert.key)]
        totals = [alert for alert in won if alert.guild_id is None]
        return [alert for alert in won if alert.guild_id is not None] + totals[-1:]

    async def _claim(self, key: str) -> bool:
        """True for the one check (of every process) that records ``key`` first."""
        if key in self._sent:
            return False
        self._sent.add(key)
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(insert(AlertSent).values(key=key, sent_at=utcnow()))
        except IntegrityError:
            return False
        return True
