"""The fake OpenAI server's ``POST /v1/moderations``, written from the official spec.

Every body is validated against CreateModerationRequest (a violation answers 400 and is recorded
in the server's ``spec_violations``), and every answer it makes against CreateModerationResponse.
Tests decide what is flagged and how the endpoint fails::

    api.moderation.flag("FORBIDDEN", "violence", "harassment")  # text containing the marker
    api.moderation.flag_images = True                            # any image: "sexual"
    api.moderation.fail_next(503, times=2)                       # or 429, or delay = 5.0
    assert len(api.moderation.calls) == 1

The per-model rules that the spec does not state are the documented ones: only the
``omni-moderation-*`` models take images (the text models answer 400 for an image part).
"""

from __future__ import annotations

import base64
import binascii
import collections
import io
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from bot.testing.openapi import request_validator, schema_validator

#: Every category of the spec's answer, and the input types each may apply to.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": ("text",),
    "harassment/threatening": ("text",),
    "hate": ("text",),
    "hate/threatening": ("text",),
    "illicit": ("text",),
    "illicit/violent": ("text",),
    "self-harm": ("text", "image"),
    "self-harm/intent": ("text", "image"),
    "self-harm/instructions": ("text", "image"),
    "sexual": ("text", "image"),
    "sexual/minors": ("text",),
    "violence": ("text", "image"),
    "violence/graphic": ("text", "image"),
}
MODELS = frozenset(
    {
        "omni-moderation-latest",
        "omni-moderation-2024-09-26",
        "text-moderation-latest",
        "text-moderation-stable",
    }
)
#: The error bodies of scripted failures by status: (type, message), as the real API words them.
_ERRORS = {
    401: ("invalid_request_error", "Incorrect API key provided."),
    404: ("invalid_request_error", "Unknown request URL: POST /v1/moderations."),
    429: ("requests", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", "The server had an error while processing your request. Sorry!"),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
}
#: What the real API assumes without ``model`` (the spec's default).
DEFAULT_MODEL = "omni-moderation-latest"


@dataclass
class ModerationCall:
    """One request as received: its JSON body and its parts, images decoded."""

    headers: dict[str, str]
    body: Any
    texts: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list, repr=False)


ErrorAnswer = Callable[..., web.Response]


class FakeModerations:
    def __init__(
        self,
        api_key: Callable[[], str],
        violations: list[str],
        error: ErrorAnswer,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        """``api_key``: the server's key as it is now; ``violations``: its ``spec_violations``;
        ``error``: its error answers; ``sleep``: its delay that ends when it shuts down."""
        self._api_key = api_key
        self._violations = violations
        self._error = error
        self._sleep = sleep
        #: Marker (case-insensitive) -> the categories a text containing it is flagged for.
        self.markers: dict[str, tuple[str, ...]] = {}
        #: Flag every image part (as "sexual", applied to images).
        self.flag_images = False
        #: Seconds to wait before answering (longer than the client's timeout: a timeout).
        self.delay = 0.0
        self.calls: list[ModerationCall] = []
        self._failures: collections.deque[tuple[int, str | None, dict[str, str]]] = (
            collections.deque()
        )

    def flag(self, marker: str, *categories: str) -> None:
        """Flag texts containing ``marker`` for ``categories`` (default: violence)."""
        unknown = [name for name in categories if name not in CATEGORIES]
        assert not unknown, f"not a moderation category: {unknown}"
        self.markers[marker.casefold()] = categories or ("violence",)

    def fail_next(
        self,
        status: int = 500,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with this error (the API's error body)."""
        for _ in range(times):
            self._failures.append((status, code, dict(headers or {})))

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        call = ModerationCall(dict(request.headers), body)
        self.calls.append(call)
        if self.delay:
            await self._sleep(self.delay)
        return self._answer(call)

    def _answer(self, call: ModerationCall) -> web.Response:
        if call.headers.get("Authorization", "") != f"Bearer {self._api_key()}":
            return self._error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        validator = request_validator("openai", "/moderations", "post")
        errors = validator.errors(call.body) if validator is not None else []
        if errors or not isinstance(call.body, dict):
            where = validator.where if validator is not None else "POST /moderations"
            violation = f"{where}: " + ("; ".join(errors) or "the body is not a JSON object")
            self._violations.append(violation)
            return self._error(400, violation, "invalid_request_error", "invalid_value")
        if self._failures:
            status, code, headers = self._failures.popleft()
            kind, message = _ERRORS.get(status, _ERRORS[500])
            return self._error(status, message, kind, code, headers=headers)
        model = call.body.get("model") or DEFAULT_MODEL
        if model not in MODELS:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return self._error(404, message, "invalid_request_error", "model_not_found")
        problem = self._read_parts(call, model)
        if problem is not None:
            return self._error(400, problem, "invalid_request_error", "invalid_value", "input")
        payload = {
            "id": f"modr-{secrets.token_hex(12)}",
            "model": model,
            "results": [self._result(call)],
        }
        response_validator = schema_validator("openai", "CreateModerationResponse")
        if response_validator is not None:  # the fake's own answer keeps to the spec too
            self._violations.extend(
                f"answer of POST /moderations: {problem}"
                for problem in response_validator.errors(payload)
            )
        return web.json_response(payload)

    def _read_parts(self, call: ModerationCall, model: str) -> str | None:
        """Collect the texts and decoded images; the reason a real API would refuse, if any."""
        given = call.body["input"]
        parts = [given] if isinstance(given, str) else given
        for part in parts:
            if isinstance(part, str):
                call.texts.append(part)
            elif part["type"] == "text":
                call.texts.append(part["text"])
            else:
                if not model.startswith("omni-"):
                    return f"Image inputs are not supported by the model {model}."
                image = _data_url_image(part["image_url"]["url"])
                if image is None:
                    return "Invalid image: send a PNG, JPEG, WebP or GIF as a URL or data URL."
                call.images.append(image)
        return None

    def _result(self, call: ModerationCall) -> dict[str, Any]:
        flagged: set[str] = set()
        text = " ".join(call.texts).casefold()
        for marker, categories in self.markers.items():
            if marker in text:
                flagged.update(categories)
        image_flagged = self.flag_images and bool(call.images)
        if image_flagged:
            flagged.add("sexual")
        applied = {
            name: [kind for kind in kinds if kind == "text" or call.images]
            for name, kinds in CATEGORIES.items()
        }
        return {
            "flagged": bool(flagged),
            "categories": {name: name in flagged for name in CATEGORIES},
            "category_scores": {name: 0.97 if name in flagged else 0.0001 for name in CATEGORIES},
            "category_applied_input_types": applied,
        }


def _data_url_image(url: str) -> bytes | None:
    """The image a ``data:image/...;base64,`` URL carries, None when it carries none."""
    head, comma, data = url.partition(",")
    if not comma or not head.startswith("data:image/") or not head.endswith(";base64"):
        return None
    try:
        raw = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
    except (binascii.Error, ValueError, OSError):
        return None
    return raw
