"""One path from "a member asked for images" to verified image bytes, used by every front end.

The one-shot CLI commands and the Discord bot both call :func:`make_images`, so what a member
gets in Discord is exactly what an operator can reproduce from the command line. Uploads are
normalized here (off the event loop) to what the chosen model accepts before the provider sees
them: a square for models that take only squares (dall-e-2), otherwise the supported shape
nearest the upload's own (:func:`input_size`), so a landscape photo is not letterboxed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

import aiohttp

from bot.config import Settings
from bot.errors import BotError
from bot.imaging import DEFAULT_EDIT_FIT, DEFAULT_FIT, Fit, ImageWorker, canvas
from bot.providers import (
    EditRequest,
    FreeSizeRule,
    GenerateRequest,
    ImageRequest,
    ImageResult,
    ModelSpec,
    Operation,
    TooManyInputImages,
    UnsupportedOperation,
    VaryRequest,
    check_request,
    parse_size,
)
from bot.providers.backend import Backend
from bot.providers.checks import SDLimits, check_sd_options, png_dimensions
from bot.providers.progress import ProgressCallback
from bot.providers.registry import BackendSet
from bot.providers.types import UpscaleRequest

#: Side of the square the uploads of models without fixed square sizes are normalized to.
DEFAULT_INPUT_SIDE = 1024
#: Pixels of an upload reshaped for a free-size model (gpt-image-2) when no size was chosen.
INPUT_PIXELS = DEFAULT_INPUT_SIDE * DEFAULT_INPUT_SIDE
#: Imaging takes sides that are multiples of this (bot.imaging.normalize).
INPUT_MULTIPLE = 16

#: ``ImageOrder.action`` of an upscale (``bot.studio.StudioAction.UPSCALE``): an edit order
#: whose image the backend's ``upscale`` makes larger instead (see :func:`send_order`).
UPSCALE = "upscale"
#: ``ImageOrder.action`` of ``/blend``: one edit of several pictures (``image`` and
#: ``extra_images``), which only models with ``max_input_images`` > 1 take (GPT image models).
BLEND = "blend"
#: The most pictures ``/blend`` takes (the GPT image models take up to 16 in one edit).
MAX_BLEND_IMAGES = 5
#: What ``/blend`` asks for when the member gives no prompt.
DEFAULT_BLEND_PROMPT = "Blend these images into one picture."

FitChoice = Fit | Literal["auto"]
R = TypeVar("R", GenerateRequest, EditRequest, VaryRequest)


class PromptEmpty(BotError):
    key = "error.prompt_empty"
    template = "The prompt is empty. Describe the image you want."


class BlendUnsupported(BotError):
    """The order's backend (or model) takes one picture per edit: a blend is refused before
    any upload is read."""

    key = "error.blend_unsupported"
    template = "This server's backend can't blend images; blending needs a GPT image model."


@dataclass(frozen=True)
class ImageService:
    """Normalization plus the configured backends: everything needed to make images.

    (Not an "engine": in this code base that word is the SQLAlchemy engine.)
    """

    settings: Settings
    http: aiohttp.ClientSession
    images: ImageWorker
    backends: BackendSet

    @property
    def provider(self) -> Backend:
        """The default backend (``[provider]``): what an order without a backend runs on."""
        return self.backends.default

    @property
    def models(self) -> dict[str, ModelSpec]:
        return dict(self.provider.models)

    def backend_for(self, order: ImageOrder) -> Backend:
        return self.backends.for_job(order.backend)


@dataclass(frozen=True)
class ImageOrder:
    """What someone asked for, before any upload is normalized."""

    operation: Operation
    prompt: str = ""
    image: bytes | None = field(default=None, repr=False)
    mask: bytes | None = field(default=None, repr=False)
    #: A blend's other pictures, after ``image`` (stored as the job's inputs 1..n-1).
    extra_images: tuple[bytes, ...] = field(default=(), repr=False)
    n: int = 1
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    model: str | None = None
    fit: FitChoice = "auto"
    #: The requester (a Discord id as text); hashed before it leaves the process.
    user_id: str | None = None
    #: The configured backend it runs on (None: "default"; the job layer fills in the
    #: server's choice, see bot.jobs.backends).
    backend: str | None = None
    #: Stable Diffusion options (``bot.providers.SD_FIELDS``); None/"" = the backend's default.
    negative_prompt: str = ""
    #: The seed asked for; None = random (Redo keeps it random).
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    checkpoint: str | None = None
    #: The studio action that made this order (``bot.studio.StudioAction``), None otherwise.
    action: str | None = None
    #: Stable Diffusion denoising strength (img2img); None = the backend's default.
    strength: float | None = None
    #: GPT image models' ``input_fidelity`` ("high" | "low"); None = the model's default.
    input_fidelity: str | None = None
    #: GPT image models' ``moderation`` ("low" where a server allows it); None = the default.
    moderation: str | None = None


#: An order's settings, each with the job column that keeps it: the one list that storing a job
#: (``store.new_job``), reading its order back (``store.order_of``) and the provider request
#: (:func:`build_request`, which takes those its request type has) all read.
ORDER_SETTINGS: dict[str, str] = {
    "prompt": "prompt",
    "n": "n_requested",
    "size": "size",
    "quality": "quality",
    "style": "style",
    "background": "background",
    "fit": "fit",
    "model": "model",
    "backend": "backend",
    # Stable Diffusion options, each in the job column of its own name (migration 0006).
    "negative_prompt": "negative_prompt",
    "seed": "seed",
    "steps": "steps",
    "guidance": "guidance",
    "sampler": "sampler",
    "checkpoint": "checkpoint",
    # Studio and safety (migration 0009).
    "action": "action",
    "strength": "strength",
    "input_fidelity": "input_fidelity",
    "moderation": "moderation",
}

_REQUESTS: dict[Operation, type[ImageRequest]] = {
    Operation.GENERATE: GenerateRequest,
    Operation.EDIT: EditRequest,
    Operation.VARY: VaryRequest,
}


def input_side(spec: ModelSpec, size: str | None) -> int:
    """The square side uploads are normalized to for ``spec`` producing ``size`` images.

    Models with square-only inputs (dall-e-2) need the input at the output size; the others
    accept any input, where 1024 keeps detail without wasting upload time.
    """
    wanted = size or spec.default_size
    parsed = parse_size(wanted) if wanted else None
    if parsed is None:  # "auto" or no size at all
        return DEFAULT_INPUT_SIDE
    side = min(parsed)
    return side if spec.edit_input.square else min(side, DEFAULT_INPUT_SIDE)


def input_size(spec: ModelSpec, size: str | None, source: tuple[int, int]) -> tuple[int, int]:
    """Width and height an upload of ``source`` size is normalized to for ``spec``.

    Square-input models get :func:`input_side`. For the others a size the member chose wins and
    the upload is fitted to its shape; without one (or with "auto") the upload keeps about its
    own shape: the nearest the model supports (:func:`nearest_shape`), and the request asks
    for that shape (:func:`send_order`).
    """
    if spec.edit_input.square:
        side = input_side(spec, size)
        return (side, side)
    chosen = parse_size(size) if size else None
    shape = chosen or nearest_shape(spec, source) or (DEFAULT_INPUT_SIDE, DEFAULT_INPUT_SIDE)
    return _at_most_input_side(shape)


def shape_spec(spec: ModelSpec, allowed_sizes: tuple[str, ...]) -> ModelSpec:
    """``spec`` with only the sizes the operator allows (``[quotas] allowed_sizes``), so an
    upload's shape never picks a size (and price) the operator ruled out."""
    if not allowed_sizes or spec.edit_input.square:
        return spec
    sizes = tuple(size for size in allowed_sizes if spec.allows_size(size))
    return replace(spec, sizes=sizes, free_size=None)


