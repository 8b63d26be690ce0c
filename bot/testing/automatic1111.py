"""A local stand-in for the AUTOMATIC1111 / Forge web UI API that behaves as its source does.

What a client meets on the real server (web UI 1.10: ``modules/api/api.py``, ``models.py``,
``processing.py``, ``shared_state.py``), and so here::

    async with FakeAutomatic1111(auth=("bot", "secret"), step_delay=0.02) as a1111:
        ...  # point the client at a1111.base_url

* ``txt2img``/``img2img`` run one at a time behind one lock (a second request waits), step by
  step. ``GET /sdapi/v1/progress`` on another connection shows the running job (``progress``,
  ``eta_relative``, ``state``, a ``current_image`` preview once ``show_progress_every_n_steps``
  steps passed since the last one) but not whose it is; ``POST /internal/progress`` with the
  request's ``force_task_id`` tells whether that task is queued, running or done, with its own
  live preview.
* ``POST /sdapi/v1/interrupt`` stops whatever runs: the request answers early with the images
  made so far, the current batch half-finished. Nothing checks whose job it is.
* Bodies are checked like the pydantic v1 models (:mod:`bot.testing.automatic1111_rules`);
  unknown fields are ignored (recorded in ``ignored_fields``), unknown samplers and checkpoints
  silently replaced or dropped (recorded per generation in ``runs``).
* ``--api-auth``: HTTP basic auth; failures answer 401 in the web UI's own error shape.
* Masks: white (or opaque) repaints, unless ``inpainting_mask_invert`` = 1; pixels outside the
  (blurred) mask come back exactly as sent, as the web UI pastes the original over them.

Pictures are solid colours derived from prompt and seed (the same seed paints the same colour),
blended into the init image by ``denoising_strength`` for img2img.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from bot.testing import automatic1111_extras as extras
from bot.testing import automatic1111_pictures as pictures
from bot.testing import automatic1111_rules as rules
from bot.testing.automatic1111_state import State

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _webui_error(status: int, error: str, detail: str = "", errors: str = "") -> web.Response:
    """``api_middleware.handle_exception``: HTTPExceptions and crashes alike, headers dropped."""
    body = {"error": error, "detail": detail, "body": "", "errors": errors}
    return web.json_response(body, status=status)


@dataclass
class Run:
    """One generation as the server really ran it (what a client cannot see in the answer)."""

    path: str
    task_id: str
    sampler: str
    checkpoint: str
    seeds: list[int]
    #: ``time.monotonic()``: request read, lock taken, sampling done, answer encoded.
    arrived: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    answered: float = 0.0
    interrupted: bool = False
    #: ``time.monotonic()`` at which each sampling step finished, all batches in order.
    step_times: list[float] = field(default_factory=list)
    #: (``time.monotonic()``, step it shows) of each preview made, for latency benchmarks.
    previews: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class _Script:
    status: int
    error: str
    errors: str


@dataclass
class FakeAutomatic1111:
    #: ``--api-auth user:password``; None = an open API, the web UI's default.
    auth: tuple[str, str] | None = None
    #: Seconds each sampling step takes.
    step_delay: float = 0.005
    checkpoints: tuple[rules.Checkpoint, ...] = rules.CHECKPOINTS
    upscalers: tuple[extras.Upscaler, ...] = extras.UPSCALERS
    #: False = started with ``--nowebui``: the API only, without ``/internal/progress``.
    webui: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    #: Each extra-single-image run: (upscaler_1, source size, result size).
    upscales: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    #: The task running at each ``/interrupt`` (None = nothing was running).
    interrupts: list[str | None] = field(default_factory=list)
    progress_polls: int = 0
    #: Images appended to every answer, as always-on extensions do (ControlNet adds its maps).
    extra_images: int = 0
    #: Random bits per colour channel in the images: 0 paints solid colours (tiny PNGs); 2 gives
    #: PNGs the weight of real renders (benchmarks).
    noise_bits: int = 0
    base_url: str = ""

    def __post_init__(self) -> None:
        self.options = {
            "sd_model_checkpoint": self.checkpoints[0].title,
            "show_progress_every_n_steps": 10,
            "live_previews_enable": True,
            "show_progress_grid": True,
            "samples_format": "png",
            "return_grid": True,
            "grid_only_if_multiple": True,
            "enable_pnginfo": True,
            "CLIP_stop_at_last_layers": 1,
            **self.options,
        }
        self._state = State()
        self._lock = asyncio.Lock()
        self._scripts: list[_Script] = []
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeAutomatic1111:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._check_auth])
        app.router.add_post("/sdapi/v1/txt2img", self._txt2img)
        app.router.add_post("/sdapi/v1/img2img", self._img2img)
        app.router.add_get("/sdapi/v1/progress", self._progress)
        if self.webui:
            app.router.add_post("/internal/progress", self._internal_progress)
        app.router.add_post("/sdapi/v1/interrupt", self._interrupt)
        app.router.add_get("/sdapi/v1/sd-models", self._sd_models)
        app.router.add_get("/sdapi/v1/samplers", self._samplers)
        app.router.add_get("/sdapi/v1/upscalers", self._upscalers)
        app.router.add_post("/sdapi/v1/extra-single-image", self._extra_single_image)
        app.router.add_get("/sdapi/v1/options", self._get_options)
        app.router.add_post("/sdapi/v1/options", self._set_options)
        # Like uvicorn, a generation goes on when its client hangs up.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting and observing -------------------------------------------------------------

    def fail_next(
        self,
        status: int = 500,
        *,
        error: str = "OutOfMemoryError",
        errors: str = "CUDA out of memory. Tried to allocate 2.00 GiB",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` generations with this crash (the web UI's error shape)."""
        self._scripts.extend(_Script(status, error, errors) for _ in range(times))

    @property
    def running_task(self) -> str | None:
        return self._state.current_task

    async def wait_running(
        self, task_id: str | None = None, *, step: int = 1, within: float = 10.0
    ) -> str:
        """Wait until a generation (``task_id``'s, if given) reaches ``step``; its task id.

        Raises TimeoutError after ``within`` seconds, so a test that waits in vain fails.
        """
        async with asyncio.timeout(within):
            while True:
                state = self._state
                current = state.current_task
                if current and state.sampling_step >= step and task_id in (None, current):
                    return current
                await asyncio.sleep(0.002)

    # --- HTTP ----------------------------------------------------------------------------------

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """``Api.auth`` behind FastAPI's ``HTTPBasic``: checked before the body is looked at."""
        if self.auth is not None and request.path.startswith("/sdapi/"):
            header = request.headers.get("Authorization", "")
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic" or not encoded:
                return _webui_error(401, "HTTPException", "Not authenticated")
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _webui_error(401, "HTTPException", "Invalid authentication credentials")
            if (user, password) != self.auth:
                return _webui_error(401, "HTTPException", "Incorrect username or password")
        return await handler(request)

    async def _body(self, request: web.Request, fields: dict[str, Any]) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            detail = [{"loc": ["body", 0], "msg": str(exc), "type": "value_error.jsondecode"}]
            return web.json_response({"detail": detail}, status=422)
        self.requests.append((request.path, body))
        values, errors, unknown = rules.parse_body(body, fields)
        self.ignored_fields.extend(unknown)
        if errors:
            return web.json_response({"detail": errors}, status=422)
        return values

    async def _txt2img(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        values = await self._body(request, rules.TXT2IMG_FIELDS)
        if isinstance(values, web.StreamResponse):
            return values
        return await self._generate(request.path, values, None, None, arrived)

    async def _img2img(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        values = await self._body(request, rules.IMG2IMG_FIELDS)
        if isinstance(values, web.StreamResponse):
            return values
        if values["init_images"] is None:
            return _webui_error(404, "HTTPException", "Init image not found")
        mask = pictures.decode_image(values["mask"]) if values["mask"] else None
        if values["mask"] and mask is None:
            return _webui_error(500, "HTTPException", "Invalid encoded image")
        inits = [
            pictures.decode_image(item) if isinstance(item, str) else None
            for item in values["init_images"]
        ]
        if not inits or any(image is None for image in inits):
            return _webui_error(500, "HTTPException", "Invalid encoded image")
        return await self._generate(request.path, values, inits[0], mask, arrived)

    async def _generate(
        self,
        path: str,
        values: dict[str, Any],
        init: Image.Image | None,
        mask: Image.Image | None,
        arrived: float,
    ) -> web.StreamResponse:
        task_id = values["force_task_id"] or f"task({_random_id()})"
        self._state.pending[task_id] = time.time()  # add_task_to_queue, before the lock
        async with self._lock:  # Api.queue_lock
            self._state.pending.pop(task_id, None)
            if self._scripts:  # a crash inside process_images: finish_task never runs,
                self._state.current_task = task_id  # so the task stays "active" until the next
                script = self._scripts.pop(0)
                return _webui_error(script.status, script.error, errors=script.errors)
            job = self._process(path, task_id, values, init, mask)
            run, images, info = await asyncio.shield(job)
        parameters = dict(values)
        if init is not None and not values["include_init_images"]:
            parameters["init_images"] = parameters["mask"] = None
        answer = web.json_response({"images": images, "parameters": parameters, "info": info})
        run.arrived, run.answered = arrived, time.monotonic()
        return answer

    async def _process(
        self,
        path: str,
        task_id: str,
        v: dict[str, Any],
        init: Image.Image | None,
        mask: Image.Image | None,
    ) -> tuple[Run, list[str], str]:
        """``process_images`` with the sampler replaced by sleeping and painting."""
        state = self._state
        sampler = rules.resolve_sampler(v["sampler_name"] or v["sampler_index"])
        override = (v["override_settings"] or {}).get("sd_model_checkpoint")
        checkpoint = rules.find_checkpoint(self.checkpoints, override) or rules.find_checkpoint(
            self.checkpoints, self.options["sd_model_checkpoint"]
        )
        assert checkpoint is not None
        count = max(v["batch_size"], 1) * max(v["n_iter"], 1)
        seed = _fixed_seed(v["seed"])
        subseed = _fixed_seed(v["subseed"])
        seeds = [seed + i for i in range(count)]
        run = Run(path, task_id, sampler, checkpoint.title, seeds, started=time.monotonic())
        self.runs.append(run)
        state.begin(f"scripts_{path.rsplit('/', 1)[-1]}", task_id, run.previews)
        width, height = max(v["width"] // 8 * 8, 8), max(v["height"] // 8 * 8, 8)
        source = init.convert("RGB").resize((width, height)) if init is not None else None
        steps = max(v["steps"], 1)
        if source is not None:  # img2img samples only the denoised part of the schedule
            steps = int(min(v["denoising_strength"], 0.999) * steps) + 1
        outputs: list[Image.Image] = []
        infotexts: list[str] = []
        state.job_count = max(v["n_iter"], 1)
        for n in range(state.job_count):
            if state.interrupted:
                break
            batch = seeds[n * v["batch_size"] : (n + 1) * v["batch_size"]]
            finals = [
                pictures.paint(v["prompt"], s, width, height, source, v["denoising_strength"])
                for s in batch
            ]
            state.sampling_steps = steps
            fraction = 1.0
            for step in range(1, steps + 1):
                await asyncio.sleep(self.step_delay)
                if state.interrupted:
                    fraction = (step - 1) / steps
                    break
                state.sampling_step = step
                run.step_times.append(time.monotonic())
                state.current_latent = [
                    Image.blend(pictures.solid(pictures.GREY, width, height), f, step / steps)
                    for f in finals
                ]
            for index, final in enumerate(finals):
                image = (
                    final
                    if fraction >= 1
                    else Image.blend(pictures.solid(pictures.GREY, width, height), final, fraction)
                )
                if source is not None and mask is not None:
                    image = Image.composite(image, source, pictures.overlay(mask, v, width, height))
                if self.noise_bits:
                    image = pictures.grain(image, self.noise_bits)
                text = pictures.infotext(v, sampler, checkpoint, batch[index], width, height)
                infotexts.append(text)
                image.info["parameters"] = text
                outputs.append(image)
            if (
                self.options["live_previews_enable"]
                and self.options["show_progress_every_n_steps"] == -1
            ):
                state.set_current_image()
            state.job_no += 1
            state.sampling_step = state.current_image_sampling_step = 0
        run.interrupted = state.interrupted
        outputs.extend(
            pictures.solid(pictures.GREY, width, height) for _ in range(self.extra_images)
        )
        first = 0
        if v["save_images"] and self.options["return_grid"] and len(outputs) > 1:
            outputs.insert(0, pictures.grid(outputs))  # do_not_save_grid = not save_images
            infotexts.insert(0, infotexts[0])
            first = 1
        info = {
            "prompt": v["prompt"],
            "all_prompts": [v["prompt"]] * count,
            "negative_prompt": v["negative_prompt"],
            "all_negative_prompts": [v["negative_prompt"]] * count,
            "seed": seeds[0],
            "all_seeds": seeds,
            "subseed": subseed,
            "all_subseeds": [subseed + i for i in range(count)],
            "subseed_strength": v["subseed_strength"],
            "width": width,
            "height": height,
            "sampler_name": sampler,
            "cfg_scale": v["cfg_scale"],
            "steps": v["steps"],
            "batch_size": v["batch_size"],
            "restore_faces": bool(v["restore_faces"]),
            "face_restoration_model": None,
            "sd_model_name": checkpoint.model_name,
            "sd_model_hash": checkpoint.shorthash,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": v["seed_resize_from_w"],
            "seed_resize_from_h": v["seed_resize_from_h"],
            "denoising_strength": v["denoising_strength"],
            "extra_generation_params": {},
            "index_of_first_image": first,
            "infotexts": infotexts,
            "styles": v["styles"] or [],
            "job_timestamp": state.job_timestamp,
            "clip_skip": self.options["CLIP_stop_at_last_layers"],
            "is_using_inpainting_conditioning": False,
        }
        state.end(task_id)
        run.finished = time.monotonic()
        return run, [pictures.png_b64(image) for image in outputs], json.dumps(info)

    async def _progress(self, request: web.Request) -> web.StreamResponse:
        """``GET /sdapi/v1/progress``: whatever job runs, with no way to tell whose it is."""
        self.progress_polls += 1
        skip = rules.query_flag(request.query.get("skip_current_image"))
        return web.json_response(self._state.progress_answer(self.options, skip_image=skip))

    async def _internal_progress(self, request: web.Request) -> web.StreamResponse:
        """``POST /internal/progress``: one task's progress and its live preview.

        Registered by the web UI itself, not the API: no ``--api-auth``, and absent when the
        server runs with ``--nowebui``.
        """
        values = await self._body(request, rules.INTERNAL_PROGRESS_FIELDS)
        if isinstance(values, web.StreamResponse):
            return values
        answer = self._state.task_answer(
            self.options, values["id_task"], values["id_live_preview"], values["live_preview"]
        )
        return web.json_response(answer)

    async def _interrupt(self, request: web.Request) -> web.StreamResponse:
        self.interrupts.append(self._state.current_task)
        self._state.interrupted = True
        return web.json_response({})

    async def _sd_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([c.item() for c in self.checkpoints])

    async def _samplers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([s.item() for s in rules.SAMPLERS])

    async def _upscalers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([u.item() for u in self.upscalers])

    async def _extra_single_image(self, request: web.Request) -> web.StreamResponse:
        values = await self._body(request, extras.EXTRAS_FIELDS)
        if isinstance(values, web.StreamResponse):
            return values
        errors = extras.limit_errors(values)
        if errors:
            return web.json_response({"detail": errors}, status=422)
        image = pictures.decode_image(values["image"])
        if image is None:
            return _webui_error(500, "HTTPException", "Invalid encoded image")
        async with self._lock:  # the queue lock generations hold too
            try:
                result = await asyncio.to_thread(extras.run_extras, image, values, self.upscalers)
            except extras.NoSuchUpscaler as exc:
                return _webui_error(500, "AssertionError", errors=str(exc))
        self.upscales.append((values["upscaler_1"], image.size, result.size))
        answer = {"html_info": "<p></p>", "image": pictures.png_b64(result)}
        return web.json_response(answer)

    async def _get_options(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.options)

    async def _set_options(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            detail = [{"loc": ["body", 0], "msg": str(exc), "type": "value_error.jsondecode"}]
            return web.json_response({"detail": detail}, status=422)
        if not isinstance(body, dict):
            detail = [
                {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
            ]
            return web.json_response({"detail": detail}, status=422)
        name = body.get("sd_model_checkpoint")
        if name is not None and rules.find_checkpoint(self.checkpoints, name) is None:
            return _webui_error(500, "RuntimeError", errors=f"model {name!r} not found")
        self.options.update(body)
        return web.json_response(None)


def _fixed_seed(seed: int) -> int:
    return random.randrange(4294967294) if seed == -1 else seed


def _random_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))


__all__ = ["FakeAutomatic1111", "Run"]
