"""The AUTOMATIC1111 / Forge web UI API (``/sdapi/v1``) behind generate, edit and vary.

The same shape and rules as the OpenAI client (:mod:`bot.providers.client`): typed errors from
:mod:`bot.providers.errors`, bodies read through ``fetch`` (hosts checked, decoded bytes capped),
every image verified on the image worker, at most the images asked for kept. What differs is the
server, which runs one job at a time and says nothing while it works:

* **Our job among everyone's** (:mod:`bot.providers.automatic1111_tasks`): each request
  carries our own ``force_task_id``; progress and previews are passed on, and the interrupt
  (which stops whatever runs) sent, only while the server says that task is the active one.
  Cancelling a call, or a call timing out, interrupts its job, also one still queued behind
  another, since the server runs a request whose client has gone. A job someone else
  interrupted (the web UI's button) is an outage, not a result: its images are half made.
* **Quiet fallbacks**: the server swaps an unknown sampler for its first one and ignores an
  unknown checkpoint, so both are checked against its own lists before anything is sent.
* **Masks**: ours marks the area to repaint with transparency; A1111's with white. The mask is
  converted (``convert_mask``, Pillow work the composition root runs on the image worker).
* **Errors**: no connection, timeouts and 5xx are outages (``ProviderUnavailable``, which the
  queue may retry); 422 is an invalid request naming the field; 401/403/404 are the operator's
  (wrong ``--api-auth`` credentials or base URL). A generation is never re-sent by this client
  after it may have reached the server: the server would make it twice. Only a refused
  connection is retried.

Built from one backend's settings (``[provider]`` or ``[backends.NAME]`` with
``type = "automatic1111"``) by :mod:`bot.providers.registry`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random as _random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import pybase64

from bot.config import ProviderSettings
from bot.providers.automatic1111_tasks import TaskTracker
from bot.providers.automatic1111_upscale import (
    EXTRAS_PATH,
    UPSCALERS_PATH,
    chosen_upscaler,
    extras_body,
    upscaled_image,
    upscaler_names,
)
from bot.providers.automatic1111_wire import (
    BACKEND,
    DEFAULT_SIZE,
    MAX_IMAGES,
    Checkpoint,
    b64,
    checked_size,
    classify_error,
    info_object,
    json_object,
    model_spec,
    objects,
    refuse_openai_options,
    size_of,
)
from bot.providers.backend import SDChoice, stable_diffusion_features
from bot.providers.capabilities import ModelSpec
from bot.providers.checks import check_request
from bot.providers.errors import (
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
    TooManyImages,
    UnknownModel,
    UnknownUpscaler,
    UnsupportedOption,
)
from bot.providers.fetch import HostPolicy
from bot.providers.progress import ProgressCallback
from bot.providers.selfhosted import exchange
from bot.providers.types import (
    EditRequest,
    GeneratedImage,
    GenerateRequest,
    ImageRequest,
    ImageResult,
    UpscaleRequest,
    VaryRequest,
)

log = logging.getLogger(__name__)

#: How far a variation may stray from its source (img2img ``denoising_strength``): 0 returns
#: the source, 1 ignores it. 0.6 keeps the composition and colours and redraws the details,
#: what "another take of the same picture" looks like on SD 1.5 and SDXL checkpoints.
VARY_DENOISING = 0.6
#: How much of the marked area an edit redraws; A1111's own default, starting from the
#: original pixels there (``inpainting_fill`` 1) so the result still fits the picture.
EDIT_DENOISING = 0.75
#: Checks images (bot.imaging.verify_results on the image worker): mime, width, height each.
VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]
#: Our mask PNG (transparent = repaint) -> A1111's (white = repaint), on the image worker.
ConvertMask = Callable[[bytes], Awaitable[bytes]]


class Automatic1111Client:
    """One AUTOMATIC1111 / Forge server as a :class:`~bot.providers.backend.Backend`; safe to
    share between tasks."""

    features = stable_diffusion_features("automatic1111")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ProviderSettings,
        *,
        name: str = "default",
        verify: VerifyImages,
        convert_mask: ConvertMask,
        steps: int = 20,
        poll_interval: float = 0.5,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        observe: Callable[[str, float, str | None], None] | None = None,
    ) -> None:
        """``settings.model`` "" = whatever checkpoint the server has loaded; ``steps`` is
        A1111's UI default (its API's own default, 50, takes 2.5 times as long for little gain).

        ``observe(path, seconds, error_code)`` is told about every generation call (metrics).
        """
        self.name = name
        self._session = session
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._verify = verify
        self._convert_mask = convert_mask
        self._password = settings.password
        self._headers: dict[str, str] = {}
        if settings.username:
            pair = f"{settings.username}:{settings.password}".encode()
            auth = "Basic " + base64.b64encode(pair).decode("ascii")
            self._headers["Authorization"] = auth
            self._secrets: tuple[str, ...] = (self._password, auth, auth.split(" ", 1)[1])
        else:
            self._secrets = ()
        self._checkpoint = settings.model or None
        self._steps = steps
        self._spec = model_spec(settings)
        self._hosts = HostPolicy.from_settings(settings.base_url, settings.allowed_hosts)
        self._max_response = int(settings.max_response_mb * 1024 * 1024)
        # No read timeout: the server says nothing until the images are made.
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout_seconds, sock_connect=settings.connect_timeout_seconds
        )
        self._poll_interval = poll_interval
        self._poll_timeout = aiohttp.ClientTimeout(total=max(5.0, poll_interval * 4))
        self._max_retries = settings.max_retries
        self._sleep = sleep
        self._random = random
        self._observe = observe
        self._samplers: frozenset[str] | None = None
        self._upscaler: str | None = None
        self._checkpoints: tuple[Checkpoint, ...] | None = None
        self._tasks = TaskTracker(
            self._call_json,
            verify=verify,
            poll_interval=poll_interval,
            max_preview_bytes=self._max_response,
            server=self._base_url,
        )

    def __repr__(self) -> str:
        return f"Automatic1111Client(base_url={self._base_url!r})"

    # --- what the server offers --------------------------------------------------------------

    async def checkpoints(self, *, refresh: bool = False) -> tuple[Checkpoint, ...]:
        """The server's checkpoints (cached; ``refresh`` asks again)."""
        if self._checkpoints is None or refresh:
            items = await self._call_json("/sdapi/v1/sd-models", None, retries=None)
            self._checkpoints = tuple(
                Checkpoint(
                    item["title"], str(item.get("model_name") or item["title"]), item.get("hash")
                )
                for item in objects(items)
                if isinstance(item.get("title"), str)
            )
        return self._checkpoints

    async def samplers(self, *, refresh: bool = False) -> frozenset[str]:
        """The exact sampler names the server knows (cached)."""
        if self._samplers is None or refresh:
            items = await self._call_json("/sdapi/v1/samplers", None, retries=None)
            self._samplers = frozenset(
                item["name"] for item in objects(items) if isinstance(item.get("name"), str)
            )
        return self._samplers

    async def upscaler(self, *, refresh: bool = False) -> str:
        """``provider.upscaler`` as the server has it (checked against its list, cached);
        UnknownUpscaler naming the ones it has when it has not."""
        if self._upscaler is None or refresh:
            offered = upscaler_names(await self._call_json(UPSCALERS_PATH, None, retries=None))
            try:
                self._upscaler = chosen_upscaler(self._settings.upscaler, offered)
            except UnknownUpscaler as error:
                log.error("A1111 %s: %s", self.name, error.detail)
                raise
        return self._upscaler

    async def check_access(self) -> str:
        """One cheap authenticated call that proves URL and credentials: the checkpoint list."""
        found = await self.checkpoints(refresh=True)
        if self._settings.upscaler:  # the operator chose one: it must be there
            await self.upscaler(refresh=True)
        if self._checkpoint is not None:
            await self._find_checkpoint(self._checkpoint)
            return f"{len(found)} checkpoints, {self._checkpoint} among them"
        return f"{len(found)} checkpoints"

    # --- the model table ---------------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return {self._spec.name: self._spec}

    def spec_for(self, model: str | None) -> ModelSpec:
        """The one model this backend offers (checkpoints are an option: ``checkpoint``)."""
        if model is None or model == self._spec.name:
            return self._spec
        raise UnknownModel(model=model, allowed=self._spec.name)

    async def option_values(self, option: SDChoice) -> tuple[str, ...]:
        if option == "sampler":
            return tuple(sorted(await self.samplers()))
        return tuple(checkpoint.model_name for checkpoint in await self.checkpoints())

    # --- operations ----------------------------------------------------------------------------

    async def generate(
        self,
        request: GenerateRequest,
        *,
        progress: ProgressCallback | None = None,
        task_id: str | None = None,
    ) -> ImageResult:
        check_request(self.spec_for(request.model), request, sd_options=True)
        refuse_openai_options(request)
        body = await self._common(request, request.prompt, request.size)
        return await self._run("/sdapi/v1/txt2img", body, request.n, progress, task_id)

    async def edit(
        self,
        request: EditRequest,
        *,
        progress: ProgressCallback | None = None,
        task_id: str | None = None,
    ) -> ImageResult:
        """img2img of the image, repainting only what the mask (or the image's own
        transparency) marks."""
        check_request(self.spec_for(request.model), request, sd_options=True)
        refuse_openai_options(request)
        size = request.size or size_of(request.image)
        body = await self._common(request, request.prompt, size)
        mask = await self._convert_mask(request.mask if request.mask is not None else request.image)
        body.update(
            init_images=[b64(request.image)],
            mask=b64(mask),
            denoising_strength=_strength(request.strength, EDIT_DENOISING),
            inpainting_fill=1,
            inpaint_full_res=False,
            inpainting_mask_invert=0,
            mask_blur=4,
        )
        return await self._run("/sdapi/v1/img2img", body, request.n, progress, task_id)

    async def vary(
        self,
        request: VaryRequest,
        *,
        progress: ProgressCallback | None = None,
        task_id: str | None = None,
    ) -> ImageResult:
        """img2img of the source at the request's strength (Vary (Subtle)/(Strong)), else
        ``VARY_DENOISING``; a prompt (the source's) helps it."""
        check_request(self.spec_for(request.model), request, sd_options=True)
        size = request.size or size_of(request.image)
        body = await self._common(request, request.prompt, size)
        body.update(
            init_images=[b64(request.image)],
            denoising_strength=_strength(request.strength, VARY_DENOISING),
        )
        return await self._run("/sdapi/v1/img2img", body, request.n, progress, task_id)

    async def upscale(
        self, request: UpscaleRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """``extra-single-image``: the image at twice its size by the operator's upscaler.

        Extras run under the server's queue lock without a task id: no progress, and a
        cancelled call cannot stop them (an upscale takes seconds)."""
        self.spec_for(request.model)
        upscaler = await self.upscaler()
        body = await asyncio.to_thread(extras_body, request.image, upscaler)
        started = time.monotonic()
        try:
            _, raw = await self._request("POST", EXTRAS_PATH, json_body=body, limits=self._timeout)
        except ProviderError as error:
            self._tell_observer(EXTRAS_PATH, started, error.code or error.key)
            raise
        self._tell_observer(EXTRAS_PATH, started, None)
        data = await asyncio.to_thread(upscaled_image, raw)
        try:
            ((mime, width, height),) = await self._verify([data])
        except ValueError as exc:
            raise MalformedResponse(detail=str(exc)) from None
        return ImageResult(
            images=(GeneratedImage(data, mime, width, height),),
            model=BACKEND,
            size=f"{width}x{height}",
        )

    async def cancel(self, task_id: str) -> bool:
        """Interrupt the server's job if, and only if, it is ``task_id``; whether it was sent.

        Cancelling a generate/edit/vary call does this by itself, also for a request still
        queued behind someone else's job; this is for a task whose call is gone.
        """
        return await self._tasks.cancel(task_id)

    async def aclose(self) -> None:
        """Stop the watchers of cancelled requests (at shutdown; the session closes after)."""
        await self._tasks.aclose()

    # --- request building ----------------------------------------------------------------------

    async def _common(self, request: ImageRequest, prompt: str, size: str | None) -> dict[str, Any]:
        width, height = checked_size(size or DEFAULT_SIZE)
        n = request.n
        if not 1 <= n <= MAX_IMAGES:
            raise TooManyImages(model=BACKEND, max_n=MAX_IMAGES, n=n)
        self._check_limits(request)
        body: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": request.negative_prompt,
            "seed": -1 if request.seed is None else request.seed,
            "steps": request.steps or self._steps,
            "width": width,
            "height": height,
            "batch_size": n,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        if request.guidance is not None:
            body["cfg_scale"] = request.guidance
        if request.sampler is not None:
            known = await self.samplers()
            if request.sampler not in known:
                raise UnsupportedOption(
                    model=BACKEND,
                    option="sampler",
                    value=request.sampler,
                    allowed=", ".join(sorted(known)),
                )
            body["sampler_name"] = request.sampler
        checkpoint = request.checkpoint or self._checkpoint
        if checkpoint is not None:
            found = await self._find_checkpoint(checkpoint)
            body["override_settings"] = {"sd_model_checkpoint": found.title}
        return body

    def _check_limits(self, request: ImageRequest) -> None:
        """The operator's ``max_steps`` and ``max_guidance``: a GPU's minutes are theirs."""
        limits, steps, guidance = self._settings, request.steps, request.guidance
        # (A value of the wrong type is the server's to refuse, with its 422 naming the field.)
        if isinstance(steps, int) and not 1 <= steps <= limits.max_steps:
            raise UnsupportedOption(
                model=BACKEND,
                option="steps",
                value=str(steps),
                allowed=f"1 to {limits.max_steps}",
            )
        if isinstance(guidance, int | float) and not 1 <= guidance <= limits.max_guidance:
            raise UnsupportedOption(
                model=BACKEND,
                option="guidance",
                value=f"{guidance:g}",
                allowed=f"1 to {limits.max_guidance:g}",
            )

    async def _find_checkpoint(self, name: str) -> Checkpoint:
        for refresh in (False, True):  # a checkpoint added since the last look
            for checkpoint in await self.checkpoints(refresh=refresh):
                if checkpoint.answers_to(name):
                    return checkpoint
        names = ", ".join(c.model_name for c in self._checkpoints or ())
        raise UnknownModel(model=name, allowed=names or "(none)")

    # --- running one request -------------------------------------------------------------------

    async def _run(
        self,
        path: str,
        body: dict[str, Any],
        n: int,
        progress: ProgressCallback | None,
        task_id: str | None,
    ) -> ImageResult:
        task_id = task_id or f"imagebot-{secrets.token_hex(8)}"
        body["force_task_id"] = task_id
        poller = asyncio.create_task(self._tasks.watch(task_id, progress))
        started = time.monotonic()
        try:
            _, raw = await self._request("POST", path, json_body=body, limits=self._timeout)
        except asyncio.CancelledError:
            self._tasks.interrupt_when_ours(task_id)
            raise
        except ProviderError as error:
            if error.possibly_billed:  # gave up waiting: the job would hold the GPU for nothing
                self._tasks.interrupt_when_ours(task_id)
            self._tell_observer(path, started, error.code or error.key)
            raise
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        self._tell_observer(path, started, None)
        # The question goes to the server while the answer is read and verified here.
        interrupted, result = await asyncio.gather(
            self._tasks.was_interrupted(task_id), self._result(raw, n)
        )
        if interrupted:
            # Someone stopped it in the web UI: the images are half made, not a result.
            raise ProviderUnavailable(detail=f"{path}: the job was interrupted on the server")
        return result

    def _tell_observer(self, path: str, started: float, error: str | None) -> None:
        if self._observe is not None:
            self._observe(path, time.monotonic() - started, error)

    # --- answers -------------------------------------------------------------------------------

    async def _result(self, answer: bytes, n: int) -> ImageResult:
        """The images as far as they keep to the request: at most ``n``, grid left out.

        Megabytes of JSON and base64 are parsed and decoded in a thread (pybase64), so the
        event loop stays free meanwhile (about 15 ms a 1024x1024 image with the standard
        library's decoders on the loop)."""
        raw, info = await asyncio.to_thread(_decoded, answer, n)
        try:
            checked = await self._verify(raw)
        except ValueError as exc:
            raise MalformedResponse(detail=str(exc)) from None
        images = tuple(
            GeneratedImage(data, mime, width, height)
            for data, (mime, width, height) in zip(raw, checked, strict=True)
        )
        seeds = info.get("all_seeds")
        model = info.get("sd_model_name")
        return ImageResult(
            images=images,
            model=model if isinstance(model, str) and model else BACKEND,
            size=f"{images[0].width}x{images[0].height}",
            seeds=tuple(s for s in seeds[: len(images)] if isinstance(s, int))
            if isinstance(seeds, list)
            else (),
        )

    # --- HTTP ----------------------------------------------------------------------------------

    async def _call_json(
        self, path: str, body: dict[str, Any] | None, *, retries: int | None = 0
    ) -> Any:
        """A GET (``body`` None) or a POST of ``body`` with a poll-sized timeout; by default
        never retried, since the polls that use it are their own retry."""
        method = "GET" if body is None else "POST"
        _, raw = await self._request(
            method, path, json_body=body, limits=self._poll_timeout, retries=retries
        )
        try:
            return json.loads(raw)
        except ValueError:
            raise MalformedResponse(detail=f"{path.split('?')[0]}: answer is not JSON") from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        limits: aiohttp.ClientTimeout,
        json_body: dict[str, Any] | None = None,
        retries: int | None = None,
    ) -> tuple[int, bytes]:
        """One exchange; only a refused connection is tried again (``retries``, default the
        client's), since anything that may have reached the server may be running there."""
        what = path.split("?", 1)[0]
        return await exchange(
            self._session,
            method,
            self._base_url + path,
            what=what,
            server="A1111",
            policy=self._hosts,
            limits=limits,
            max_bytes=self._max_response,
            classify=lambda status, raw: classify_error(status, raw, what, self._secrets),
            retries=self._max_retries if retries is None else retries,
            sleep=self._sleep,
            random=self._random,
            secrets=self._secrets,
            headers=self._headers,
            json_body=json_body,
        )


def _strength(asked: float | None, default: float) -> float:
    return default if asked is None else asked


def _decoded(answer: bytes, n: int) -> tuple[list[bytes], dict[str, Any]]:
    """An answer's images (at most ``n``, without the grid) as bytes, and its ``info``."""
    payload = json_object(answer)
    items = payload.get("images")
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise MalformedResponse(detail="answer has no images")
    info = info_object(payload.get("info"))
    first = info.get("index_of_first_image")
    if isinstance(first, int) and 0 < first < len(items):
        items = items[first:]  # the grid the server puts first when it saves images
    if len(items) > n:
        log.warning("A1111 sent %d images for %d asked: keeping %d", len(items), n, n)
        items = items[:n]
    try:
        return [pybase64.b64decode(item, validate=True) for item in items], info
    except (binascii.Error, ValueError):
        raise MalformedResponse(detail="image is not valid base64") from None
