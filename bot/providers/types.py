"""What callers ask a provider for and what they get back, free of HTTP details.

Requests carry the member's id as given (``user_id``); the client turns it into a salted hash
before anything leaves the process. Image bytes are excluded from ``repr`` so a request or result
can be logged without dumping megabytes into the log.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field, replace
from enum import StrEnum


class Operation(StrEnum):
    GENERATE = "generate"
    EDIT = "edit"
    VARY = "vary"


@dataclass(frozen=True, kw_only=True)
class StableDiffusionOptions:
    """Options only Stable Diffusion backends (AUTOMATIC1111, ComfyUI) take; the others refuse
    a request that sets any (see ``SD_FIELDS`` and ``BackendFeatures.sd_options``)."""

    negative_prompt: str = ""
    #: None = random; the seed used is in ``ImageResult.seeds``.
    seed: int | None = None
    steps: int | None = None
    #: Classifier-free guidance (A1111 ``cfg_scale``, ComfyUI KSampler ``cfg``).
    guidance: float | None = None
    sampler: str | None = None
    #: A checkpoint the server has (None = the backend's configured or loaded one).
    checkpoint: str | None = None
    #: img2img denoising strength, 0-1 (A1111 ``denoising_strength``, ComfyUI KSampler
    #: ``denoise``): how far an edit or variation may stray from its image; None = the
    #: backend's default. Prompt-only generations take none.
    strength: float | None = None


@dataclass(frozen=True)
class GenerateRequest(StableDiffusionOptions):
    prompt: str
    _: KW_ONLY
    n: int = 1
    #: None = let the provider pick its default for the model.
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    #: None = the operator's configured model.
    model: str | None = None
    user_id: str | None = None
    #: GPT image models' content-moderation level ("low" | "auto"); None = not sent (the
    #: provider's default). Only generations take it: the edits endpoint's multipart form
    #: has no such field in the API's spec.
    moderation: str | None = None

    operation = Operation.GENERATE


@dataclass(frozen=True)
class EditRequest(StableDiffusionOptions):
    #: Already normalized by bot.imaging (a square PNG for dall-e-2).
    image: bytes = field(repr=False)
    prompt: str
    _: KW_ONLY
    #: PNG with the same dimensions as ``image``; alpha 0 marks the area to repaint.
    mask: bytes | None = field(default=None, repr=False)
    #: More pictures after ``image``, for one edit of them all (a blend; GPT image models,
    #: ``ModelSpec.max_input_images``): sent with it as repeated ``image[]`` parts.
    extra_images: tuple[bytes, ...] = field(default=(), repr=False)
    n: int = 1
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    model: str | None = None
    user_id: str | None = None
    #: GPT image models: how closely the result keeps the input's details ("high" | "low");
    #: None = the model's default (and the only choice of models without it).
    input_fidelity: str | None = None

    operation = Operation.EDIT


@dataclass(frozen=True)
class VaryRequest(StableDiffusionOptions):
    image: bytes = field(repr=False)
    _: KW_ONLY
    n: int = 1
    size: str | None = None
    model: str | None = None
    user_id: str | None = None
    #: The source's prompt: img2img needs one to keep the picture's subject (OpenAI's
    #: variations endpoint takes none and ignores it).
    prompt: str = ""

    operation = Operation.VARY


ImageRequest = GenerateRequest | EditRequest | VaryRequest


@dataclass(frozen=True)
class UpscaleRequest:
    """One image made larger (``Backend.upscale``): each backend its own way, never a plain
    resize (see :mod:`bot.providers.upscale`)."""

    #: Already normalized by bot.imaging, at about its own size and shape.
    image: bytes = field(repr=False)
    _: KW_ONLY
    #: The prompt the image was made from: context for a model that redraws it (GPT image).
    prompt: str = ""
    #: The size to make (GPT image models: the largest in the image's shape); the SD servers
    #: enlarge by their upscaler's own factor and ignore it.
    size: str | None = None
    quality: str | None = None
    model: str | None = None
    user_id: str | None = None


#: The request fields only Stable Diffusion backends take (see ``BackendFeatures.sd_options``).
SD_FIELDS = (
    "negative_prompt",
    "seed",
    "steps",
    "guidance",
    "sampler",
    "checkpoint",
    "strength",
)


@dataclass(frozen=True)
class ImageUsage:
    """Token counts reported by GPT image models; the quota layer prices gpt-image-2 from them."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    output_text_tokens: int = 0


@dataclass(frozen=True)
class GeneratedImage:
    """One verified image: ``data`` decodes as ``mime_type`` with these dimensions."""

    data: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int
    revised_prompt: str | None = None
    #: The seed it was made with, where the backend has seeds (see ``ImageResult.seeds``).
    seed: int | None = None

    @property
    def extension(self) -> str:
        """File extension for an upload name (``png``, ``jpeg``, ``webp``)."""
        return self.mime_type.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImageResult:
    """A finished request, at most the images asked for.

    ``size``/``quality`` are what we sent, or what the provider reports where the model table
    allows that value (the real size of an "auto" request).
    """

    images: tuple[GeneratedImage, ...]
    model: str
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    usage: ImageUsage | None = None
    #: Unix time the provider says it made the images.
    created: int | None = None
    #: The seed of each image, where the backend has seeds (Stable Diffusion servers).
    seeds: tuple[int, ...] = ()
    #: Partial images streamed while it was made (previews, each billed: see ``usage``).
    partial_images: int = 0

    def __post_init__(self) -> None:
        # Each image carries its own seed: whatever posts or keeps the images (the Discord
        # layer, the store) has it without being handed the result too.
        if self.seeds and any(image.seed is None for image in self.images):
            seeded = tuple(
                replace(image, seed=seed) if image.seed is None else image
                for image, seed in zip(self.images, self.seeds, strict=False)
            )
            object.__setattr__(self, "images", seeded + self.images[len(seeded) :])

    @property
    def revised_prompts(self) -> list[str]:
        """The prompts dall-e-3 actually used (it rewrites them); empty for other models."""
        return [image.revised_prompt for image in self.images if image.revised_prompt]
