"""The OpenAI Images API (and compatible servers) behind three calls: generate, edit, vary.

Every call ends with verified image bytes or a typed :mod:`bot.providers.errors` exception: URLs
are downloaded at once (they expire after an hour, and Discord must get the bytes anyway), every
image is checked (``verify``, Pillow work the composition root runs on its bounded image worker)
before it is returned, and failures are retried only when another attempt can
help. The HTTP session belongs to the entry point, so connection pooling and shutdown stay in one
place; ``sleep`` and ``random`` are injectable so retry tests run instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hashlib
import json
import logging
import random as _random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import pybase64
import yarl

from bot.config import ProviderSettings
from bot.errors import ConfigError
from bot.providers import retry
from bot.providers.backend import BackendFeatures, SDChoice
from bot.providers.capabilities import ModelSpec
from bot.providers.checks import check_request, image_format
from bot.providers.errors import (
    MalformedResponse,
    OperatorProblem,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    UnknownModel,
    UnsupportedOperation,
    classify_error,
    scrub,
)
from bot.providers.fetch import MAX_REDIRECTS, HostPolicy, checked_request, read_capped
from bot.providers.progress import ProgressCallback
from bot.providers.sse import is_event_stream
from bot.providers.streaming import EVENT_PREFIXES, ImageStream, streamed_partials, with_partials
from bot.providers.types import (
    EditRequest,
    GeneratedImage,
    GenerateRequest,
    ImageResult,
    ImageUsage,
    UpscaleRequest,
    VaryRequest,
)
from bot.providers.upscale import upscale_instruction

log = logging.getLogger(__name__)

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

FilePart = tuple[str, bytes]
#: Checks a provider's images (bot.imaging.verify_results on the image worker): mime type,
#: width and height of each, or ValueError naming what is wrong.
VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]
#: Told ``(backend name, seconds)`` when the provider answers 429 asking to wait that long:
#: whoever keeps the rate limit holds this backend's other requests back as well.
OnRateLimited = Callable[[str, float], Awaitable[None]]


class ImagesClient:
    """One provider (base URL + key) and its model table, a
    :class:`~bot.providers.backend.Backend`; safe to share between tasks."""

    features = BackendFeatures(kind="openai")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ProviderSettings,
        models: Mapping[str, ModelSpec],
        *,
        name: str = "default",
        verify: VerifyImages,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        observe: Callable[[str, float, str | None], None] | None = None,
        on_rate_limited: OnRateLimited | None = None,
        user_salt: str = "",
        check_models: Sequence[str] = (),
    ) -> None:
        """``observe(path, seconds, error_code)`` is told about every API call (metrics);
        ``on_rate_limited`` about every 429 that says how long to wait (:data:`OnRateLimited`).

        ``user_salt`` is the installation's stored salt for the hashed ``user``;
        ``check_models`` are the models :meth:`check_access` wants served besides ``model``.
        """
        if settings.model not in models:
            raise ConfigError(f"provider.model: unknown model {settings.model!r}")
        self.name = name
        self._check_models = tuple(check_models)
        self._session = session
        self._settings = settings
        self._models = dict(models)
        self._sleep = sleep
        self._random = random
        self._observe = observe
        self._on_rate_limited = on_rate_limited
        self._verify = verify
        self._base_url = settings.base_url.rstrip("/")
        self._hosts = HostPolicy.from_settings(settings.base_url, settings.allowed_hosts)
        self._max_response = int(settings.max_response_mb * 1024 * 1024)
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout_seconds,
            sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.read_timeout_seconds,
        )
        # The installation's random salt (stored in its database), unless the operator set one.
        # Without either (the one-shot commands) no ``user`` is sent: there is no member.
        self._user_salt = settings.user_salt or user_salt

    def __repr__(self) -> str:
        return f"ImagesClient(base_url={self._base_url!r}, model={self._settings.model!r})"

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    def spec_for(self, model: str | None) -> ModelSpec:
        """The capabilities of ``model`` (None = the operator's default model)."""
        name = model or self._settings.model
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(model=name, allowed=", ".join(self._models)) from None

    def user_hash(self, user_id: str) -> str:
        """The ``user`` sent to the provider: stable per member, useless without the salt."""
        return hashlib.sha256(f"{self._user_salt}:{user_id}".encode()).hexdigest()[:32]

    async def option_values(self, option: SDChoice) -> tuple[str, ...]:
        return ()  # no Stable Diffusion options here

    async def aclose(self) -> None:
        return None  # nothing runs in the background

    async def check_access(self) -> str:
        """``check``'s line: the key is accepted and the server serves the configured model and
        the ``check_models`` (see :meth:`served_models`); OperatorProblem names what is not."""
        served = await self.served_models()
        model = self._settings.model
        if served is None:
            return f"accepts the key (it lists no models: {model} unchecked)"
        # Every request for a model the server does not serve fails: the key alone proves nothing.
        wanted = [model, *(name for name in self._check_models if name != model)]
        missing = [name for name in wanted if name not in served]
        if missing:
            known = ", ".join(sorted(served & set(self._models)))
            where = "[provider]" if self.name == "default" else f"[backends.{self.name}]"
            raise OperatorProblem(
                detail=f"accepts the key but does not serve {', '.join(missing)} "
                f"(set {where} model or [quotas] allowed_models; it serves: "
                f"{known or 'none of the models the bot knows'})"
            )
        return f"accepts the key and serves {model}"

    async def served_models(self) -> frozenset[str] | None:
        """One cheap authenticated call (``GET /models``) that proves the key is accepted.

        Returns the model ids the server lists (None when it answers without a list, as some
        compatible servers do), so a check can tell a model the server does not serve.
        Raises the same typed errors as the image calls: OperatorProblem for a refused key.
        Makes no image and costs nothing.
        """
        headers = (
            {"Authorization": f"Bearer {self._settings.api_key}"} if self._settings.api_key else {}
        )
        _, body = await self._request(
            "GET",
            self._base_url + "/models",
            what="/models",
            headers=headers,
            classify=self._classify,
        )
        return _model_ids(body)

    async def post_json(self, path: str, body: bytes) -> dict[str, Any]:
        """POST ``body`` (JSON, encoded by the caller: off the event loop when it is large) to
        ``path`` under this provider's base URL with the image calls' key, retries, timeouts and
        error mapping (:mod:`bot.providers.moderation` asks ``/moderations`` this way).

        Its 429s hold back no image request: an endpoint other than the images has its own
        rate limit. Returns the answer's JSON object, or raises the typed errors.
        """
        headers = {"Content-Type": "application/json"}
        if self._settings.api_key:
            headers["Authorization"] = f"Bearer {self._settings.api_key}"
        started = time.monotonic()
        try:
            status, answer = await self._request(
                "POST",
                self._base_url + path,
                what=path,
                headers=headers,
                content=body,
                classify=self._classify,
                pauses_images=False,
            )
        except ProviderError as error:
            if self._observe is not None:
                self._observe(path, time.monotonic() - started, error.code or error.key)
            raise
        if self._observe is not None:
            self._observe(path, time.monotonic() - started, None)
        payload = _json_object(answer, status)
        if "error" in payload:  # some compatible servers answer 200 with an error object
            raise classify_error(400, {}, answer, self._secrets)
        return payload

    # --- operations ----------------------------------------------------------------------------

    async def generate(
        self, request: GenerateRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        spec = self.spec_for(request.model)
        check_request(spec, request)
        body: dict[str, Any] = {"model": spec.name, "prompt": request.prompt, "n": request.n}
        size = request.size or spec.default_size
        if size is not None:
            body["size"] = size
        for name in ("quality", "style", "background", "output_format", "moderation"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        self._add_common(body, spec, request.user_id)
        stream = self._stream("/images/generations", spec, request.n, progress)
        payload = await self._post("/images/generations", spec, json_body=body, stream=stream)
        return await self._result(payload, spec, request.n, size, request.quality, stream)

    async def edit(
        self, request: EditRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        spec = self.spec_for(request.model)
        check_request(spec, request)
        fields: dict[str, Any] = {"model": spec.name, "prompt": request.prompt, "n": request.n}
        size = request.size or spec.default_size
        if size is not None:
            fields["size"] = size
        for name in ("quality", "background", "output_format", "input_fidelity"):
            value = getattr(request, name)
            if value is not None:
                fields[name] = value
        self._add_common(fields, spec, request.user_id)
        files = [("image", request.image)]
        if request.extra_images:
            # Several pictures: repeated ``image[]`` parts, as the API reference sends them.
            files = [("image[]", image) for image in (request.image, *request.extra_images)]
        if request.mask is not None:
            files.append(("mask", request.mask))
        stream = self._stream("/images/edits", spec, request.n, progress)
        payload = await self._post("/images/edits", spec, fields=fields, files=files, stream=stream)
        return await self._result(payload, spec, request.n, size, request.quality, stream)

    async def upscale(
        self, request: UpscaleRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """An edit redrawing the image at ``request.size`` (the model's largest of its shape,
        see :func:`bot.providers.upscale.upscale_size`), as faithfully as the model can."""
        spec = self.spec_for(request.model)
        if request.size is None:
            raise UnsupportedOperation(model=spec.name, operation="upscale")
        edit = EditRequest(
            image=request.image,
            prompt=upscale_instruction(request.prompt, spec.max_prompt_chars),
            size=request.size,
            quality=request.quality,
            model=spec.name,
            user_id=request.user_id,
            input_fidelity="high" if spec.input_fidelity else None,
        )
        return await self.edit(edit, progress=progress)

    async def vary(
        self, request: VaryRequest, *, progress: ProgressCallback | None = None
    ) -> ImageResult:
        """Native variations where the model has them, else an edit asking for a variation."""
        spec = self.spec_for(request.model)
        check_request(spec, request)
        fields: dict[str, Any] = {"model": spec.name, "n": request.n}
        size = request.size or spec.default_size
        if size is not None:
            fields["size"] = size
        self._add_common(fields, spec, request.user_id)
        files = [("image", request.image)]
        stream = None
        if spec.native_variations:
            payload = await self._post("/images/variations", spec, fields=fields, files=files)
        else:
            fields["prompt"] = spec.vary_prompt
            stream = self._stream("/images/edits", spec, request.n, progress)
            payload = await self._post(
                "/images/edits", spec, fields=fields, files=files, stream=stream
            )
        return await self._result(payload, spec, request.n, size, None, stream)

    def _stream(
        self, path: str, spec: ModelSpec, n: int, progress: ProgressCallback | None
    ) -> ImageStream | None:
        """How to read the answer streamed, with previews, when the caller takes progress and
        the model streams (see bot.providers.streaming); None: asked for without streaming."""
        partials = streamed_partials(spec, self._settings, n)
        if progress is None or partials == 0:
            return None
        return ImageStream(
            EVENT_PREFIXES[path],
            partials,
            progress=progress,
            verify=self._verify,
            classify=self._classify,
            limit=self._max_response,
            what=path,
            secrets=self._secrets,
        )

    def _add_common(self, body: dict[str, Any], spec: ModelSpec, user_id: str | None) -> None:
        if spec.response_format:
            body["response_format"] = "b64_json"
        if user_id is not None and spec.accepts_user and self._user_salt:
            body["user"] = self.user_hash(user_id)

    # --- HTTP ----------------------------------------------------------------------------------

    async def _post(
        self,
        path: str,
        spec: ModelSpec,
        *,
        json_body: dict[str, Any] | None = None,
        fields: dict[str, Any] | None = None,
        files: list[FilePart] | None = None,
        stream: ImageStream | None = None,
    ) -> dict[str, Any]:
        if stream is not None and json_body is not None:
            json_body = {**json_body, "stream": True, "partial_images": stream.partials}
        elif stream is not None:
            fields = {**(fields or {}), "stream": "true", "partial_images": stream.partials}
        headers = {"Authorization": f"Bearer {self._settings.api_key}"}
        if not self._settings.api_key:
            headers = {}  # self-hosted servers without auth

        def form() -> aiohttp.FormData | None:
            # A FormData can be sent once only, so every attempt builds a fresh one.
            if fields is None:
                return None
            data = aiohttp.FormData()
            for name, value in fields.items():
                data.add_field(name, str(value))
            for name, content in files or ():
                kind = image_format(content) or "png"
                data.add_field(
                    name,
                    content,
                    filename=f"{name.removesuffix('[]')}.{kind}",
                    content_type=_MIME.get(kind),
                )
            return data

        log.debug("POST %s model=%s", path, spec.name)
        started = time.monotonic()
        try:
            status, body = await self._request(
                "POST",
                self._base_url + path,
                what=path,
                headers=headers,
                json_body=json_body,
                form=form,
                classify=self._classify,
                read=stream.read if stream is not None else None,
            )
        except ProviderError as error:
            if self._observe is not None:
                self._observe(path, time.monotonic() - started, error.code or error.key)
            raise
        if self._observe is not None:
            self._observe(path, time.monotonic() - started, None)
        # Megabytes of JSON and base64 (a 1.6 MB image is ~10 ms of CPU in the standard
        # library's decoders): parsed in a thread, so the event loop stays free meanwhile.
        payload = await asyncio.to_thread(_answer, body, status)
        if "error" in payload and "data" not in payload:
            # Some compatible servers answer 200 with an error object.
            raise classify_error(400, {}, body, self._secrets)
        return payload

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self._settings.api_key,)

    def _classify(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return classify_error(status, headers, body, self._secrets)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        classify: Callable[[int, Mapping[str, str], bytes], ProviderError],
        headers: Mapping[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        form: Callable[[], aiohttp.FormData | None] | None = None,
        content: bytes | None = None,
        max_redirects: int = 0,
        read: Callable[[aiohttp.ClientResponse], Awaitable[bytes]] | None = None,
        pauses_images: bool = True,
    ) -> tuple[int, bytes]:
        """One HTTP exchange with retries; returns status and body of a 2xx answer.

        Every hop goes through ``fetch`` (hosts checked, body capped after decoding). ``read``
        takes a 2xx ``text/event-stream`` answer (bot.providers.streaming) and gives the body.
        ``content``: a body already encoded; ``pauses_images``: a 429 that says how long to wait
        holds this backend's image requests back (``on_rate_limited``).
        """
        max_retries = self._settings.max_retries
        attempt = 0
        possibly_billed = False
        while True:
            cause: BaseException | None = None
            try:
                async with checked_request(
                    self._session,
                    method,
                    url,
                    policy=self._hosts,
                    max_redirects=max_redirects,
                    headers=headers,
                    json=json_body,
                    data=form() if form else content,
                    timeout=self._timeout,
                ) as response:
                    if read is not None and response.status < 300 and is_event_stream(response):
                        return response.status, await read(response)
                    body = await read_capped(response, self._max_response, what)
                    if 200 <= response.status < 300:
                        return response.status, body
                    error = classify(response.status, response.headers, body)
            except (TimeoutError, aiohttp.ClientError) as exc:
                cause = exc
                reason = scrub(f"{type(exc).__name__}: {exc}".rstrip(": "), self._secrets)
                error = ProviderUnavailable(detail=f"{what}: {reason}")
                possibly_billed = possibly_billed or _maybe_sent(exc)
            error.possibly_billed = possibly_billed
            retryable = isinstance(error, RateLimited | ProviderUnavailable)
            wait = error.retry_after
            if (
                isinstance(error, RateLimited)
                and wait is not None
                and self._on_rate_limited
                and pauses_images
            ):
                # The others wait no longer than the operator lets one request wait.
                await self._on_rate_limited(
                    self.name, min(wait, self._settings.max_retry_wait_seconds)
                )
            if not retryable or attempt >= max_retries:
                raise error from cause
            if wait is not None and wait > self._settings.max_retry_wait_seconds:
                error.detail += f" (asked to wait {wait:g} s, more than the allowed maximum)"
                raise error from cause
            if wait is None:
                wait = retry.backoff_delay(attempt, self._random)
            attempt += 1
            log.warning(
                "image API %s failed (%s); retry %d of %d in %.2f s",
                what,
                error.detail,
                attempt,
                max_retries,
                wait,
            )
            await self._sleep(wait)

    # --- results -------------------------------------------------------------------------------

    async def _result(
        self,
        payload: dict[str, Any],
        spec: ModelSpec,
        n: int,
        size: str | None,
        quality: str | None,
        stream: ImageStream | None = None,
    ) -> ImageResult:
        """The answer as far as it keeps to the request: at most ``n`` images, known values.

        Extra images would be posted and charged to a member who asked for fewer, and the
        size and quality reach prices, quotas and the usage CSV, so an answer's values are
        taken only where the model table allows them (the real size of an "auto" request).
        """
        items = payload.get("data")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise MalformedResponse(detail="response has no images in 'data'")
        if len(items) > n:
            log.warning("image API sent %d images for %d asked: keeping %d", len(items), n, n)
            items = items[:n]
        raw = await asyncio.gather(*(self._image_bytes(item) for item in items))
        try:
            infos = await self._verify(raw)
        except ValueError as exc:
            raise MalformedResponse(detail=str(exc)) from None
        images = tuple(
            GeneratedImage(data, mime, width, height, _text(item.get("revised_prompt")))
            for data, (mime, width, height), item in zip(raw, infos, items, strict=True)
        )
        created = payload.get("created")
        partials = stream.received if stream is not None else 0
        return ImageResult(
            images=images,
            model=spec.name,
            size=_allowed("size", payload.get("size"), size, spec.allows_size),
            quality=_allowed(
                "quality", payload.get("quality"), quality, spec.qualities.__contains__
            ),
            background=_text(payload.get("background")),
            output_format=_text(payload.get("output_format")),
            usage=with_partials(_usage(payload.get("usage")), partials),
            created=created if isinstance(created, int) else None,
            partial_images=partials,
        )

    async def _image_bytes(self, item: dict[str, Any]) -> bytes:
        decoded = item.get(_DECODED)
        if isinstance(decoded, bytes):
            return decoded
        if isinstance(item.get("b64_json"), str):  # _answer could not decode it
            raise MalformedResponse(detail="b64_json is not valid base64")
        url = item.get("url")
        if isinstance(url, str):
            return await self._download(url)
        raise MalformedResponse(detail="image has neither b64_json nor url")

    async def _download(self, url: str) -> bytes:
        """Fetch an image URL now, before it expires. Never sends our API key to that host.

        Where it may point and how much is read is ``fetch``'s: see that module.
        """
        try:
            yarl.URL(url)
        except ValueError:
            raise MalformedResponse(detail="image url is not an http(s) URL") from None

        def download_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
            if retry.is_retryable_status(status):
                return ProviderUnavailable(status=status, detail=f"image download: HTTP {status}")
            return MalformedResponse(
                status=status, detail=f"image download: HTTP {status} (expired link?)"
            )

        try:
            _, body = await self._request(
                "GET",
                url,
                what="image download",
                classify=download_error,
                max_redirects=MAX_REDIRECTS,
            )
        except ProviderUnavailable as exc:
            raise MalformedResponse(status=exc.status, detail=exc.detail) from exc
        return body


#: Where :func:`_answer` puts an item's decoded ``b64_json`` (JSON cannot make bytes, so an
#: answer that has this key cannot pass for decoded).
_DECODED = "b64_json (decoded)"


#: Where an image's base64 text starts in an answer: ``"b64_json": "``.
_B64_START = re.compile(rb'"b64_json"\s*:\s*"')


def _answer(body: bytes, status: int) -> dict[str, Any]:
    """A 2xx answer's JSON object, each image's ``b64_json`` decoded beside it (in a thread).

    The base64 text (megabytes) is cut out before the JSON is parsed: the standard parser holds
    the GIL about 3 ms for a 2 MB string, which stalls the event loop as if it ran there; found
    with ``bytes.find`` and decoded by pybase64 it takes a tenth of that. Anything unusual (an
    escape in the text, the texts not coming back as the items' ``b64_json``) is parsed plainly.
    """
    texts: list[memoryview] = []
    pieces: list[bytes] = []
    position = 0
    while (found := body.find(b'"b64_json"', position)) >= 0:
        start = _B64_START.match(body, found)
        end = body.find(b'"', start.end()) if start else -1
        if start is None or end < 0 or body.find(b"\\", start.end(), end) >= 0:
            return _parsed_plainly(body, status)
        pieces += [body[position : start.end()], str(len(texts)).encode()]
        texts.append(memoryview(body)[start.end() : end])
        position = end
    payload = _json_object(b"".join([*pieces, body[position:]]), status)
    items = payload.get("data")
    cut = (
        [i for i in items if isinstance(i, dict) and "b64_json" in i]
        if isinstance(items, list)
        else []
    )
    if [item.get("b64_json") for item in cut] != [str(n) for n in range(len(texts))]:
        return _parsed_plainly(body, status)
    for item, text in zip(cut, texts, strict=True):
        with contextlib.suppress(binascii.Error, ValueError):  # the placeholder stays: invalid
            item[_DECODED] = pybase64.b64decode(text, validate=True)
            del item["b64_json"]
    return payload


def _parsed_plainly(body: bytes, status: int) -> dict[str, Any]:
    payload = _json_object(body, status)
    items = payload.get("data")
    for item in items if isinstance(items, list) else ():
        b64 = item.get("b64_json") if isinstance(item, dict) else None
        if isinstance(b64, str):
            with contextlib.suppress(binascii.Error, ValueError):
                item[_DECODED] = pybase64.b64decode(b64, validate=True)
                del item["b64_json"]  # two megabytes less to hold
    return payload


def _json_object(body: bytes, status: int) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise MalformedResponse(
            status=status, detail=f"HTTP {status} answer is not JSON ({len(body)} bytes)"
        ) from None
    if not isinstance(payload, dict):
        raise MalformedResponse(status=status, detail="answer is JSON but not an object")
    return payload


def _allowed(
    name: str, answered: Any, requested: str | None, allows: Callable[[str], bool]
) -> str | None:
    """The answer's value where the model table allows it, else the one asked for."""
    value = _text(answered)
    if value is None or value == requested:
        return requested
    if allows(value) and value != "auto":
        return value
    log.warning("image API answered %s %r, which the model does not offer: ignored", name, value)
    return requested


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(raw: Any) -> ImageUsage | None:
    if not isinstance(raw, dict):
        return None
    details_in = raw.get("input_tokens_details")
    details_out = raw.get("output_tokens_details")
    details_in = details_in if isinstance(details_in, dict) else {}
    details_out = details_out if isinstance(details_out, dict) else {}
    return ImageUsage(
        input_tokens=_count(raw.get("input_tokens")),
        output_tokens=_count(raw.get("output_tokens")),
        total_tokens=_count(raw.get("total_tokens")),
        input_text_tokens=_count(details_in.get("text_tokens")),
        input_image_tokens=_count(details_in.get("image_tokens")),
        output_image_tokens=_count(details_out.get("image_tokens")),
        output_text_tokens=_count(details_out.get("text_tokens")),
    )


def _maybe_sent(exc: BaseException) -> bool:
    """Whether a failed exchange may have reached the provider: all but "could not connect"."""
    return not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def _model_ids(body: bytes) -> frozenset[str] | None:
    """The ids in a ``GET /models`` answer (``{"data": [{"id": ...}, ...]}``), if it has them."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    return frozenset(
        item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)
    )