def nearest_shape(spec: ModelSpec, source: tuple[int, int]) -> tuple[int, int] | None:
    """The size ``spec`` can produce whose aspect ratio is closest to ``source``'s, if any.

    A size the model allows as it is (a kept input sent again) stays, so normalizing twice
    gives the same request. Free-size models (gpt-image-2) get about ``INPUT_PIXELS`` in the
    source's ratio, clamped to the rule's limits; ties go to that over a listed size.
    """
    width, height = source
    as_text = f"{width}x{height}"
    if as_text in spec.sizes or (spec.allows_size(as_text) and width * height <= INPUT_PIXELS):
        return source
    ratio = width / height
    candidates = [parsed for s in spec.sizes if (parsed := parse_size(s)) is not None]
    if spec.free_size is not None and (free := _free_shape(spec.free_size, ratio)) is not None:
        candidates.insert(0, free)
    if not candidates:
        return None
    return min(candidates, key=lambda c: abs(math.log(c[0] / c[1] / ratio)))


def _free_shape(rule: FreeSizeRule, ratio: float) -> tuple[int, int] | None:
    ratio = min(max(ratio, 1 / rule.max_ratio), rule.max_ratio)
    multiple = math.lcm(rule.multiple, INPUT_MULTIPLE)
    pixels = min(INPUT_PIXELS, rule.max_pixels)
    width = math.sqrt(pixels * ratio)
    fit = min(1.0, rule.max_edge / max(width, width / ratio))
    shape = [
        max(multiple, round(side * fit / multiple) * multiple) for side in (width, width / ratio)
    ]
    for _ in range(3):  # rounding can step over the ratio limit: bring the long side in
        if rule.allows(*shape):
            return (shape[0], shape[1])
        long = 0 if shape[0] > shape[1] else 1
        shape[long] = max(multiple, shape[long] - multiple)
    return None


