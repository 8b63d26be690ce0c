"""A local stand-in for the OpenAI Images API that behaves like the real one.

It checks the key, validates every body against the official spec (violations answer 400 and are
recorded in ``spec_violations``), enforces the per-model rules of :mod:`bot.testing.openai_rules`,
answers with real image bytes (base64 or a URL it serves itself) and can be scripted to fail::

    async with FakeImagesAPI() as api:
        api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "1"}, times=2)
        ...  # point the client at api.base_url with api.api_key
        assert api.spec_violations == []
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import gzip
import hashlib
import itertools
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.testing import openai_rules as rules
from bot.testing.openai_moderation import FakeModerations
from bot.testing.openai_stream import (
    ImageStreamAnswer,
    StreamFailure,
    stream_answer,
    wants_stream,
)
from bot.testing.openapi import coerce_multipart_fields, request_validator, resolved_schema

_SCHEMAS = {
    "generations": ("application/json", "CreateImageRequest"),
    "edits": ("multipart/form-data", "CreateImageEditRequest"),
    "variations": ("multipart/form-data", "CreateImageVariationRequest"),
}
_DEFAULT_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    404: ("invalid_request_error", "The model does not exist or you do not have access to it."),
    429: ("requests", "Rate limit reached for images per min. Please try again in 1s."),
    500: ("server_error", "The server had an error while processing your request. Sorry!"),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
}
SAFETY_MESSAGES = {
    "content_policy_violation": (
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system."
    ),
    "moderation_blocked": (
        "Your request was rejected by the safety system. If you believe this is an error, "
        "contact us at help.openai.com and include the request ID req_123."
    ),
}


@dataclass
class UploadedFile:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    #: Multipart text fields as sent (strings).
    form: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def file(self, name: str) -> UploadedFile | None:
        return next((f for f in self.files if f.name == name), None)

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body or the multipart text fields, for asserting on parameters."""
        return self.json if self.json is not None else dict(self.form)


@dataclass
class _Misbehaviour:
    """How the next successful answer departs from what was asked (see ``misbehave_next``)."""

    images: int | None = None
    urls: list[str] | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    pad_bytes: int = 0
    gzip: bool = False
    image: bytes | None = None

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = payload["data"]
        if self.images is not None:
            data = [dict(data[i % len(data)]) for i in range(self.images)]
        if self.urls is not None:
            for item, url in zip(data, itertools.cycle(self.urls), strict=False):
                item.pop("b64_json", None)
                item["url"] = url
        if self.image is not None:
            for item in data:
                item["b64_json"] = base64.b64encode(self.image).decode()
        payload = {**payload, **self.fields, "data": data}
        if self.pad_bytes:
            payload["padding"] = "x" * self.pad_bytes
        return payload


