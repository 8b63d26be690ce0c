"""Upscale: the largest picture a backend can make of one image, or the limit that stops it.

Each kind of backend enlarges its own way (``Backend.upscale``):

* **GPT image models** redraw the image in an edit at the model's largest size in the image's
  shape, with ``input_fidelity`` "high" where the model takes it and an instruction to change
  nothing (:data:`UPSCALE_INSTRUCTION`, the original prompt after it for context). A model
  whose largest size the image already has (every gpt-image-1 size is its largest of that
  shape) cannot: :func:`upscale_size` says so, naming the size.
* **dall-e-2** edits only repaint the transparent part of a square of at most 1024x1024, and
  **dall-e-3** has no edits: neither can upscale.
* **Stable Diffusion servers** have upscalers (``BackendFeatures.upscaler``): AUTOMATIC1111's
  ``extra-single-image`` (2x with the operator's ``provider.upscaler``), ComfyUI's upscale
  workflow (its upscale model's own factor).

A plain resize (Lanczos, nearest) is never passed off as an upscale.
"""

from __future__ import annotations

import math

from bot.providers.capabilities import FreeSizeRule, ModelSpec, parse_size
from bot.providers.types import Operation

#: What a GPT image model is told to do with the image (the original prompt follows).
UPSCALE_INSTRUCTION = (
    "Upscale this image: reproduce it exactly at a higher resolution, adding fine detail, "
    "changing nothing else."
)
#: AUTOMATIC1111's factor (``upscaling_resize``).
A1111_FACTOR = 2
#: AUTOMATIC1111's upscaler when the operator names none: Real-ESRGAN, in every install.
A1111_DEFAULT_UPSCALER = "R-ESRGAN 4x+"
#: Names AUTOMATIC1111 lists among its upscalers that only resize: no upscale.
PLAIN_RESIZES = frozenset({"None", "Lanczos", "Nearest"})
#: Aspect ratios within this (as a log) count as the same shape.
_SAME_SHAPE = 0.02


class NoLargerSize(Exception):
    """The model cannot make ``source`` larger; ``reason`` names the limit, for members."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def upscale_instruction(prompt: str, limit: int) -> str:
    """The edit prompt of an upscale: the instruction, and the original prompt as context,
    cut to the model's ``limit`` (the instruction is what matters)."""
    text = UPSCALE_INSTRUCTION
    if prompt.strip():
        text = f"{text} The image shows: {prompt.strip()}"
    return text[:limit]


def upscale_size(spec: ModelSpec, source: tuple[int, int]) -> str:
    """The size a GPT image model upscales ``source`` (width, height) to: its largest size of
    about that shape. Raises :class:`NoLargerSize` naming the limit where there is none."""
    if not spec.supports(Operation.EDIT):
        raise NoLargerSize(f"{spec.name} cannot edit images, so it cannot make a larger copy")
    if spec.edit_input.square:
        largest = max((p for s in spec.sizes if (p := parse_size(s))), default=(0, 0))
        raise NoLargerSize(
            f"{spec.name} edits only repaint transparent areas of squares up to "
            f"{largest[0]}x{largest[1]}; it cannot upscale"
        )
    width, height = source
    ratio = width / height
    candidates = [p for s in spec.sizes if (p := parse_size(s)) is not None]
    if spec.free_size is not None and (free := largest_free_shape(spec.free_size, ratio)):
        candidates.append(free)
    if not candidates:
        raise NoLargerSize(f"{spec.name} has no sizes to upscale to")

    def off(shape: tuple[int, int]) -> float:
        return abs(math.log(shape[0] / shape[1] / ratio))

    nearest = min(off(shape) for shape in candidates)
    same_shape = [shape for shape in candidates if off(shape) <= nearest + _SAME_SHAPE]
    best = max(same_shape, key=lambda shape: shape[0] * shape[1])
    if best[0] * best[1] <= width * height:
        raise NoLargerSize(
            f"this image is already {width}x{height}, the largest {spec.name} makes"
            + ("" if best == source else f" of its shape ({best[0]}x{best[1]})")
        )
    return f"{best[0]}x{best[1]}"


def largest_free_shape(rule: FreeSizeRule, ratio: float) -> tuple[int, int] | None:
    """The largest ``rule`` allows in ``ratio`` (width / height, clamped to its limits)."""
    ratio = min(max(ratio, 1 / rule.max_ratio), rule.max_ratio)
    width = math.sqrt(rule.max_pixels * ratio)
    height = width / ratio
    fit = min(1.0, rule.max_edge / max(width, height))
    step = rule.multiple
    shape = [max(step, math.floor(side * fit / step) * step) for side in (width, height)]
    for _ in range(4):  # flooring can step over the ratio limit: bring the long side in
        if rule.allows(shape[0], shape[1]):
            return (shape[0], shape[1])
        long = 0 if shape[0] > shape[1] else 1
        shape[long] = max(step, shape[long] - step)
    return None