def _at_most_input_side(size: tuple[int, int]) -> tuple[int, int]:
    """``size``'s shape with its short side at most ``DEFAULT_INPUT_SIDE``, in imaging's steps."""
    factor = min(1.0, DEFAULT_INPUT_SIDE / min(size))
    width, height = (max(1, round(side * factor / INPUT_MULTIPLE)) for side in size)
    return (width * INPUT_MULTIPLE, height * INPUT_MULTIPLE)


def resolve_fit(choice: FitChoice, operation: Operation) -> Fit:
    """``auto`` pads pictures to edit (nothing the member drew is lost) and crops the rest."""
    if choice != "auto":
        return choice
    return DEFAULT_EDIT_FIT if operation is Operation.EDIT else DEFAULT_FIT


def build_request(
    order: ImageOrder, spec: ModelSpec, image: bytes = b"", mask: bytes | None = None
) -> ImageRequest:
    """The provider request for ``order`` with its (already normalized) uploads.

    It takes each of :data:`ORDER_SETTINGS` its type has (a variation has no prompt, an edit
    no style); the model is the one resolved for the order."""
    kind = _REQUESTS[order.operation]
    accepted = {part.name for part in fields(kind)}
    values: dict[str, Any] = {
        name: getattr(order, name) for name in ORDER_SETTINGS if name in accepted
    }
    values.update(model=spec.name, user_id=order.user_id)
    if kind is not GenerateRequest:
        values["image"] = image
    if "mask" in accepted:
        values["mask"] = mask
    if "extra_images" in accepted:
        values["extra_images"] = order.extra_images
    return kind(**values)


def check_order(backends: BackendSet, order: ImageOrder, *, pictures: int = 0) -> ModelSpec:
    """Everything about ``order`` that can be checked before its uploads are read, on the
    backend it names.

    Front ends call this the moment a member submits, so a wrong option is answered at once
    instead of after a download and a place in the queue. Stable Diffusion options are held
    to that backend's limits (``max_steps``, ``max_guidance``), or refused where it has none.
    ``pictures``: how many pictures a blend's uploads will give it (not read yet).
    """
    upscale = order.action == UPSCALE
    if order.operation is not Operation.VARY and not upscale and not order.prompt.strip():
        raise PromptEmpty()
    backend = backends.for_job(order.backend)
    spec = backend.spec_for(order.model)
    if upscale and not backend.features.upscaler and order.size is None:
        # An upscale sized for a server with an upscaler, failing over to one without.
        raise UnsupportedOperation(model=spec.name, operation=UPSCALE)
    if order.action == BLEND or order.extra_images:
        check_blend(spec, order, backend, pictures)
    request = build_request(order, spec)
    check_sd_options(spec, request, SDLimits.of(backends.settings[backend.name]))
    check_request(spec, request, images=False, sd_options=backend.features.sd_options)
    return spec


def check_blend(spec: ModelSpec, order: ImageOrder, backend: Backend, pictures: int = 0) -> None:
    """A blend needs a model that takes several pictures in one edit, and no more than it takes
    (``pictures``: the uploads still to read; else the order's own pictures are counted)."""
    if spec.max_input_images < 2 or backend.features.sd_options:
        raise BlendUnsupported()
    count = max(pictures, (order.image is not None) + len(order.extra_images))
    if count > spec.max_input_images:
        raise TooManyInputImages(model=spec.name, limit=spec.max_input_images, count=count)


async def make_images(service: ImageService, order: ImageOrder) -> ImageResult:
    """Normalize the order's uploads and ask its backend; raises BotError subclasses."""
    return await send_order(service, await normalize_uploads(service, order))


