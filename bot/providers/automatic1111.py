"""The AUTOMATIC1111 / Forge web UI API (``/sdapi/v1``) behind generate, edit and vary.

The same shape and rules as the OpenAI client (:mod:`bot.providers.client`): typed errors from
:mod:`bot.providers.errors`, bodies read through ``fetch`` (hosts checked, decoded bytes capped),
every image verified on the image worker, at most the images asked for kept. What differs is the
server, which runs one job at a time and says nothing while it works:

* **Progress** comes from ``GET /sdapi/v1/progress`` on a second connection, polled about every
  ``poll_interval`` seconds while our request runs. Each request carries our own
  ``force_task_id``, and an update is passed on only while the server's ``current_task`` is
  ours: before that the server is busy with someone else's job, whose preview is not ours to
  show. A server too old to report ``current_task`` (before 1.7) gets no progress at all.
* **Cancel** is ``POST /sdapi/v1/interrupt``, which stops whatever runs. It is sent only while
  ``current_task`` is ours. Cancelling the call (the asyncio task) does this by itself; if our
  request was still queued behind another, a watcher interrupts it the moment it starts, since
  the server runs it anyway once the client is gone. (One race remains: between the check and
  the interrupt, one round trip, our job can end and the next begin. A1111 has no per-task
  interrupt.)
* **Quiet fallbacks**: the server swaps an unknown sampler for its first one and ignores an
  unknown checkpoint, so both are checked against its own lists before anything is sent.
* **Masks**: ours marks the area to repaint with transparency; A1111's with white. The mask is
  converted (``convert_mask``, Pillow work the composition root runs on the image worker).
* **Errors**: no connection, timeouts and 5xx are outages (``ProviderUnavailable``, which the
  queue may retry); 422 is an invalid request naming the field; 401/403/404 are the operator's
  (wrong ``--api-auth`` credentials or base URL). A generation is never re-sent by this client
  after it may have reached the server: the server would make it twice. Only a refused
  connection is retried.

Everything is configured by constructor arguments; config wiring comes with issue 12.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import inspect
import json
import logging
import random as _random
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.providers import retry
from bot.providers.capabilities import parse_size
from bot.providers.checks import png_dimensions
from bot.providers.errors import (
    InvalidRequest,
    MalformedResponse,
    OperatorProblem,
    ProviderError,
    ProviderUnavailable,
    TooManyImages,
    UnknownModel,
    UnsupportedOption,
    UnsupportedSize,
    scrub,
)
from bot.providers.fetch import HostPolicy, checked_request, read_capped
from bot.providers.progress import ProgressCallback, ProgressUpdate
from bot.providers.types import (
    EditRequest,
    GeneratedImage,
    GenerateRequest,
    ImageResult,
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
#: Sizes the client sends: multiples of 8 (the latent grid) within these sides.
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_IMAGES = 4
DEFAULT_SIZE = "512x512"
SIZE_RULE = f"multiples of 8 from {MIN_SIDE} to {MAX_SIDE}"
BACKEND = "AUTOMATIC1111"

#: Checks images (bot.imaging.verify_results on the image worker): mime, width, height each.
VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]
#: Our mask PNG (transparent = repaint) -> A1111's (white = repaint), on the image worker.
ConvertMask = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class SDOptions:
    """Options only Stable Diffusion has; None = the client's or the server's default."""

    negative_prompt: str = ""
    #: -1 = random; the seed used is in ``ImageResult.seeds``.
    seed: int = -1
    steps: int | None = None
    cfg_scale: float | None = None
    #: A name from :meth:`Automatic1111Client.samplers`, exactly (case matters to A1111).
    sampler: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """One model file the server can load (``GET /sdapi/v1/sd-models``)."""

    title: str  # "v1-5-pruned-emaonly.safetensors [6ce0161689]", what the server matches
    model_name: str  # "v1-5-pruned-emaonly", what people call it
    hash: str | None

    def answers_to(self, name: str) -> bool:
        names = {self.title, self.model_name, self.title.split(" [", 1)[0], self.hash}
        return name in names


class Automatic1111Client:
    """One AUTOMATIC1111 / Forge server; safe to share between tasks."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        verify: VerifyImages,
        convert_mask: ConvertMask,
        username: str | None = None,
        password: str | None = None,
        checkpoint: str | None = None,
        steps: int = 20,
        timeout_seconds: float = 600.0,
        connect_timeout_seconds: float = 10.0,
        poll_interval: float = 0.5,
        max_response_mb: float = 64.0,
        max_retries: int = 2,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """``checkpoint`` None = whatever the server has loaded; ``steps`` is A1111's UI default
        (its API's own default, 50, takes 2.5 times as long for little gain)."""
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._verify = verify
        self._convert_mask = convert_mask
        self._password = password or ""
        self._headers: dict[str, str] = {}
        if username is not None:
            pair = f"{username}:{password or ''}".encode()
            auth = "Basic " + base64.b64encode(pair).decode("ascii")
            self._headers["Authorization"] = auth
            self._secrets: tuple[str, ...] = (self._password, auth, auth.split(" ", 1)[1])
        else:
            self._secrets = ()
        self._checkpoint = checkpoint
        self._steps = steps
        self._hosts = HostPolicy.from_settings(base_url)
        self._max_response = int(max_response_mb * 1024 * 1024)
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=connect_timeout_seconds
        )
        self._timeout_seconds = timeout_seconds
        self._poll_interval = poll_interval
        self._poll_timeout = aiohttp.ClientTimeout(total=max(5.0, poll_interval * 4))
        self._max_retries = max_retries
        self._sleep = sleep
        self._random = random
        self._samplers: frozenset[str] | None = None
        self._checkpoints: tuple[Checkpoint, ...] | None = None
        self._interrupted_elsewhere: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Automatic1111Client(base_url={self._base_url!r})"

    # --- what the server offers --------------------------------------------------------------

    async def checkpoints(self, *, refresh: bool = False) -> tuple[Checkpoint, ...]:
        """The server's checkpoints (cached; ``refresh`` asks again)."""
        if self._checkpoints is None or refresh:
            items = await self._get_json("/sdapi/v1/sd-models")
            self._checkpoints = tuple(
                Checkpoint(
                    item["title"], str(item.get("model_name") or item["title"]), item.get("hash")
                )
                for item in _objects(items)
                if isinstance(item.get("title"), str)
            )
        return self._checkpoints

    async def samplers(self, *, refresh: bool = False) -> frozenset[str]:
        """The exact sampler names the server knows (cached)."""
        if self._samplers is None or refresh:
            items = await self._get_json("/sdapi/v1/samplers")
            self._samplers = frozenset(
                item["name"] for item in _objects(items) if isinstance(item.get("name"), str)
            )
        return self._samplers

    async def check_access(self) -> tuple[Checkpoint, ...]:
        """One cheap authenticated call that proves URL and credentials: the checkpoint list."""
        return await self.checkpoints(refresh=True)

    # --- operations ----------------------------------------------------------------------------

    async def generate(
        self,
        request: GenerateRequest,
        *,
        options: SDOptions = SDOptions(),
        progress: ProgressCallback | None = None,
        task_id: str | None = None,
    ) -> ImageResult:
        _no_openai_only_options(request)
        body = await self._common(request.prompt, request.n, request.size, request.model, options)
        return await self._run("/sdapi/v1/txt2img", body, request.n, progress, task_id)

    async def edit(
        self,
        request: EditRequest,
        *,
        options: SDOptions = SDOptions(),
        progress: ProgressCallback | None = None,
        task_id: str | None = None,
    ) -> ImageResult:
        """img2img of the image, repainting only what the mask (or the image's own
        transparency) marks."""
        _no_openai_only_options(request)
        size = request.size or _size_of(request.image)
        body = await self._common(request.prompt, request.n, size, request.model, options)
        mask = await self._convert_mask(request.mask if request.mask is not None else request.image)
        body.update(
            init_images=[_b64(request.image)],
            mask=_b64(mask),
            denoising_strength=EDIT_DENOISING,
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
        options: SDOptions = SDOptions(),
        prompt: str = "",
        progress: ProgressCallback | None = None,
        task_id: str | None = None,
    ) -> ImageResult:
        """img2img of the source at ``VARY_DENOISING``; a prompt (the source's) helps it."""
        size = request.size or _size_of(request.image)
        body = await self._common(prompt, request.n, size, request.model, options)
        body.update(init_images=[_b64(request.image)], denoising_strength=VARY_DENOISING)
        return await self._run("/sdapi/v1/img2img", body, request.n, progress, task_id)

    async def cancel(self, task_id: str) -> bool:
        """Interrupt the server's job if, and only if, it is ``task_id``; whether it was sent."""
        body = await self._get_json("/sdapi/v1/progress?skip_current_image=true")
        if not isinstance(body, dict) or body.get("current_task") != task_id:
            return False
        await self._request("POST", "/sdapi/v1/interrupt", json_body={}, limits=self._poll_timeout)
        log.info("interrupted our job %s on %s", task_id, self._base_url)
        return True

    async def aclose(self) -> None:
        """Stop the watchers of cancelled requests (at shutdown; the session closes after)."""
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    # --- request building ----------------------------------------------------------------------

    async def _common(
        self, prompt: str, n: int, size: str | None, model: str | None, options: SDOptions
    ) -> dict[str, Any]:
        width, height = _checked_size(size or DEFAULT_SIZE)
        if not 1 <= n <= MAX_IMAGES:
            raise TooManyImages(model=BACKEND, max_n=MAX_IMAGES, n=n)
        body: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": options.negative_prompt,
            "seed": options.seed,
            "steps": options.steps or self._steps,
            "width": width,
            "height": height,
            "batch_size": n,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        if options.cfg_scale is not None:
            body["cfg_scale"] = options.cfg_scale
        if options.sampler is not None:
            known = await self.samplers()
            if options.sampler not in known:
                raise UnsupportedOption(
                    model=BACKEND,
                    option="sampler",
                    value=options.sampler,
                    allowed=", ".join(sorted(known)),
                )
            body["sampler_name"] = options.sampler
        checkpoint = model or self._checkpoint
        if checkpoint is not None:
            found = await self._find_checkpoint(checkpoint)
            body["override_settings"] = {"sd_model_checkpoint": found.title}
        return body

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
        poller = asyncio.create_task(self._poll(task_id, progress))
        try:
            _, raw = await self._request("POST", path, json_body=body, limits=self._timeout)
        except asyncio.CancelledError:
            self._interrupt_when_ours(task_id)
            raise
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        seen = task_id in self._interrupted_elsewhere
        self._interrupted_elsewhere.discard(task_id)
        if seen or await self._ended_interrupted():
            # Someone stopped it in the web UI: the images are half made, not a result.
            raise ProviderUnavailable(detail=f"{path}: the job was interrupted on the server")
        return await self._result(_json(raw), n)

    async def _ended_interrupted(self) -> bool:
        """Whether the job that just ended was interrupted: the flag stays up until the next
        job begins, and a poll may have missed the moment between the interrupt and the end."""
        try:
            body = await self._get_json("/sdapi/v1/progress?skip_current_image=true")
        except ProviderError:
            return False
        state = body.get("state") if isinstance(body, dict) else None
        return (
            isinstance(state, dict)
            and state.get("interrupted") is True
            and state.get("job_count") == 0
        )

    def _interrupt_when_ours(self, task_id: str) -> None:
        """Interrupt ``task_id`` now if it runs, else when it starts (the server will run it)."""

        async def watch() -> None:
            deadline = asyncio.get_running_loop().time() + self._timeout_seconds
            while asyncio.get_running_loop().time() < deadline:
                try:
                    if await self.cancel(task_id):
                        return
                except ProviderError as exc:
                    log.debug("cancel of %s: %s", task_id, exc.detail)
                await asyncio.sleep(self._poll_interval)

        watcher = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _poll(self, task_id: str, progress: ProgressCallback | None) -> None:
        """Progress of our job until cancelled; failures here never reach the job."""
        query = "false" if progress is not None else "true"
        last_preview = b""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                body = await self._get_json(
                    f"/sdapi/v1/progress?skip_current_image={query}", limits=self._poll_timeout
                )
            except ProviderError as exc:
                log.debug("progress poll failed: %s", exc.detail)
                continue
            if not isinstance(body, dict) or body.get("current_task") != task_id:
                continue  # queued behind someone else's job, or done
            raw_state = body.get("state")
            state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
            if state.get("interrupted"):
                self._interrupted_elsewhere.add(task_id)
            if progress is None:
                continue
            preview = await self._preview(body.get("current_image"))
            digest = hashlib.sha256(preview).digest() if preview else b""
            if digest == last_preview:
                preview = None
            elif preview:
                last_preview = digest
            await _tell(progress, _update(body, state, preview))

    async def _preview(self, encoded: Any) -> bytes | None:
        if not isinstance(encoded, str) or not encoded:
            return None
        try:
            data = base64.b64decode(encoded, validate=True)
            await self._verify([data])
        except (binascii.Error, ValueError) as exc:
            log.debug("unusable preview ignored: %s", exc)
            return None
        return data

    # --- answers -------------------------------------------------------------------------------

    async def _result(self, payload: dict[str, Any], n: int) -> ImageResult:
        """The images as far as they keep to the request: at most ``n``, grid left out."""
        items = payload.get("images")
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise MalformedResponse(detail="answer has no images")
        info = _info(payload.get("info"))
        first = info.get("index_of_first_image")
        if isinstance(first, int) and 0 < first < len(items):
            items = items[first:]  # the grid the server puts first when it saves images
        if len(items) > n:
            log.warning("A1111 sent %d images for %d asked: keeping %d", len(items), n, n)
            items = items[:n]
        try:
            raw = [base64.b64decode(item, validate=True) for item in items]
        except (binascii.Error, ValueError):
            raise MalformedResponse(detail="image is not valid base64") from None
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

    async def _get_json(self, path: str, *, limits: aiohttp.ClientTimeout | None = None) -> Any:
        _, raw = await self._request("GET", path, limits=limits or self._poll_timeout)
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
    ) -> tuple[int, bytes]:
        what = path.split("?", 1)[0]
        attempt = 0
        while True:
            try:
                async with checked_request(
                    self._session,
                    method,
                    self._base_url + path,
                    policy=self._hosts,
                    headers=self._headers,
                    json=json_body,
                    timeout=limits,
                ) as response:
                    raw = await read_capped(response, self._max_response, what)
                    if 200 <= response.status < 300:
                        return response.status, raw
                    raise self._classify(response.status, raw, what)
            except aiohttp.ClientConnectorError as exc:
                # Refused before anything was sent: safe to try again, even a generation.
                reason = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
                error = ProviderUnavailable(detail=f"{what}: {reason}")
                if attempt >= self._max_retries:
                    raise error from exc
                attempt += 1
                wait = retry.backoff_delay(attempt - 1, self._random)
                log.warning("A1111 %s: %s; retry %d in %.2f s", what, error.detail, attempt, wait)
                await self._sleep(wait)
            except (TimeoutError, aiohttp.ClientError) as exc:
                reason = scrub(f"{type(exc).__name__}: {exc}".rstrip(": "), self._secrets)
                error = ProviderUnavailable(detail=f"{what}: {reason}")
                error.possibly_billed = True
                raise error from exc

    def _classify(self, status: int, raw: bytes, what: str) -> ProviderError:
        """The web UI's two error shapes: FastAPI's 422 list and its own ``{"error", ...}``."""
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        payload = payload if isinstance(payload, dict) else {}
        detail = payload.get("detail")
        if status == 422 and isinstance(detail, list):
            problems = [_problem(item) for item in detail if isinstance(item, dict)]
            reason = "; ".join(text for _, text in problems) or "invalid request"
            param = problems[0][0] if problems else None
            return InvalidRequest(
                status=status, param=param, detail=f"HTTP 422 {what}: {reason}", reason=reason
            )
        message = " ".join(
            str(part) for part in (payload.get("error"), detail, payload.get("errors")) if part
        )
        message = scrub(message or f"HTTP {status}", self._secrets)
        text = f"HTTP {status} {what}: {message}"
        if status in {401, 403}:
            return OperatorProblem(
                status=status, detail=f"{text} (check the A1111 --api-auth username/password)"
            )
        if status == 404 or 300 <= status < 400:
            return OperatorProblem(status=status, detail=f"{text} (check the A1111 base URL)")
        if retry.is_retryable_status(status):
            return ProviderUnavailable(status=status, detail=text)
        return InvalidRequest(status=status, detail=text, reason=message)


