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

import dataclasses
import enum
from collections.abc import Callable

from bot.errors import BotError
from bot.generation import CANVAS_ACTIONS, UPSCALE, ImageOrder
from bot.providers import ModelSpec, Operation, parse_size
from bot.providers.backend import Backend
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


# --- Vary (Subtle)/(Strong), Zoom Out, Pan, Make Square ------------------------------------------

#: img2img denoising strengths of the two variations on Stable Diffusion backends: 0.35 keeps
#: composition, colours and most shapes and redraws textures; 0.8 keeps little but the layout
#: and the palette (the backends' own default for a plain variation is 0.6).
SUBTLE_STRENGTH = 0.35
STRONG_STRENGTH = 0.8
#: The prompt of an action on a result that had none (a variation of an upload).
NO_PROMPT = "the picture"


def _source(backends: BackendSet, made: ImageOrder) -> tuple[Backend, ModelSpec]:
    """The result's backend and model (its default model where it has that one no more)."""
    backend = backends.for_job(made.backend)
    spec = backend.spec_for(made.model if made.model in backend.models else None)
    if not spec.supports(Operation.EDIT) and not spec.supports(Operation.VARY):
        raise ActionUnsupported(
            reason=f"{spec.name} only makes new images from a prompt (no edits or variations)"
        )
    return backend, spec


def _base(backend: Backend, spec: ModelSpec, made: ImageOrder, action: StudioAction) -> ImageOrder:
    """One image on the result's backend and model; the Stable Diffusion options but the seed
    where the backend has them (new randomness), the size where only squares are taken."""
    order = ImageOrder(
        Operation.EDIT,
        model=spec.name,
        backend=backend.name,
        size=made.size if spec.edit_input.square else None,
        action=action.value,
    )
    if not backend.features.sd_options:
        return order
    return dataclasses.replace(
        order,
        negative_prompt=made.negative_prompt,
        steps=made.steps,
        guidance=made.guidance,
        sampler=made.sampler,
        checkpoint=made.checkpoint,
    )


def _vary(action: StudioAction) -> OrderBuilder:
    subtle = action is StudioAction.VARY_SUBTLE

    def build(backends: BackendSet, made: ImageOrder) -> ImageOrder:
        backend, spec = _source(backends, made)
        order = _base(backend, spec, made, action)
        if backend.features.sd_options:
            strength = SUBTLE_STRENGTH if subtle else STRONG_STRENGTH
            return dataclasses.replace(
                order, operation=Operation.VARY, prompt=made.prompt, strength=strength
            )
        if not subtle and spec.native_variations:
            return dataclasses.replace(order, operation=Operation.VARY)
        if not spec.supports(Operation.EDIT):
            raise ActionUnsupported(reason=f"{spec.name} has no edits")
        # The instruction is added when it is sent (bot.generation.instructed_prompt).
        fidelity = ("high" if subtle else "low") if spec.input_fidelity else None
        return dataclasses.replace(
            order, prompt=made.prompt.strip() or NO_PROMPT, input_fidelity=fidelity
        )

    return build


def _outpaint(action: StudioAction) -> OrderBuilder:
    def build(backends: BackendSet, made: ImageOrder) -> ImageOrder:
        backend, spec = _source(backends, made)
        if not spec.supports(Operation.EDIT):
            raise ActionUnsupported(reason=f"{spec.name} has no edits to paint a new area with")
        # The OpenAI models are told what to do when it is sent (generation.instructed_prompt).
        order = _base(backend, spec, made, action)
        return dataclasses.replace(order, prompt=made.prompt.strip() or NO_PROMPT)

    return build


BUILDERS.update(
    {
        StudioAction.VARY_SUBTLE: _vary(StudioAction.VARY_SUBTLE),
        StudioAction.VARY_STRONG: _vary(StudioAction.VARY_STRONG),
        **{StudioAction(name): _outpaint(StudioAction(name)) for name in CANVAS_ACTIONS},
    }
)
