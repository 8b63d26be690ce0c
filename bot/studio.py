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
from bot.generation import UPSCALE, ImageOrder
from bot.providers import Operation, parse_size
from bot.providers.registry import BackendSet
from bot.providers.upscale import NoLargerSize, upscale_size


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


def upscale_order(backends: BackendSet, made: ImageOrder) -> ImageOrder:
    """Upscale one image of a result (``made.size`` is that image's size): one image, on the
    result's backend and model, the largest that backend makes of it.

    A server with an upscaler of its own (AUTOMATIC1111, ComfyUI) enlarges any image by its
    factor; a GPT image model redraws it in an edit at its largest size of the image's shape
    (:func:`bot.providers.upscale.upscale_size`), which the order asks for so that the price
    shown and reserved is that size's. What cannot (dall-e, an image already at the model's
    largest) is refused here, before anything is queued or charged.
    """
    backend = backends.for_job(made.backend)
    spec = backend.spec_for(made.model)
    size: str | None = None
    if not backend.features.upscaler:
        source = parse_size(made.size or "")
        if source is None:
            raise ActionUnsupported(reason="the size of this image is not known")
        try:
            size = upscale_size(spec, source)
        except NoLargerSize as limit:
            raise ActionUnsupported(reason=limit.reason) from None
    return ImageOrder(
        Operation.EDIT,
        prompt=made.prompt,
        n=1,
        size=size,
        quality=made.quality if spec.qualities else None,
        model=made.model,
        fit=made.fit,
        user_id=made.user_id,
        backend=made.backend,
        action=UPSCALE,
        input_fidelity="high" if spec.input_fidelity else None,
    )


assert StudioAction.UPSCALE.value == UPSCALE  # one name for the action in both layers

#: Each action's builder; an action without one has no button yet.
BUILDERS: dict[StudioAction, OrderBuilder] = {StudioAction.UPSCALE: upscale_order}


def available_actions() -> frozenset[StudioAction]:
    """The actions result messages offer (a button each)."""
    return frozenset(BUILDERS)


def studio_order(backends: BackendSet, made: ImageOrder, action: StudioAction) -> ImageOrder:
    """The order ``action`` makes of one image of a result made from ``made``."""
    builder = BUILDERS.get(action)
    if builder is None:
        raise ActionUnsupported(reason=f"{action.value} is not available")
    return builder(backends, made)