@dataclass
class _Script:
    kind: str  # "error", "garbage", "bad_base64", "not_image"
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeImagesAPI:
    def __init__(
        self,
        api_key: str = "sk-test-fake-key-0123456789abcdef",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        #: Where to listen; port 0 is a free one (``python -m bot.testing.images_api`` sets both).
        self.host, self.port = host, port
        self.models: dict[str, rules.FakeModel] = dict(rules.MODELS)
        self.requests: list[RecordedRequest] = []
        #: Set on every request recorded (a test clears it and waits for the next).
        self.requested = asyncio.Event()
        self.downloads: list[RecordedRequest] = []
        self.spec_violations: list[str] = []
        #: Answer with a URL (served here) even when b64_json was asked for.
        self.respond_with_url = False
        #: Seconds a URL stays valid (the real ones last 60 minutes); 0 = dead on arrival.
        self.url_lifetime = 3600.0
        #: Random bits per colour channel in the answers: 0 paints solid colours (tiny, fast);
        #: 2 gives photo-like PNGs (~1.6 MB at 1024x1024); 8 is incompressible noise.
        self.noise_bits = 0
        #: Seconds to wait before answering each API request.
        self.delay = 0.0
        #: While set to an unset event, API requests are taken (and recorded) but answered only
        #: once it is set: requests held at the provider for as long as the test wants.
        self.gate: asyncio.Event | None = None
        #: Seconds between the events of a streamed answer.
        self.stream_interval = 0.0
        #: Answer ``stream: true`` with plain JSON, as some compatible servers do.
        self.ignore_stream = False
        #: Sliding 60 s window of images; None = unlimited.
        self.images_per_minute: int | None = None
        #: Length of the rate limit's "minute" in seconds (benchmarks shrink it).
        self.rate_window = 60.0
        self.count_429 = 0
        self.clock: Callable[[], float] = time.monotonic
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._scripts: collections.deque[_Script] = collections.deque()
        self._misbehaviours: collections.deque[_Misbehaviour] = collections.deque()
        self._stream_failures: collections.deque[StreamFailure] = collections.deque()
        self._files: dict[str, tuple[bytes, str, float]] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        #: ``POST /v1/moderations`` (bot.testing.openai_moderation): what it flags, its calls.
        self.moderation = FakeModerations(
            lambda: self.api_key, self.spec_violations, _error, self._sleep
        )
        self.base_url = ""
        self.origin = ""

    async def _list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the cheap authenticated call operators' checks make."""
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            return _error(401, _wrong_key_message(auth), "invalid_request_error", "invalid_api_key")
        return web.Response(body=_model_list(self.models), content_type="application/json")

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeImagesAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/images/{endpoint}", self._handle)
        app.router.add_get("/files/{name}", self._serve_file)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/moderations", self.moderation.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.origin = f"http://{host}:{port}"
        self.base_url = f"{self.origin}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting ---------------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 500,
        *,
        code: str | None = None,
        message: str | None = None,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` API requests with this error (real error body shape)."""
        default_type, default_message = _DEFAULT_ERRORS.get(status, ("server_error", "Error."))
        body = _error_body(message or default_message, type or default_type, code, param)
        all_headers = {"content-type": "application/json", **(headers or {})}
        for _ in range(times):
            self._scripts.append(_Script("error", status, body, dict(all_headers)))

    def safety_next(self, code: str = "content_policy_violation") -> None:
        self.fail_next(
            400, code=code, type="image_generation_user_error", message=SAFETY_MESSAGES[code]
        )

    def billing_next(self) -> None:
        self.fail_next(
            400,
            code="billing_hard_limit_reached",
            type="billing_limit_user_error",
            message="Billing hard limit has been reached",
        )

    def quota_next(self) -> None:
        self.fail_next(
            429,
            code="insufficient_quota",
            type="insufficient_quota",
            message="You exceeded your current quota, please check your plan and billing details.",
        )

    def garbage_next(self, *, status: int = 200, times: int = 1) -> None:
        """An HTML page instead of JSON, as a misconfigured proxy would send."""
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        for _ in range(times):
            self._scripts.append(_Script("garbage", status, body, {"content-type": "text/html"}))

    def misbehave_next(
        self,
        *,
        images: int | None = None,
        urls: list[str] | None = None,
        pad_bytes: int = 0,
        gzip: bool = False,
        image: bytes | None = None,
        **fields: Any,
    ) -> None:
        """Answer the next successful request like a broken or hostile server would.

        ``images``: that many images whatever ``n`` asked; ``urls``: the images as these URLs
        (anywhere); ``fields``: top-level answer fields overridden (``size="9999x9999"``);
        ``pad_bytes``: that much filler in the JSON, sent chunked (no Content-Length);
        ``gzip``: the answer gzip-encoded; ``image``: these bytes as every image.
        """
        self._misbehaviours.append(_Misbehaviour(images, urls, fields, pad_bytes, gzip, image))

    def stream_fails_next(
        self,
        *,
        after: int = 0,
        code: str | None = None,
        message: str | None = None,
        type: str | None = None,
        drop: bool = False,
    ) -> None:
        """Break the next streamed answer after ``after`` partial images: with an ``error``
        event when ``type`` or ``code`` is given, else by ending without the completed event
        (``drop``: by cutting the connection)."""
        error = None
        if type is not None or code is not None:
            default_type, default_message = _DEFAULT_ERRORS[500]
            kind = type or default_type
            error = {"message": message or default_message, "type": kind, "param": None}
            error["code"] = code
        self._stream_failures.append(StreamFailure(after, error, drop))

    def bad_base64_next(self) -> None:
        self._scripts.append(_Script("bad_base64"))

    def not_image_next(self) -> None:
        self._scripts.append(_Script("not_image"))

    def expire_urls(self) -> None:
        """Make every URL handed out so far answer like an expired link."""
        self._files.clear()

    def add_model(self, name: str, like: str) -> None:
        self.models[name] = self.models[like]

    # --- handlers ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        if endpoint not in _SCHEMAS:
            return _error(404, "Unknown endpoint.", "invalid_request_error", "unknown_url")
        record = await self._record(request)
        self.requests.append(record)
        self.requested.set()
        response = await self._answer(endpoint, record)
        if self.delay:
            await self._sleep(self.delay)
        if self.gate is not None:
            await self._until_open(self.gate)
        if isinstance(response, ImageStreamAnswer):
            return await response.send(request)
        if response.status == 429:
            self.count_429 += 1
        return response

    async def _answer(
        self, endpoint: str, record: RecordedRequest
    ) -> web.Response | ImageStreamAnswer:
        auth = record.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            return _error(401, _wrong_key_message(auth), "invalid_request_error", "invalid_api_key")
        violation = self._spec_errors(endpoint, record)
        if violation:
            self.spec_violations.append(violation)
            return _error(400, violation, "invalid_request_error", "invalid_value")
        script = self._scripts.popleft() if self._scripts else None
        if script is not None and script.kind in {"error", "garbage"}:
            return web.Response(status=script.status, body=script.body, headers=script.headers)
        body = _typed_body(endpoint, record)
        name = body.get("model") or rules.DEFAULT_MODEL[endpoint]
        model = self.models.get(name)
        if model is None:
            message = f"The model `{name}` does not exist or you do not have access to it."
            return _error(404, message, "invalid_request_error", "model_not_found")
        try:
            rules.check_params(endpoint, name, model, body)
            images = [f.data for f in record.files if f.name in {"image", "image[]"}]
            mask = record.file("mask")
            source = None
            if endpoint != "generations":
                source = rules.check_images(endpoint, model, images, mask.data if mask else None)
        except rules.Rejected as exc:
            return _error(400, exc.message, "invalid_request_error", exc.code, exc.param)
        n = body.get("n") or 1
        limited = self._rate_limit(n)
        if limited is not None:
            return limited
        payload = self._success(endpoint, name, model, body, record, source, n)
        if script is not None:
            payload = _corrupt(payload, script.kind)
        if wants_stream(body) and not self.ignore_stream:
            how = self._misbehaviours.popleft() if self._misbehaviours else None
            if how is not None:
                payload = how.apply(payload)
            return self._stream(endpoint, payload, body, len(images), checked=how is None)
        if self._misbehaviours:
            return _misbehaving_response(self._misbehaviours.popleft(), payload)
        return web.Response(
            body=_json_answer(payload),
            content_type="application/json",
            headers=self._ratelimit_headers(),
        )

    def _success(
        self,
        endpoint: str,
        name: str,
        model: rules.FakeModel,
        body: dict[str, Any],
        record: RecordedRequest,
        source: tuple[int, int] | None,
        n: int,
    ) -> dict[str, Any]:
        width, height = rules.output_size(body.get("size"), source if model.gpt else None)
        fmt = body.get("output_format") or "png"
        prompt = body.get("prompt") or ""
        inputs = [f.data for f in record.files if f.name in {"image", "image[]"}]
        seed = [hashlib.sha256(d).hexdigest()[:12] for d in inputs]
        use_url = self.respond_with_url or (
            not model.gpt and body.get("response_format", "url") == "url"
        )
        data = []
        for index in range(n):
            colour = rules.colour_for(prompt, name, index, *seed)
            if self.noise_bits:
                image = rules.make_noisy_image(width, height, colour, fmt, self.noise_bits)
            else:
                image = rules.make_image(width, height, colour, fmt)
            item: dict[str, Any] = (
                {"url": self._publish(image, fmt)} if use_url else {"b64_json": _base64(image)}
            )
            if name == "dall-e-3":
                item["revised_prompt"] = f"A detailed, vivid illustration of: {prompt}"
            data.append(item)
        payload: dict[str, Any] = {"created": int(time.time()), "data": data}
        if model.gpt:
            quality = body.get("quality") or "auto"
            quality = "medium" if quality == "auto" else quality
            background = "transparent" if body.get("background") == "transparent" else "opaque"
            payload.update(
                size=f"{width}x{height}",
                quality=quality,
                background=background,
                output_format=fmt,
                usage=rules.usage(prompt, n, quality, len(inputs)),
            )
        return payload

    def _stream(
        self,
        endpoint: str,
        payload: dict[str, Any],
        body: dict[str, Any],
        inputs: int,
        *,
        checked: bool,
    ) -> ImageStreamAnswer:
        """The answer as events; each image's usage its own (the API streams one image).

        A misbehaving answer (``misbehave_next``: its fields, image count and bytes; not its
        padding or encoding) is streamed as it is, and not held to the spec (``checked``)."""
        count = len(payload["data"])
        prompt = body.get("prompt") or ""
        one = rules.usage(prompt, 1, payload["quality"], inputs)
        usages = [payload["usage"]] if count == 1 else [one] * count
        name = body.get("model") or rules.DEFAULT_MODEL[endpoint]
        answer = stream_answer(
            endpoint,
            payload,
            body,
            usages,
            self._ratelimit_headers(),
            free_sizes=self.models[name].free_sizes,
            noise_bits=self.noise_bits,
        )
        answer.interval, answer.sleep = self.stream_interval, self._sleep
        answer.failure = self._stream_failures.popleft() if self._stream_failures else None
        if checked:
            self.spec_violations.extend(answer.violations)
        return answer

    def _publish(self, image: bytes, fmt: str) -> str:
        name = f"{secrets.token_hex(8)}.{fmt}"
        self._files[name] = (image, f"image/{fmt}", self.clock() + self.url_lifetime)
        return f"{self.origin}/files/{name}"

    async def _serve_file(self, request: web.Request) -> web.Response:
        self.downloads.append(RecordedRequest("GET", request.path, dict(request.headers)))
        stored = self._files.get(request.match_info["name"])
        if stored is None or stored[2] <= self.clock():  # what an expired signed URL answers
            body = "<Error><Code>AuthenticationFailed</Code><Message>expired</Message></Error>"
            return web.Response(status=403, text=body, content_type="application/xml")
        return web.Response(body=stored[0], content_type=stored[1])

    # --- helpers -----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        record = RecordedRequest(request.method, request.path, dict(request.headers))
        if request.content_type == "application/json":
            try:
                record.json = await request.json()
            except ValueError:
                record.json = {}
        elif request.content_type == "multipart/form-data":
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    record.files.append(
                        UploadedFile(name, value.filename, value.content_type, data)
                    )
                else:
                    record.form[name] = str(value)
        return record

    def _spec_errors(self, endpoint: str, record: RecordedRequest) -> str | None:
        content_type, schema_name = _SCHEMAS[endpoint]
        validator = request_validator("openai", f"/images/{endpoint}", "post", content_type)
        if validator is None:
            return None
        if content_type == "application/json":
            body: Any = record.json
        else:
            fields: dict[str, Any] = dict(record.form)
            for upload in record.files:
                key = upload.name.removesuffix("[]")
                if upload.name.endswith("[]"):
                    fields.setdefault(key, []).append("<binary>")
                else:
                    fields[key] = "<binary>"
            body = coerce_multipart_fields(resolved_schema("openai", schema_name), fields)
        errors = validator.errors(body)
        return f"{validator.where}: " + "; ".join(errors) if errors else None

    def _rate_limit(self, n: int) -> web.Response | None:
        if self.images_per_minute is None:
            return None
        now = self.clock()
        while self._window and self._window[0][0] <= now - self.rate_window:
            self._window.popleft()
        used = sum(count for _, count in self._window)
        if used + n <= self.images_per_minute:
            self._window.append((now, n))
            return None
        freed, wait = 0, self.rate_window
        for stamp, count in self._window:
            freed += count
            if used - freed + n <= self.images_per_minute:
                wait = stamp + self.rate_window - now
                break
        headers = self._ratelimit_headers(reset=wait)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        message = (
            f"Rate limit reached for images per min. Limit: {self.images_per_minute}/1min. "
            f"Current: {used + n}/1min. Please try again in {wait:.0f}s."
        )
        return _error(429, message, "requests", "rate_limit_exceeded", headers=headers)

    def _ratelimit_headers(self, reset: float = 0.0) -> dict[str, str]:
        headers = {"x-request-id": f"req_{secrets.token_hex(8)}"}
        if self.images_per_minute is not None:
            used = sum(count for _, count in self._window)
            headers.update(
                {
                    "x-ratelimit-limit-requests": str(self.images_per_minute),
                    "x-ratelimit-remaining-requests": str(max(0, self.images_per_minute - used)),
                    "x-ratelimit-reset-requests": f"{reset:.3f}s",
                }
            )
        return headers

    async def _sleep(self, seconds: float) -> None:
        """A delay that ends early when the server shuts down, so teardown never waits."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _until_open(self, gate: asyncio.Event) -> None:
        """Until ``gate`` is set, or the server shuts down."""
        waits = [asyncio.ensure_future(gate.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


def _typed_body(endpoint: str, record: RecordedRequest) -> dict[str, Any]:
    if record.json is not None:
        return record.json
    body: dict[str, Any] = dict(record.form)
    for name in ("n", "partial_images"):
        if name in body and body[name].lstrip("-").isdigit():
            body[name] = int(body[name])
    if body.get("stream") in {"true", "false"}:
        body["stream"] = body["stream"] == "true"
    return body


def _error_body(message: str, type: str, code: str | None, param: str | None = None) -> bytes:
    error = {"message": message, "type": type, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def _model_list(names: Any) -> bytes:
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "system"} for name in names]
    return json.dumps({"object": "list", "data": data}).encode()


def _error(
    status: int,
    message: str,
    type: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=_error_body(message, type, code, param),
        content_type="application/json",
        headers=headers,
    )


def _wrong_key_message(auth: str) -> str:
    """Like the real message: it echoes a masked part of the wrong key (the client scrubs it)."""
    if not auth.startswith("Bearer "):
        return "You didn't provide an API key. Provide it in an Authorization header (Bearer)."
    key = auth.removeprefix("Bearer ")
    masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:]
    return f"Incorrect API key provided: {masked}. You can find your API key in your dashboard."


def _misbehaving_response(how: _Misbehaviour, payload: dict[str, Any]) -> web.Response:
    body = json.dumps(how.apply(payload)).encode()
    headers = {"content-type": "application/json"}
    if how.gzip:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    response = web.Response(body=body, headers=headers)
    if how.pad_bytes:
        response.enable_chunked_encoding()
    return response


def _corrupt(payload: dict[str, Any], kind: str) -> dict[str, Any]:
    fake = "not base64 at all!!" if kind == "bad_base64" else base64.b64encode(b"GIF? no.").decode()
    for item in payload["data"]:
        item.pop("url", None)
        item["b64_json"] = fake
    return payload


class _Base64(str):
    """Base64 text the fake made: nothing in it for JSON to escape (see _json_answer)."""


@functools.lru_cache(maxsize=16)
def _base64(image: bytes) -> str:
    """The image as base64 text; the same image (a benchmark's) is encoded once."""
    return _Base64(base64.b64encode(image).decode())


def _json_answer(payload: dict[str, Any]) -> bytes:
    """``payload`` as JSON, each image's base64 text put in as it is: the standard encoder
    scans megabytes of it for characters to escape (base64 has none), 2-3 ms of CPU an answer
    that benchmarks sharing the machine would take from the bot."""
    token = secrets.token_hex(8)  # a placeholder no other text of the answer can contain
    texts: dict[str, str] = {}
    data = payload.get("data")
    if isinstance(data, list):
        items = []
        for item in data:
            text = item.get("b64_json") if isinstance(item, dict) else None
            if isinstance(text, _Base64):
                placeholder = f"{token}-{len(texts)}"
                texts[f'"{placeholder}"'] = f'"{text}"'
                item = {**item, "b64_json": placeholder}
            items.append(item)
        payload = {**payload, "data": items}
    encoded = json.dumps(payload)
    for placeholder, text in texts.items():
        encoded = encoded.replace(placeholder, text, 1)
    return encoded.encode()