async def normalize_uploads(service: ImageService, order: ImageOrder) -> ImageOrder:
    """``order`` as it is sent: its uploads the PNGs (under 4 MB, see input_size) the model takes.

    This is what a job keeps instead of the raw uploads. Normalizing it again gives the same
    request, so Redo, Remix and Retry can send the kept inputs as they are.
    """
    if order.operation is Operation.GENERATE:
        return order
    image = order.image
    if image is None:
        raise ValueError(f"{order.operation.value} needs an image")
    spec = shape_spec(
        service.backend_for(order).spec_for(order.model), service.settings.quotas.allowed_sizes
    )
    if order.action == BLEND:
        return await _blend_inputs(service, order, spec, image)
    fit = resolve_fit(order.fit, order.operation)
    info = await service.images.probe(image)
    source = (info.width, info.height)
    if order.operation is Operation.EDIT and order.mask is None and order.action is not None:
        # A studio action's edit: its mask is made here, once; the order it returns has it,
        # so normalizing that again (Redo, the runner) is the plain edit below.
        if (recipe := CANVAS_ACTIONS.get(order.action)) is not None:
            return await _on_canvas(service, order, spec, image, recipe, source)
        if order.action in WHOLE_IMAGE_ACTIONS:
            return await _whole_image_edit(service, order, spec, image, source)
    side = input_size(spec, order.size, source)
    if order.operation is Operation.EDIT and order.action != UPSCALE:
        inputs = await service.images.normalize_edit(image, order.mask, side=side, fit=fit)
        return replace(order, image=inputs.image.png, mask=inputs.mask_png)
    # A variation, or the picture an upscale enlarges (transparency kept, nothing to mask).
    keep_alpha = order.action == UPSCALE
    normalized = await service.images.normalize_image(
        image, side=side, fit=fit, keep_alpha=keep_alpha
    )
    return replace(order, image=normalized.png, mask=None)


async def _blend_inputs(
    service: ImageService, order: ImageOrder, spec: ModelSpec, image: bytes
) -> ImageOrder:
    """Each picture of a blend normalized like an edit's (a PNG under 4 MB), in the member's
    order; none is masked or made transparent: the prompt says what to make of them.

    Each keeps about its own shape (:func:`input_size` without a size) whatever size the
    result is asked at, so normalizing them again (Redo, the runner) sends the same pictures."""
    fit = resolve_fit(order.fit, Operation.VARY)
    pictures = []
    for picture in (image, *order.extra_images):
        info = await service.images.probe(picture)
        side = input_size(spec, None, (info.width, info.height))
        pictures.append((await service.images.normalize_image(picture, side=side, fit=fit)).png)
    return replace(order, image=pictures[0], mask=None, extra_images=tuple(pictures[1:]))


@dataclass(frozen=True)
class CanvasRecipe:
    """How a studio action (``bot.studio.StudioAction``, by value) lays a picture on a new
    canvas for outpainting (``bot.imaging.canvas``)."""

    kind: Literal["zoom", "pan", "square"]
    #: Zoom: how many times smaller the picture gets.
    factor: float = 1.0
    #: Pan: the side the new band is on.
    side: canvas.Side = "right"


CANVAS_ACTIONS: dict[str, CanvasRecipe] = {
    "zoom_2": CanvasRecipe("zoom", factor=2.0),
    "zoom_1_5": CanvasRecipe("zoom", factor=1.5),
    "pan_left": CanvasRecipe("pan", side="left"),
    "pan_right": CanvasRecipe("pan", side="right"),
    "pan_up": CanvasRecipe("pan", side="up"),
    "pan_down": CanvasRecipe("pan", side="down"),
    "square": CanvasRecipe("square"),
}
#: Studio actions whose edit repaints the whole picture (Vary (Subtle)/(Strong) on the OpenAI
#: models): no mask where the model takes edits without one; on models with square inputs only
#: (dall-e-2, whose edits repaint only what a mask marks) a scattered mask (one cell in four).
WHOLE_IMAGE_ACTIONS = frozenset({"vary_subtle", "vary_strong"})
#: A pan asks for a canvas this much longer along the pan (the model's nearest size is used).
PAN_EXTENT = 1.5

SUBTLE_INSTRUCTION = (
    "Make a subtle variation of this image: keep the subject, composition, colours and style, "
    "changing only small details."
)
STRONG_INSTRUCTION = (
    "Reimagine this image with notable changes to composition, pose and details, keeping its "
    "subject and style."
)
CANVAS_INSTRUCTION = (
    "Fill the transparent area so that the picture continues seamlessly beyond its old edges."
)
#: What a studio action's edit tells a model that takes instructions (not Stable Diffusion,
#: whose prompt describes a picture): added when it is sent, so the job keeps the result's own
#: prompt (shown, remixed, and used again by the next action without doubling the instruction).
ACTION_INSTRUCTIONS: dict[str, str] = {
    "vary_subtle": SUBTLE_INSTRUCTION,
    "vary_strong": STRONG_INSTRUCTION,
    **dict.fromkeys(CANVAS_ACTIONS, CANVAS_INSTRUCTION),
}


