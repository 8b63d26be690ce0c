"""ComfyUI (``/prompt``, ``/ws``, ``/history``, ``/view``) behind generate, edit and vary.

The same rules as the other clients: typed errors, bodies read through ``fetch`` (capped),
every image verified on the image worker, at most the images asked for kept. What is ComfyUI's:

* **Workflows** (:mod:`bot.providers.comfyui_mapping`): generate runs ``txt2img.json``, vary
  ``img2img.json`` (the shipped one at denoise 0.6), edit ``inpaint.json``, with the request
  written into the nodes titled ``imagebot:...``. They are loaded and checked when the client is
  built, so a workflow that cannot be mapped stops the bot at start.
* **One prompt, followed**: each call has its own ``client_id`` and its own ``prompt_id`` (sent
  with the prompt, so even a call cancelled before the answer knows what to cancel). The
  websocket, opened before the prompt is sent, brings progress and preview frames; the result
  comes from ``/history`` once ComfyUI says the prompt is done. A websocket that cannot open or
  drops mid-way is replaced by polling ``/history``: the job still ends, without progress.
* **The member's choices are checked first** against the server's own lists (checkpoints,
  samplers) and the operator's limits, so a refused graph (``node_errors``) is always the
  operator's problem: logged with the node, the member told the service is unavailable.
* **Cancel**: a call cancelled while its prompt waits in ComfyUI's queue deletes it there; while
  it runs, interrupts it (with its ``prompt_id``, which current servers check, and only after
  ``/queue`` showed it running, for older ones that interrupt whatever runs).
* **Outages**: no connection, timeouts, 5xx, a failed node (out of memory) and a prompt someone
  else interrupted are ``ProviderUnavailable``; only a refused connection is retried.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from bot.config import ProviderSettings
from bot.providers.backend import SDChoice, stable_diffusion_features
from bot.providers.capabilities import InputRule, ModelSpec, parse_size, sd_sizes
from bot.providers.comfyui_mapping import MASK_CHANNEL, Workflow, load_workflows
from bot.providers.comfyui_server import ComfyUIServer
from bot.providers.comfyui_watch import PromptFollower
from bot.providers.comfyui_wire import (
    BACKEND,
    choices,
    outcome_error,
    output_images,
)
from bot.providers.errors import (
    MalformedResponse,
    OperatorProblem,
    ProviderError,
    ProviderUnavailable,
    TooManyImages,
    UnknownModel,
    UnknownUpscaler,
    UnsupportedOption,
    UnsupportedSize,
)
from bot.providers.progress import ProgressCallback
from bot.providers.types import (
    EditRequest,
    GeneratedImage,
    GenerateRequest,
    ImageResult,
    Operation,
    UpscaleRequest,
    VaryRequest,
)

log = logging.getLogger(__name__)

#: The model table's one entry: the checkpoint is an option, not a model.
MODEL = "comfyui"
MAX_IMAGES = 4
MIN_SIDE = 64
#: Seconds the checkpoint and sampler lists offered for autocomplete are reused.
LIST_AGE = 30.0
VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]
#: Our mask PNG (transparent = repaint) -> white = repaint on black, on the image worker.
ConvertMask = Callable[[bytes], Awaitable[bytes]]
_OPENAI_ONLY = (
    "quality",
    "background",
    "output_format",
    "style",
    "input_fidelity",
    "moderation",
)


class ComfyUIClient:
    """One ComfyUI server; safe to share between tasks."""

    features = stable_diffusion_features("comfyui")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ProviderSettings,
        *,
        name: str,
        verify: VerifyImages,
        convert_mask: ConvertMask,
        observe: Callable[[str, float, str | None], None] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        poll_interval: float = 0.5,
    ) -> None:
        """Loads and checks the workflows now: ConfigError names a file that cannot be used.

        ``settings.model`` is the default checkpoint (unset: each workflow's own);
        ``timeout_seconds`` bounds a whole call, waiting in ComfyUI's queue included.
        """
        self.name = name
        self._settings = settings
        self._verify = verify
        self._convert_mask = convert_mask
        self._observe = observe
        self._workflows = load_workflows(settings.workflows)
        self._checkpoint = settings.model if settings.model != ProviderSettings.model else ""
        self._server = ComfyUIServer(
            session, settings, name=name, sleep=sleep, poll_interval=poll_interval
        )
        self._cleanups: set[asyncio.Task[None]] = set()
        sizes, free_size = sd_sizes(settings.max_side, MIN_SIDE, max_ratio=4.0)
        self._spec = ModelSpec(
            name=MODEL,
            operations=frozenset(Operation),
            sizes=sizes,
            free_size=free_size,
            default_size=None,
            max_n=MAX_IMAGES,
            max_prompt_chars=10_000,
            response_format=False,
            accepts_user=False,
            edit_input=InputRule(frozenset({"png", "jpeg", "webp"}), 50_000_000, square=False),
            mask_max_bytes=50_000_000,
            vary_prompt="",
        )

    def __repr__(self) -> str:
        return f"ComfyUIClient(name={self.name!r}, base_url={self._server.base_url!r})"

    # --- what it offers ------------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return {MODEL: self._spec}

    def spec_for(self, model: str | None) -> ModelSpec:
        if model in (None, MODEL, self._settings.model):
            return self._spec
        raise UnknownModel(model=model, allowed=MODEL)

    async def option_values(self, option: SDChoice) -> tuple[str, ...]:
        if option == "checkpoint":
            return await self._server.choices(
                "CheckpointLoaderSimple", "ckpt_name", max_age=LIST_AGE
            )
        return await self._server.choices("KSampler", "sampler_name", max_age=LIST_AGE)

    async def check_access(self) -> str:
        """The server's version and checkpoints, and that it has every node our workflows use."""
        stats = await self._server.call("GET", "/system_stats")
        info = await self._server.call("GET", "/object_info")
        system = stats.get("system") if isinstance(stats, dict) else None
        version = system.get("comfyui_version") if isinstance(system, dict) else None
        for workflow in self._workflows.values():
            for node_id, node in workflow.graph.items():
                if isinstance(info, dict) and node["class_type"] not in info:
                    raise OperatorProblem(
                        detail=f"ComfyUI workflow {workflow.source}: node {node_id} is a "
                        f"{node['class_type']}, which this server does not have "
                        "(a custom node that is not installed?)"
                    )
        checkpoints = choices(info, "CheckpointLoaderSimple", "ckpt_name")
        return f"ComfyUI {version or '(unknown version)'}, {len(checkpoints)} checkpoints"

    # --- operations ----------------------------------------------------------------------

    async def generate(
        self, request: GenerateRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        workflow = self._workflows["generate"]
        values, seed = await self._common(workflow, request)
        size = request.size
        if size is not None:
            width, height = self._checked_size(size)
            values["size"] = {"width": width, "height": height}
        self._batch(workflow, values, request.n)
        return await self._run(workflow, values, request.n, seed, progress)

    async def edit(
        self, request: EditRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """Inpaint what the mask (or the image's own transparency) marks."""
        workflow = self._workflows["edit"]
        values, seed = await self._common(workflow, request)
        mask = await self._convert_mask(request.mask if request.mask is not None else request.image)
        values["image"] = {"image": await self._server.upload(request.image)}
        values["mask"] = {"image": await self._server.upload(mask), "channel": MASK_CHANNEL}
        self._batch(workflow, values, request.n)
        return await self._run(workflow, values, request.n, seed, progress)

    async def vary(
        self, request: VaryRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """img2img of the source with its own prompt, at the request's strength (the
        KSampler's ``denoise``), else the workflow's."""
        workflow = self._workflows["vary"]
        values, seed = await self._common(workflow, request)
        values["image"] = {"image": await self._server.upload(request.image)}
        self._batch(workflow, values, request.n)
        return await self._run(workflow, values, request.n, seed, progress)

    async def upscale(
        self, request: UpscaleRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """The upscale workflow: the image through the upscale model (``provider.upscaler``,
        else the workflow's own), at that model's factor."""
        workflow = self._workflows["upscale"]
        self.spec_for(request.model)
        loader = workflow.graph[workflow.nodes["upscaler"]]
        wanted = self._settings.upscaler or str(loader["inputs"].get("model_name", ""))
        for refresh in (False, True):  # a model added since the last look
            known = await self._server.choices(
                loader["class_type"], "model_name", max_age=0 if refresh else None
            )
            if wanted in known:
                break
        else:
            error = UnknownUpscaler(
                upscaler=wanted,
                allowed=", ".join(known) or "(none)",
                detail=f"provider.upscaler {wanted!r} is not among the server's upscale models "
                f"({', '.join(known) or 'none'}; ComfyUI's models/upscale_models folder)",
            )
            log.error("ComfyUI %s: %s", self.name, error.detail)
            raise error
        values: dict[str, dict[str, Any]] = {
            "image": {"image": await self._server.upload(request.image)},
            "upscaler": {"model_name": wanted},
        }
        return await self._run(workflow, values, 1, None, progress)

    async def aclose(self) -> None:
        for task in list(self._cleanups):
            task.cancel()
        await asyncio.gather(*self._cleanups, return_exceptions=True)

    # --- the request into the graph ------------------------------------------------------

    async def _common(
        self, workflow: Workflow, request: GenerateRequest | EditRequest | VaryRequest
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """The member's choices, checked and placed; (role -> inputs, the seed used)."""
        for option in _OPENAI_ONLY:
            value = getattr(request, option, None)
            if value is not None:
                raise UnsupportedOption(model=BACKEND, option=option, value=value, allowed="none")
        self.spec_for(request.model)
        if request.size is not None:
            self._checked_size(request.size)
        if not 1 <= request.n <= MAX_IMAGES:
            raise TooManyImages(model=BACKEND, max_n=MAX_IMAGES, n=request.n)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        values: dict[str, dict[str, Any]] = {"prompt": {"text": request.prompt}}
        sampler = values["seed"] = {self._seed_input(workflow): seed}
        if request.negative_prompt:
            self._needs(workflow, "negative", "negative", request.negative_prompt)
            values["negative"] = {"text": request.negative_prompt}
        elif workflow.has("negative"):
            values["negative"] = {"text": ""}
        limits = self._settings
        if request.steps is not None:
            self._in_range("steps", request.steps, 1, limits.max_steps)
            self._needs_input(workflow, "steps", request.steps)
            sampler["steps"] = request.steps
        if request.guidance is not None:
            self._in_range("guidance", request.guidance, 0, limits.max_guidance)
            self._needs_input(workflow, "cfg", request.guidance)
            sampler["cfg"] = request.guidance
        if request.strength is not None:  # img2img and inpaint: the KSampler's denoise
            self._in_range("strength", request.strength, 0, 1)
            self._needs_input(workflow, "denoise", request.strength)
            sampler["denoise"] = request.strength
        if request.sampler is not None:
            self._needs_input(workflow, "sampler_name", request.sampler)
            class_type = workflow.graph[workflow.nodes["seed"]]["class_type"]
            known = await self._server.choices(class_type, "sampler_name")
            if request.sampler not in known:
                raise UnsupportedOption(
                    model=BACKEND,
                    option="sampler",
                    value=request.sampler,
                    allowed=", ".join(known) or "(none)",
                )
            sampler["sampler_name"] = request.sampler
        checkpoint = request.checkpoint or self._checkpoint
        if checkpoint:
            self._needs(workflow, "checkpoint", "checkpoint", checkpoint)
            class_type = workflow.graph[workflow.nodes["checkpoint"]]["class_type"]
            values["checkpoint"] = {
                "ckpt_name": await self._find_checkpoint(class_type, checkpoint)
            }
        return values, seed

    @staticmethod
    def _seed_input(workflow: Workflow) -> str:
        return "seed" if "seed" in workflow.input_names("seed") else "noise_seed"

    def _needs(self, workflow: Workflow, role: str, option: str, value: Any) -> None:
        if not workflow.has(role):
            raise UnsupportedOption(
                model=BACKEND,
                option=option,
                value=value,
                allowed=f"none (the workflow has no imagebot:{role} node)",
            )

    def _needs_input(self, workflow: Workflow, name: str, value: Any) -> None:
        if name not in workflow.input_names("seed"):
            raise UnsupportedOption(
                model=BACKEND,
                option=name,
                value=value,
                allowed=f"none (the imagebot:seed node has no {name} input)",
            )

    @staticmethod
    def _in_range(option: str, value: float, low: float, high: float) -> None:
        if not low <= value <= high:
            raise UnsupportedOption(
                model=BACKEND, option=option, value=value, allowed=f"{low:g} to {high:g}"
            )

    def _checked_size(self, size: str) -> tuple[int, int]:
        parsed = parse_size(size)
        if parsed is None or not self._spec.allows_size(size):
            raise UnsupportedSize(model=BACKEND, size=size, allowed=self._spec.describe_sizes())
        return parsed

    @staticmethod
    def _batch(workflow: Workflow, values: dict[str, dict[str, Any]], n: int) -> None:
        """n images from one prompt: the latent's ``batch_size``, or a repeat node's amount."""
        if workflow.has("batch"):
            inputs = workflow.input_names("batch")
            values["batch"] = {"amount" if "amount" in inputs else "batch_size": n}
        elif workflow.has("size") and "batch_size" in workflow.input_names("size"):
            values.setdefault("size", {})["batch_size"] = n
        elif n > 1:
            raise TooManyImages(model=BACKEND, max_n=1, n=n)

    async def _find_checkpoint(self, class_type: str, name: str) -> str:
        for refresh in (False, True):  # a checkpoint added since the last look
            known = await self._server.choices(
                class_type, "ckpt_name", max_age=0 if refresh else None
            )
            for candidate in known:
                stem = candidate.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                if name in (candidate, stem):
                    return candidate
        raise UnknownModel(model=name, allowed=", ".join(known) or "(none)")

    # --- running one prompt --------------------------------------------------------------

    async def _run(
        self,
        workflow: Workflow,
        values: Mapping[str, Mapping[str, Any]],
        n: int,
        seed: int | None,
        progress: ProgressCallback | None,
    ) -> ImageResult:
        graph = workflow.fill(values)
        prompt_id, client_id = str(uuid.uuid4()), uuid.uuid4().hex
        started = time.monotonic()
        submitted = False
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                socket = await self._server.open_socket(client_id)
                try:
                    submitted = True
                    body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
                    answer = await self._server.call("POST", "/prompt", json_body=body, graph=graph)
                    if isinstance(answer, dict) and answer.get("node_errors"):
                        log.warning("ComfyUI %s: %s", workflow.source, answer["node_errors"])
                    await self._follow(socket, prompt_id, progress)
                finally:
                    if socket is not None:
                        await socket.close()
                entry = await self._server.history(prompt_id)
        except asyncio.CancelledError:
            if submitted:
                await self._cancel_soon(prompt_id)
            raise
        except TimeoutError:
            await self._cancel_soon(prompt_id)
            limit = self._settings.timeout_seconds
            error = ProviderUnavailable(
                detail=f"ComfyUI prompt {prompt_id}: no result within {limit:g} s"
            )
            error.possibly_billed = True
            self._tell_observer(started, "timeout")
            raise error from None
        except ProviderError as error:
            if error.possibly_billed:
                await self._cancel_soon(prompt_id)
            if isinstance(error, OperatorProblem) and error.status == 400:
                log.error("ComfyUI %s, workflow %s: %s", self.name, workflow.source, error.detail)
            self._tell_observer(started, error.code or error.key)
            raise
        failure = outcome_error(entry, prompt_id)
        self._tell_observer(started, failure.key if failure is not None else None)
        if failure is not None:
            raise failure
        return await self._result(entry, workflow, n, seed)

    def _tell_observer(self, started: float, error: str | None) -> None:
        if self._observe is not None:
            self._observe("/prompt", time.monotonic() - started, error)

    async def _follow(
        self,
        socket: aiohttp.ClientWebSocketResponse | None,
        prompt_id: str,
        progress: ProgressCallback | None,
    ) -> None:
        """Progress from the websocket until the prompt is done, or the queue changed and ours
        is no longer in it; then (or without a socket) ``_history`` finds out the rest."""
        follower = PromptFollower(prompt_id, progress, verify=self._verify)
        while socket is not None:
            outcome = await follower.read(socket)
            if outcome == "closed":
                log.warning("ComfyUI %s: websocket lost; polling /history", self.name)
            if outcome != "queue" or not await self._server.queued(prompt_id):
                return

    async def _result(
        self, entry: Mapping[str, Any], workflow: Workflow, n: int, seed: int | None
    ) -> ImageResult:
        files = output_images(entry, workflow.nodes["output"])
        if len(files) > n:
            log.warning("ComfyUI saved %d images for %d asked: keeping %d", len(files), n, n)
            files = files[:n]
        raw = [await self._server.download(file) for file in files]
        try:
            checked = await self._verify(raw)
        except ValueError as exc:
            raise MalformedResponse(detail=str(exc)) from None
        images = tuple(
            GeneratedImage(data, mime, width, height)
            for data, (mime, width, height) in zip(raw, checked, strict=True)
        )
        return ImageResult(
            images=images,
            model=MODEL,
            size=f"{images[0].width}x{images[0].height}",
            # One KSampler makes the batch's noise from one seed: each image has that seed.
            seeds=(seed,) * len(images) if seed is not None else (),
        )

    async def _cancel_soon(self, prompt_id: str) -> None:
        """Take our prompt off the server and wait for that; cancelled again, the caller stops
        waiting but the cancel goes on. One that fails is logged, not raised."""
        task = asyncio.get_running_loop().create_task(self._server.cancel(prompt_id))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)
