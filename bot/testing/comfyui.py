"""A local stand-in for a ComfyUI server that behaves as its source does (``server.py``,
``execution.py``, ``main.py``'s prompt worker)::

    async with FakeComfyUI(step_delay=0.01) as comfy:
        ...  # point the client at comfy.base_url

* ``POST /prompt`` validates the graph against the node types of ``/object_info``
  (:mod:`bot.testing.comfyui_nodes`) and answers ``{"prompt_id", "number", "node_errors"}`` or
  400 ``{"error", "node_errors"}``; a ``prompt_id`` the client sends is used. One worker runs
  the queue in order, one prompt at a time (:mod:`bot.testing.comfyui_run`).
* ``GET /ws?clientId=`` gets ``status`` on connect and on each queue change (everyone), and
  for its own prompts ``execution_start``, ``execution_cached``, ``executing``, ``progress``,
  binary preview frames (``>I`` 1, ``>I`` 1 = JPEG, the bytes; only with ``previews``),
  ``executed``, ``execution_success`` / ``execution_error`` / ``execution_interrupted``, then
  ``executing`` with ``node: null`` once the history has the prompt.
* ``GET /history/{id}``, ``GET /view``, ``POST /upload/image``, ``GET/POST /queue``
  (``delete``, ``clear``), ``POST /interrupt`` (with ``prompt_id``: only that prompt; without:
  whatever runs, and if nothing runs, the next prompt's first step, as the real flag does),
  ``GET /object_info``, ``GET /system_stats``.

Test knobs: ``step_delay``, ``previews``, ``drop_websockets_at_step`` (the server closes every
websocket then and refuses new ones, as a proxy that drops them), ``fail_node(class_type)``
(an ``execution_error`` there), ``answer_next(status)``, ``checkpoints``. Observed:
``prompts`` (bodies received), ``runs`` (timings), ``interrupts`` (the prompt running at each
interrupt, None = none), ``deleted``, ``uploads``.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.testing import comfyui_nodes as nodes
from bot.testing import comfyui_run as run

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VERSION = "0.3.68"
PREVIEW_IMAGE, JPEG = 1, 1


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def listed(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class Run:
    """When one prompt was received, started and done, and when each preview was sent
    (``time.monotonic()``), for benchmarks."""

    arrived: float
    started: float = 0.0
    finished: float = 0.0
    previews: list[float] = field(default_factory=list)


@dataclass
class FakeComfyUI:
    step_delay: float = 0.005
    #: Started with ``--preview-method auto``; stock ComfyUI sends no previews.
    previews: bool = True
    #: Random noise in the finished pictures, so their PNGs weigh what real renders do.
    noise_bits: int = 0
    checkpoints: tuple[str, ...] = nodes.CHECKPOINTS
    upscale_models: tuple[str, ...] = nodes.UPSCALE_MODELS
    drop_websockets_at_step: int | None = None
    accept_websockets: bool = True
    prompts: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[str | None] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._pending: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._number = 0
        self._wake = asyncio.Event()
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._interrupt = False
        self._node: str | None = None
        self._failures: dict[str, tuple[str, str]] = {}
        self._saved = [0]
        self._scripted_answers: list[int] = []
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self.files.setdefault(("input", "", "example.png"), run.blank_png(64, 64))

    async def __aenter__(self) -> FakeComfyUI:
        app = web.Application(client_max_size=100 * 1024 * 1024, middlewares=[self._scripted])
        app.router.add_post("/prompt", self._post_prompt)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/history", self._all_history)
        app.router.add_get("/history/{prompt_id}", self._one_history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/queue", self._get_queue)
        app.router.add_post("/queue", self._post_queue)
        app.router.add_post("/interrupt", self._post_interrupt)
        app.router.add_get("/object_info", self._object_info)
        app.router.add_get("/object_info/{node_class}", self._object_info)
        app.router.add_get("/system_stats", self._system_stats)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._worker = asyncio.create_task(self._work())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- knobs and observing -------------------------------------------------------------

    def fail_node(
        self,
        class_type: str = "KSampler",
        *,
        exception_type: str = "torch.OutOfMemoryError",
        message: str = "Allocation on device",
    ) -> None:
        """The next node of ``class_type`` that runs raises (an ``execution_error``)."""
        self._failures[class_type] = (exception_type, message)

    def answer_next(self, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` HTTP requests with ``status`` (a proxy, a crash)."""
        self._scripted_answers.extend([status] * times)

    @web.middleware
    async def _scripted(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._scripted_answers and request.path != "/ws":
            status = self._scripted_answers.pop(0)
            return web.Response(status=status, text=f"{status}: scripted by the test")
        return await handler(request)

    @property
    def running_prompt(self) -> str | None:
        return self._running.prompt_id if self._running is not None else None

    @property
    def pending_prompts(self) -> list[str]:
        return [item.prompt_id for item in sorted(self._pending, key=lambda i: i.number)]

    async def wait_running(self, prompt_id: str | None = None, *, within: float = 10.0) -> str:
        """Wait until a prompt (``prompt_id``, if given) runs; its id."""
        async with asyncio.timeout(within):
            while True:
                current = self.running_prompt
                if current is not None and prompt_id in (None, current):
                    return current
                await asyncio.sleep(0.002)

    async def wait_until(self, condition: Callable[[], bool], *, within: float = 10.0) -> None:
        """Wait until ``condition()`` holds (TimeoutError after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.002)

    def sent_graph(self, index: int = -1) -> dict[str, Any]:
        """The graph of the ``index``-th prompt received."""
        graph: dict[str, Any] = self.prompts[index]["prompt"]
        return graph

    def sent_inputs(self, title: str, index: int = -1) -> dict[str, Any]:
        """The inputs of the node titled ``title`` in the ``index``-th prompt received."""
        graph = self.sent_graph(index)
        (node,) = [n for n in graph.values() if n.get("_meta", {}).get("title") == title]
        inputs: dict[str, Any] = node["inputs"]
        return inputs

    def node_types(self) -> dict[str, nodes.NodeType]:
        return nodes.node_types(self.checkpoints, self._input_files(), self.upscale_models)

    def _input_files(self) -> list[str]:
        """What LoadImage lists: the input folder's files, as "subfolder/name"."""
        return [
            f"{sub}/{name}" if sub else name for kind, sub, name in self.files if kind == "input"
        ]

    # --- HTTP ------------------------------------------------------------------------------

    async def _post_prompt(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.json()
        self.prompts.append(body)
        if "number" in body:
            number = int(body["number"])
        else:
            number = self._number
            if body.get("front"):
                number = -number
            self._number += 1
        if "prompt" not in body:
            missing = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": missing, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        inputs = frozenset(self._input_files())
        error, outputs, node_errors = nodes.validate_prompt(prompt, self.node_types(), inputs)
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        self._pending.append(QueueItem(number, prompt_id, prompt, extra, outputs))
        self.runs[prompt_id] = Run(arrived)
        self._wake.set()
        await self._broadcast_status()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.accept_websockets:
            raise web.HTTPNotFound()
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets.setdefault(sid, set()).add(socket)
        try:
            await socket.send_json(
                {"type": "status", "data": {"status": self._queue_info(), "sid": sid}}
            )
            running = self._running
            if running is not None and running.extra_data.get("client_id") == sid and self._node:
                # on reconnect, the running prompt's client is told the node (no prompt_id)
                await socket.send_json({"type": "executing", "data": {"node": self._node}})
            async for message in socket:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self._sockets.get(sid, set()).discard(socket)
        return socket

    async def _all_history(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.history)

    async def _one_history(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename", "")
        if not filename or filename.startswith("/") or ".." in filename:
            raise web.HTTPBadRequest()
        kind = request.query.get("type", "output")
        data = self.files.get((kind, request.query.get("subfolder", ""), filename))
        if data is None:
            raise web.HTTPNotFound()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=content_type)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        post = await request.post()
        image = post.get("image")
        if image is None or not isinstance(image, web.FileField) or not image.filename:
            raise web.HTTPBadRequest()
        kind = str(post.get("type") or "input")
        subfolder = str(post.get("subfolder") or "")
        overwrite = str(post.get("overwrite", "")).lower() in {"true", "1"}
        filename = image.filename
        if not overwrite:
            base, dot, ext = filename.rpartition(".")
            index = 1
            while (kind, subfolder, filename) in self.files:
                filename = f"{base} ({index}){dot}{ext}"
                index += 1
        self.files[(kind, subfolder, filename)] = image.file.read()
        self.uploads.append(f"{subfolder}/{filename}" if subfolder else filename)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def _get_queue(self, request: web.Request) -> web.StreamResponse:
        running = [self._running.listed()] if self._running is not None else []
        pending = [item.listed() for item in self._pending]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("clear"):
            self._pending.clear()
        for prompt_id in body.get("delete", []):
            for item in list(self._pending):
                if item.prompt_id == prompt_id:
                    self._pending.remove(item)
                    self.deleted.append(prompt_id)
        await self._broadcast_status()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        current = self.running_prompt
        if wanted is None or wanted == current:
            self.interrupts.append(current)
            self._interrupt = True
        return web.Response(status=200)

    async def _object_info(self, request: web.Request) -> web.StreamResponse:
        types = self.node_types()
        wanted = request.match_info.get("node_class")
        if wanted is not None:
            return web.json_response({wanted: types[wanted].info()} if wanted in types else {})
        return web.json_response({name: kind.info() for name, kind in types.items()})

    async def _system_stats(self, request: web.Request) -> web.StreamResponse:
        system = {
            "os": "posix",
            "ram_total": 34359738368,
            "ram_free": 17179869184,
            "comfyui_version": VERSION,
            "python_version": "3.12.3",
            "pytorch_version": "2.7.1+cu128",
            "embedded_python": False,
            "argv": ["main.py", "--listen"]
            + (["--preview-method", "auto"] if self.previews else []),
        }
        device = {
            "name": "cuda:0 NVIDIA GeForce RTX 4090",
            "type": "cuda",
            "index": 0,
            "vram_total": 25757220864,
            "vram_free": 24000000000,
        }
        return web.json_response({"system": system, "devices": [device]})

    # --- the prompt worker ---------------------------------------------------------------

    def _queue_info(self) -> dict[str, Any]:
        remaining = len(self._pending) + (1 if self._running is not None else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    async def _broadcast_status(self) -> None:
        for sid in list(self._sockets):
            await self._send(sid, "status", {"status": self._queue_info()})

    async def _send(self, sid: str | None, kind: str, data: Any) -> None:
        for socket in list(self._sockets.get(sid or "", ())):
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(data, bytes):
                    await socket.send_bytes(data)
                else:
                    await socket.send_json({"type": kind, "data": data})

    async def _drop_websockets(self) -> None:
        self.accept_websockets = False
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close()

    async def _work(self) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            item = min(self._pending, key=lambda i: i.number)
            self._pending.remove(item)
            self._running = item
            await self._broadcast_status()
            try:
                await self._execute(item)
            finally:
                self._running = None
            # main.py's prompt_worker: history written (task_done), the queue's change told to
            # everyone, and only then the prompt's client told it is done
            await self._broadcast_status()
            done = {"node": None, "prompt_id": item.prompt_id}
            await self._send(item.extra_data.get("client_id"), "executing", done)

    async def _execute(self, item: QueueItem) -> None:
        sid = item.extra_data.get("client_id")
        timing = self.runs[item.prompt_id]
        timing.started = time.monotonic()

        async def tell(kind: str, data: dict[str, Any]) -> None:
            if kind == "executing":
                self._node = data["node"]
            await self._send(sid, kind, data)

        async def progress(node_id: str, value: int, maximum: int, preview: bytes | None) -> None:
            data = {"value": value, "max": maximum, "prompt_id": item.prompt_id, "node": node_id}
            await tell("progress", data)
            if preview is not None:
                timing.previews.append(time.monotonic())
                await self._send(sid, "", struct.pack(">II", PREVIEW_IMAGE, JPEG) + preview)
            if value == self.drop_websockets_at_step:
                await self._drop_websockets()

        hooks = run.Hooks(
            progress=progress,
            interrupted=self._take_interrupt,
            files=self.files,
            step_delay=self.step_delay,
            previews=self.previews,
            noise_bits=self.noise_bits,
            failures=self._failures,
        )
        outputs, status, self._cache = await run.execute(
            item.prompt, item.prompt_id, item.outputs, hooks, self._cache, self._saved, tell
        )
        self._node = None
        timing.finished = time.monotonic()
        self.history[item.prompt_id] = {
            "prompt": item.listed(),
            "outputs": outputs,
            "status": status,
            "meta": {},
        }

    def _take_interrupt(self) -> bool:
        """``throw_exception_if_processing_interrupted``: the flag is cleared when it fires."""
        if self._interrupt:
            self._interrupt = False
            return True
        return False


__all__ = ["FakeComfyUI", "QueueItem", "Run"]
