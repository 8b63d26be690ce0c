"""The usage charts as Discord shows them: valid PNGs of a sensible size, with the bars drawn.

A chart is checked by its pixels: each outcome that happened has its colour in the picture, an
empty chart is still a picture (the axes and a note), and each takes well under a second.
"""

from __future__ import annotations

import asyncio
import io
import time
from datetime import date, timedelta

from PIL import Image

from bot.charts import OUTCOMES, DayUsage, ServerSpend, member_chart, month_chart, server_chart
from bot.charts.usage import BACKGROUND, SPEND, month_to_date
from bot.imaging import ImageWorker

START = date(2026, 11, 3)


def busy_days(count: int = 30) -> list[DayUsage]:
    return [
        DayUsage(
            START + timedelta(days=i),
            {"done": i % 9, "failed": i % 3, "cancelled": int(i % 7 == 0), "pending": int(i == 29)},
            (i % 9) * 20_000,
        )
        for i in range(count)
    ]


def quiet_days() -> list[DayUsage]:
    return [DayUsage(START + timedelta(days=i)) for i in range(30)]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def opened(data: bytes, max_size: tuple[int, int]) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 1_000_000
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    assert image.width <= max_size[0] and image.height <= max_size[1]
    assert image.width >= 600 and image.height >= 300
    return image.convert("RGB")


def colours(image: Image.Image) -> set[tuple[int, int, int]]:
    found = image.getcolors(maxcolors=1_000_000)
    assert found is not None
    return {colour for _, colour in found}


def test_the_server_chart_shows_each_outcome_and_the_spend_line() -> None:
    started = time.perf_counter()
    data = server_chart(
        busy_days(), title="Images and spend", images_per_day=10, spend_budget_micro=5_000_000
    )
    elapsed = time.perf_counter() - started
    image = opened(data, (1200, 600))
    present = colours(image)
    assert len(present) > 20
    for outcome in ("done", "failed", "cancelled", "pending"):
        assert hex_rgb(OUTCOMES[outcome][1]) in present, outcome
    assert hex_rgb(SPEND) in present
    # A solid card: the corners are the background, which reads on dark and light themes.
    assert image.getpixel((0, 0)) == hex_rgb(BACKGROUND)
    assert elapsed < 1.0


def test_an_outcome_that_never_happened_is_not_drawn() -> None:
    data = server_chart(busy_days(), title="x", images_per_day=10, spend_budget_micro=None)
    assert hex_rgb(OUTCOMES["interrupted"][1]) not in colours(opened(data, (1200, 600)))


def test_an_empty_server_chart_is_still_a_chart() -> None:
    data = server_chart(quiet_days(), title="x", images_per_day=50, spend_budget_micro=5_000_000)
    present = colours(opened(data, (1200, 600)))
    assert len(present) > 5  # axes, labels, the limit lines and the note: not a blank image
    assert hex_rgb(SPEND) in present  # the budget line


def test_the_member_chart_is_small_and_shows_the_bars() -> None:
    started = time.perf_counter()
    data = member_chart(busy_days(), title="Your images", daily_limit=5)
    assert time.perf_counter() - started < 1.0
    image = opened(data, (800, 400))
    assert image.size == (800, 400)
    assert hex_rgb(OUTCOMES["done"][1]) in colours(image)


def test_an_exempt_member_chart_has_no_limit_line() -> None:
    image = opened(member_chart(quiet_days(), title="x", daily_limit=None), (800, 400))
    assert len(colours(image)) > 5


def test_the_month_chart_shows_spend_per_day_and_the_top_servers() -> None:
    servers = [ServerSpend(str(10**17 + i), 1_000_000 * (12 - i), 3) for i in range(12)]
    data = month_chart(busy_days(), servers, title="Usage in 2026-11")
    present = colours(opened(data, (1200, 600)))
    assert hex_rgb(SPEND) in present and hex_rgb(OUTCOMES["done"][1]) in present


def test_the_month_chart_of_an_empty_month() -> None:
    data = month_chart(quiet_days(), [], title="Usage in 2026-11")
    assert len(colours(opened(data, (1200, 600)))) > 5


def test_spend_so_far_starts_again_on_the_first_of_a_month() -> None:
    days = [
        DayUsage(date(2026, 11, 29) + timedelta(days=i), spend_micro=1_000_000) for i in range(4)
    ]
    assert month_to_date(days) == [1.0, 2.0, 1.0, 2.0]


async def test_charts_drawn_at_once_in_the_image_worker_are_all_whole() -> None:
    days = busy_days()
    with ImageWorker(2) as worker:
        drawn = await asyncio.gather(
            *(
                worker.run(
                    server_chart, days, title="x", images_per_day=10, spend_budget_micro=None
                )
                for _ in range(4)
            )
        )
    assert len(set(drawn)) == 1  # the same picture each time: no thread spoiled another
    opened(drawn[0], (1200, 600))
