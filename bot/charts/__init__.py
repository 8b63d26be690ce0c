"""Usage charts: data in, PNG bytes out, drawn with matplotlib's headless Agg backend.

Pure synchronous code like bot.imaging: callers run it off the event loop (the image worker).
Knows nothing of Discord or the database.
"""

from bot.charts.usage import (
    OUTCOMES,
    DayUsage,
    ServerSpend,
    member_chart,
    month_chart,
    server_chart,
)

__all__ = [
    "OUTCOMES",
    "DayUsage",
    "ServerSpend",
    "member_chart",
    "month_chart",
    "server_chart",
]