def instructed_prompt(order: ImageOrder, spec: ModelSpec, backend: Backend) -> str:
    """The prompt an edit is sent with: a studio action's instruction, then what the image
    shows (the order's prompt), within the model's limit."""
    instruction = ACTION_INSTRUCTIONS.get(order.action or "")
    if instruction is None or backend.features.sd_options:
        return order.prompt
    return f"{instruction} The image shows: {order.prompt.strip()}"[: spec.max_prompt_chars]


def canvas_shape(recipe: CanvasRecipe, source: tuple[int, int]) -> tuple[int, int]:
    """The canvas a recipe wants for a ``source``-sized picture, before the model's sizes."""
    width, height = source
    if recipe.kind == "square":
        return (max(source), max(source))
    if recipe.kind == "pan" and recipe.side in ("left", "right"):
        return (round(width * PAN_EXTENT), height)
    if recipe.kind == "pan":
        return (width, round(height * PAN_EXTENT))
    return source


async def _on_canvas(
    service: ImageService,
    order: ImageOrder,
    spec: ModelSpec,
    image: bytes,
    recipe: CanvasRecipe,
    source: tuple[int, int],
) -> ImageOrder:
    """The picture on the recipe's canvas at the size the model makes nearest to it, the new
    area transparent and marked in the mask."""
    target = input_size(spec, order.size, canvas_shape(recipe, source))
    if recipe.kind == "zoom":
        laid = await service.images.run(canvas.zoom_out, image, canvas=target, factor=recipe.factor)
    elif recipe.kind == "pan":
        laid = await service.images.run(canvas.pan, image, canvas=target, side=recipe.side)
    else:
        laid = await service.images.run(canvas.make_square, image, canvas=target)
    inputs = await service.images.normalize_edit(laid.png, laid.mask_png, side=target, fit="pad")
    return replace(order, image=inputs.image.png, mask=inputs.mask_png)


async def _whole_image_edit(
    service: ImageService,
    order: ImageOrder,
    spec: ModelSpec,
    image: bytes,
    source: tuple[int, int],
) -> ImageOrder:
    """The picture for an edit of all of it (see :data:`WHOLE_IMAGE_ACTIONS`)."""
    side = input_size(spec, order.size, source)
    picture = await service.images.normalize_image(image, side=side, fit="crop")
    if not spec.edit_input.square:
        return replace(order, image=picture.png, mask=None)
    mask = await service.images.run(canvas.scattered_mask, picture.size)
    inputs = await service.images.normalize_edit(picture.png, mask, side=picture.size)
    return replace(order, image=inputs.image.png, mask=inputs.mask_png)


async def send_order(
    service: ImageService,
    sent: ImageOrder,
    backend: Backend | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> ImageResult:
    """Ask ``backend`` (default: the order's) for an order whose uploads are normalized (see
    normalize_uploads)."""
    backend = backend or service.backend_for(sent)
    spec = backend.spec_for(sent.model)
    if sent.operation is Operation.GENERATE:
        prompt_only = _as(GenerateRequest, build_request(sent, spec))
        return await backend.generate(prompt_only, progress=progress)
    image = sent.image or b""
    shapes = shape_spec(spec, service.settings.quotas.allowed_sizes)
    order = replace(sent, size=_output_size(sent.size, png_dimensions(image), shapes))
    if order.action == UPSCALE:
        larger = UpscaleRequest(
            image=image,
            prompt=order.prompt,
            size=order.size,
            quality=order.quality,
            model=spec.name,
            user_id=order.user_id,
        )
        return await backend.upscale(larger, progress=progress)
    if order.operation is Operation.EDIT:
        order = replace(order, prompt=instructed_prompt(order, spec, backend))
        edit = build_request(order, spec, image, order.mask)
        return await backend.edit(_as(EditRequest, edit), progress=progress)
    vary = build_request(order, spec, image)
    return await backend.vary(_as(VaryRequest, vary), progress=progress)


def _as(kind: type[R], request: ImageRequest) -> R:
    assert isinstance(request, kind)
    return request


def _output_size(
    requested: str | None, image: tuple[int, int] | None, spec: ModelSpec
) -> str | None:
    """The size to ask for, given the normalized input's width and height.

    Square-input models answer at the input's size (if normalization shrank it, follow). The
    others keep a size the member chose; without one, the input's shape (see input_size).
    """
    if image is None:
        return requested
    if not spec.edit_input.square:
        shape = None if requested is not None else nearest_shape(spec, image)
        return f"{shape[0]}x{shape[1]}" if shape else requested
    size = f"{image[0]}x{image[0]}"
    return size if spec.allows_size(size) else requested