def _no_openai_only_options(request: GenerateRequest | EditRequest) -> None:
    for name in ("quality", "background", "output_format", "style"):
        value = getattr(request, name, None)
        if value is not None:
            raise UnsupportedOption(model=BACKEND, option=name, value=value, allowed="none")


def _checked_size(size: str) -> tuple[int, int]:
    parsed = parse_size(size)
    if parsed is None or not all(MIN_SIDE <= side <= MAX_SIDE and side % 8 == 0 for side in parsed):
        raise UnsupportedSize(model=BACKEND, size=size, allowed=SIZE_RULE)
    return parsed


def _size_of(image: bytes) -> str:
    """The source's own size, on the latent grid (A1111 would floor it there anyway)."""
    dimensions = png_dimensions(image)
    if dimensions is None:
        return DEFAULT_SIZE
    width, height = (min(max(side // 8 * 8, MIN_SIDE), MAX_SIDE) for side in dimensions)
    return f"{width}x{height}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise MalformedResponse(detail=f"answer is not JSON ({len(raw)} bytes)") from None
    if not isinstance(payload, dict):
        raise MalformedResponse(detail="answer is JSON but not an object")
    return payload


def _info(raw: Any) -> dict[str, Any]:
    """``info`` is a JSON object inside a string."""
    try:
        info = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _objects(items: Any) -> list[Mapping[str, Any]]:
    if not isinstance(items, list):
        raise MalformedResponse(detail="answer is not a list")
    return [item for item in items if isinstance(item, dict)]


def _problem(item: Mapping[str, Any]) -> tuple[str | None, str]:
    """("steps", "steps: value is not a valid integer") from one FastAPI 422 entry."""
    loc = [str(part) for part in item.get("loc", []) if part != "body"]
    field = ".".join(loc) or None
    msg = str(item.get("msg") or "invalid")
    return field, f"{field}: {msg}" if field else msg


def _update(
    body: Mapping[str, Any], state: Mapping[str, Any], preview: bytes | None
) -> ProgressUpdate:
    def number(value: Any) -> float:
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        )

    step, steps = int(number(state.get("sampling_step"))), int(number(state.get("sampling_steps")))
    job_no, job_count = int(number(state.get("job_no"))), int(number(state.get("job_count")))
    text = body.get("textinfo") if isinstance(body.get("textinfo"), str) else None
    if not text:
        text = f"step {step}/{steps}" if steps else "starting"
        if job_count > 1:
            text += f", batch {job_no + 1}/{job_count}"
    eta = body.get("eta_relative")
    return ProgressUpdate(
        fraction=min(max(number(body.get("progress")), 0.0), 1.0),
        text=text,
        step=step,
        steps=steps,
        eta_seconds=float(eta) if isinstance(eta, int | float) and eta >= 0 else None,
        preview=preview,
    )


async def _tell(progress: ProgressCallback, update: ProgressUpdate) -> None:
    try:
        outcome = progress(update)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:  # a failed preview never fails the job
        log.warning("progress callback failed", exc_info=True)
