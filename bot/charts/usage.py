"""The usage charts: a server's last 30 days, a member's, and the operator's month.

Drawn with matplotlib's object-oriented API (``Figure`` + ``FigureCanvasAgg``, never pyplot):
no global figure state, so two charts can be drawn at once in the image worker's threads, and
no GUI backend is ever chosen. The cards have a solid light-grey background with dark text and
mid-tone colours, which reads the same on Discord's dark and light themes (a transparent
background would leave dark text on a dark theme). Labels are English and numeric: matplotlib's
bundled DejaVu fonts have no CJK glyphs.
"""

from __future__ import annotations

import functools
import io
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import ParamSpec, TypeVar

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

MICRO = 1_000_000
P = ParamSpec("P")
T = TypeVar("T")

#: One chart at a time. Separate Figures are independent, but matplotlib doesn't promise that
#: its shared caches (fonts, text layout) are thread-safe, and the image worker has several
#: threads. A chart takes a fraction of a second, so waiting for another costs little.
_DRAWING = threading.Lock()


def _one_at_a_time(draw: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(draw)
    def locked(*args: P.args, **kwargs: P.kwargs) -> T:
        with _DRAWING:
            return draw(*args, **kwargs)

    return locked


#: The outcomes a day's bar is stacked from, bottom first, with their labels and colours.
OUTCOMES: dict[str, tuple[str, str]] = {
    "done": ("made", "#3f8fc5"),
    "failed": ("failed", "#d0544f"),
    "cancelled": ("cancelled", "#9da3ab"),
    "interrupted": ("interrupted", "#e09a3e"),
    "pending": ("waiting or running", "#6fb36f"),
}
BACKGROUND = "#eceef1"
INK = "#2e3338"
GRID = "#c9cdd3"
SPEND = "#a8479a"
LIMIT = "#4a4f57"
DPI = 100


@dataclass(frozen=True)
class DayUsage:
    """One day (in the server's time zone): images by outcome, and what the day cost."""

    day: date
    images: Mapping[str, int] = field(default_factory=dict)
    spend_micro: int = 0

    @property
    def total_images(self) -> int:
        return sum(self.images.values())


@dataclass(frozen=True)
class ServerSpend:
    """One server's (or the direct messages') month, for the operator's chart."""

    label: str
    spend_micro: int
    images: int


def _figure(width: int, height: int) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _style(axes)
    return figure, axes


def _style(axes: Axes) -> None:
    axes.set_facecolor(BACKGROUND)
    axes.tick_params(colors=INK, labelsize=9)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    axes.grid(axis="y", color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", facecolor=BACKGROUND, dpi=DPI)
    return out.getvalue()


def _dollars(value: float, _position: object = None) -> str:
    return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"


def _stacked_bars(axes: Axes, days: Sequence[DayUsage]) -> None:
    """The days' images stacked by outcome, with a date label about every fifth day."""
    positions = list(range(len(days)))
    bottom = [0] * len(days)
    drawn = False
    for outcome, (label, colour) in OUTCOMES.items():
        heights = [day.images.get(outcome, 0) for day in days]
        if not any(heights) and (drawn or outcome != "done"):
            continue
        axes.bar(positions, heights, bottom=bottom, width=0.75, color=colour, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        drawn = True
    step = max(len(days) // 6, 1)
    ticks = [i for i in positions if (len(days) - 1 - i) % step == 0]
    axes.set_xticks(ticks, [days[i].day.strftime("%b %d") for i in ticks])
    axes.set_xlim(-0.6, len(days) - 0.4)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("images per day", color=INK)


#: A limit more than this many times the highest bar is named in the legend, not drawn: an
#: axis that reached up to it would flatten every bar (a roomy daily limit of 1,000 and days
#: of 5 images).
OFF_SCALE = 4


def _threshold(
    axes: Axes, value: float | None, highest: float, label: str, colour: str, style: str
) -> float:
    """The limit ``value`` as a labelled line; returns the height the axis must show."""
    if value is None:
        return highest
    if highest > 0 and value > OFF_SCALE * highest:
        axes.plot([], [], color=colour, linestyle=style, label=f"{label}: above the chart")
        return highest
    axes.axhline(value, color=colour, linestyle=style, linewidth=1.5, label=label)
    return max(highest, value)


def _headroom(axes: Axes, highest: float, floor: float = 1) -> None:
    """Room above the highest bar or line for the legend."""
    axes.set_ylim(0, max(highest, floor) * 1.3)


def _empty_note(axes: Axes, days: Sequence[DayUsage], text: str) -> None:
    if not any(day.total_images or day.spend_micro for day in days):
        axes.text(
            0.5,
            0.5,
            text,
            transform=axes.transAxes,
            ha="center",
            va="center",
            color=INK,
            fontsize=14,
        )


def _legend(figure: Figure, *axes: Axes) -> None:
    handles, labels = [], []
    for one in axes:
        h, lab = one.get_legend_handles_labels()
        handles += h
        labels += lab
    legend = axes[0].legend(
        handles,
        labels,
        loc="upper left",
        fontsize=9,
        ncol=4,
        framealpha=0.9,
        facecolor=BACKGROUND,
        edgecolor=GRID,
        labelcolor=INK,
    )
    legend.set_zorder(5)


def month_to_date(days: Sequence[DayUsage]) -> list[float]:
    """Spend so far in each day's month, in dollars: it starts again on every 1st."""
    running, total = [], 0
    for index, day in enumerate(days):
        if index and day.day.day == 1:
            total = 0
        total += day.spend_micro
        running.append(total / MICRO)
    return running


@_one_at_a_time
def server_chart(
    days: Sequence[DayUsage],
    *,
    title: str,
    images_per_day: int | None,
    spend_budget_micro: int | None,
) -> bytes:
    """A server's days: stacked image bars, the daily limit, and this month's spend so far
    against the month's budget on the right-hand axis (both dashed/dotted lines labelled).

    1200x600 pixels. The spend line is cumulative because the budget is a month's: where the
    line meets the budget line the server's requests are refused.
    """
    figure, axes = _figure(1200, 600)
    _stacked_bars(axes, days)
    highest = max((day.total_images for day in days), default=0)
    label = f"daily image limit ({images_per_day or 0:,})"
    _headroom(axes, _threshold(axes, images_per_day, highest, label, LIMIT, "--"))
    spend = axes.twinx()
    spend.tick_params(colors=INK, labelsize=9)
    for spine in spend.spines.values():
        spine.set_color(GRID)
    running = month_to_date(days)
    # One line per month, not joined across the 1st, where the sum starts again.
    starts = [i for i, day in enumerate(days) if i == 0 or day.day.day == 1] + [len(days)]
    for number, (first, end) in enumerate(itertools.pairwise(starts)):
        spend.plot(
            range(first, end),
            running[first:end],
            color=SPEND,
            linewidth=2.2,
            marker="o",
            markersize=3,
            label="spend this month so far" if number == 0 else None,
        )
    budget = None if spend_budget_micro is None else spend_budget_micro / MICRO
    label = f"month budget ({_dollars(budget or 0)})"
    _headroom(
        spend, _threshold(spend, budget, max(running, default=0), label, SPEND, ":"), floor=0.01
    )
    spend.yaxis.set_major_formatter(FuncFormatter(_dollars))
    spend.set_ylabel("spend (USD)", color=INK)
    axes.set_title(title, color=INK, fontsize=13, loc="left")
    _legend(figure, axes, spend)
    _empty_note(axes, days, "No images in these days yet")
    figure.tight_layout()
    return _png(figure)


@_one_at_a_time
def member_chart(days: Sequence[DayUsage], *, title: str, daily_limit: int | None) -> bytes:
    """A member's days: stacked image bars and their daily limit (none when exempt). 800x400."""
    figure, axes = _figure(800, 400)
    _stacked_bars(axes, days)
    highest = max((day.total_images for day in days), default=0)
    label = f"your daily limit ({daily_limit or 0:,})"
    _headroom(axes, _threshold(axes, daily_limit, highest, label, LIMIT, "--"))
    axes.set_title(title, color=INK, fontsize=12, loc="left")
    _legend(figure, axes)
    _empty_note(axes, days, "No images in these days yet")
    figure.tight_layout()
    return _png(figure)


@_one_at_a_time
def month_chart(
    days: Sequence[DayUsage], servers: Sequence[ServerSpend], *, title: str, top: int = 10
) -> bytes:
    """The operator's month: spend per day on the left, the top servers by spend on the right.

    1200x600 pixels; ``servers`` in the order to show, the first ``top`` are drawn.
    """
    figure = Figure(figsize=(12, 6), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[3, 2])
    for axes in (left, right):
        _style(axes)
    positions = list(range(len(days)))
    left.bar(positions, [day.spend_micro / MICRO for day in days], color=SPEND, width=0.75)
    step = max(len(days) // 6, 1)
    ticks = [i for i in positions if i % step == 0]
    left.set_xticks(ticks, [days[i].day.strftime("%b %d") for i in ticks])
    left.yaxis.set_major_formatter(FuncFormatter(_dollars))
    left.set_title("spend per day (UTC)", color=INK, fontsize=11, loc="left")
    _headroom(left, max((day.spend_micro / MICRO for day in days), default=0), floor=0.01)
    shown = list(servers[:top])[::-1]  # barh draws bottom-up: the biggest on top
    right.barh(range(len(shown)), [s.spend_micro / MICRO for s in shown], color=OUTCOMES["done"][1])
    right.set_yticks(range(len(shown)), [s.label for s in shown])
    right.xaxis.set_major_formatter(FuncFormatter(_dollars))
    right.grid(axis="x", color=GRID, linewidth=0.8)
    right.grid(axis="y", visible=False)
    right.set_title(f"top {len(shown)} servers by spend", color=INK, fontsize=11, loc="left")
    if not shown:
        right.set_yticks([])
    right.set_xlim(0, max([s.spend_micro / MICRO for s in shown] + [0.01]) * 1.1)
    _empty_note(left, days, "No usage this month")
    figure.suptitle(title, color=INK, fontsize=13, x=0.01, ha="left")
    figure.tight_layout()
    return _png(figure)
