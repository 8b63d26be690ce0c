"""The one interface the rest of the bot uses for every image backend.

OpenAI (and compatible servers), AUTOMATIC1111 / Forge and ComfyUI each implement
:class:`Backend`; nothing above ``bot/providers`` knows which one it talks to. What differs
between them is said by :class:`BackendFeatures` (what the backend can do) and the model table
(``models``/``spec_for``: operations, sizes, n and options per model), which the checks and the
Discord layer read instead of asking "is this OpenAI?".

Cancelling a running job is cancelling the ``generate``/``edit``/``vary``/``upscale`` call: a
backend that can stop its work (``cancel_running``) does so when its call is cancelled (A1111's
interrupt of our own task, ComfyUI's queue delete or interrupt); one that cannot (OpenAI) may
still bill it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.providers.capabilities import ModelSpec
from bot.providers.progress import ProgressCallback
from bot.providers.types import (
    EditRequest,
    GenerateRequest,
    ImageResult,
    UpscaleRequest,
    VaryRequest,
)

BackendKind = Literal["openai", "automatic1111", "comfyui"]
#: The Stable Diffusion options whose values come from the server's own lists.
SDChoice = Literal["checkpoint", "sampler"]


@dataclass(frozen=True)
class BackendFeatures:
    """What one backend can do, beyond its model table."""

    kind: BackendKind
    #: It sends pictures of the work so far (``ProgressUpdate.preview``).
    previews: bool = False
    #: It reports how far a request is (``ProgressUpdate.fraction``).
    progress: bool = False
    #: Cancelling a running call stops the work on the server (and its cost).
    cancel_running: bool = False
    #: It takes the Stable Diffusion options of the requests (``types.SD_FIELDS``).
    sd_options: bool = False
    #: It reports the seed of each image (``ImageResult.seeds``), so Redo can reuse one.
    seeds: bool = False
    #: It has an upscaler of its own (``upscale`` enlarges any image by its factor). Without
    #: one, ``upscale`` is an edit at the model's largest size, where the model has a larger
    #: size than the image (``bot.providers.upscale.upscale_size`` decides, before queueing).
    upscaler: bool = False


def stable_diffusion_features(kind: BackendKind) -> BackendFeatures:
    """What a Stable Diffusion server (AUTOMATIC1111, ComfyUI) does: everything, live."""
    return BackendFeatures(
        kind=kind,
        previews=True,
        progress=True,
        cancel_running=True,
        sd_options=True,
        seeds=True,
        upscaler=True,
    )


class Backend(Protocol):
    """One configured image backend; safe to share between tasks.

    Every call ends with verified image bytes or a typed :mod:`bot.providers.errors` exception.
    ``progress`` is called with each :class:`~bot.providers.progress.ProgressUpdate` the backend
    has (never for backends without ``features.progress``); a callback that raises is logged and
    ignored: a preview never fails a job.
    """

    #: The operator's name for it: "default" for ``[provider]``, NAME for ``[backends.NAME]``.
    name: str
    features: BackendFeatures

    @property
    def models(self) -> Mapping[str, ModelSpec]: ...

    def spec_for(self, model: str | None) -> ModelSpec:
        """The capabilities of ``model`` (None = the backend's default); UnknownModel if none."""
        ...

    async def generate(
        self, request: GenerateRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult: ...

    async def edit(
        self, request: EditRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult: ...

    async def vary(
        self, request: VaryRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult: ...

    async def upscale(
        self, request: UpscaleRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """One image, larger (:mod:`bot.providers.upscale`: how each backend does it)."""
        ...

    async def option_values(self, option: SDChoice) -> tuple[str, ...]:
        """The names the server offers for ``option`` (its checkpoints, its samplers), for
        autocomplete and checks; () where the backend has no such option."""
        ...

    async def check_access(self) -> str:
        """One cheap authenticated call proving URL and credentials; a line for ``check``
        (e.g. "3 checkpoints"); raises ProviderError when it fails."""
        ...

    async def aclose(self) -> None:
        """Stop background work (pollers, websockets); the HTTP session closes after."""
        ...
