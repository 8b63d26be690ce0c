"""Creative actions on one image of a result: upscale, vary subtle/strong, zoom out, pan, make
square (Midjourney's set). Each action turns the order a result was made from into a new order
for that image; everything after that (price, quota, queue, provider, delivery, ledger) is the
path every command takes.

The Discord layer renders a button for each action in :func:`available_actions` and, on a click,
calls :func:`studio_order`; the image itself is the new order's upload (read back from the
result message). A backend that cannot do an action answers with :class:`ActionUnsupported`
naming the limit, never with a silent stand-in (a Lanczos resize is no upscale).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from bot.errors import BotError
from bot.generation import ImageOrder
from bot.providers.registry import BackendSet


class StudioAction(enum.StrEnum):
    UPSCALE = "upscale"
    VARY_SUBTLE = "vary_subtle"
    VARY_STRONG = "vary_strong"
    ZOOM_2 = "zoom_2"
    ZOOM_1_5 = "zoom_1_5"
    PAN_LEFT = "pan_left"
    PAN_RIGHT = "pan_right"
    PAN_UP = "pan_up"
    PAN_DOWN = "pan_down"
    SQUARE = "square"


PAN_ACTIONS = (
    StudioAction.PAN_LEFT,
    StudioAction.PAN_RIGHT,
    StudioAction.PAN_UP,
    StudioAction.PAN_DOWN,
)


class ActionUnsupported(BotError):
    """The result's backend (or model) cannot do the action; ``reason`` names the limit."""

    key = "error.action_unsupported"
    template = "This result's backend can't do that: {reason}"


#: Makes the order of an action from the order the result was made from (``made``: its prompt,
#: model, backend and options; its uploads need not be kept) and the backends. Raises
#: ActionUnsupported where the result's backend cannot.
OrderBuilder = Callable[[BackendSet, ImageOrder], ImageOrder]

#: Each action's builder; an action without one has no button yet.
BUILDERS: dict[StudioAction, OrderBuilder] = {}


def available_actions() -> frozenset[StudioAction]:
    """The actions result messages offer (a button each)."""
    return frozenset(BUILDERS)


def studio_order(backends: BackendSet, made: ImageOrder, action: StudioAction) -> ImageOrder:
    """The order ``action`` makes of one image of a result made from ``made``."""
    builder = BUILDERS.get(action)
    if builder is None:
        raise ActionUnsupported(reason=f"{action.value} is not available")
    return builder(backends, made)
