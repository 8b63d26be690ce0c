"""The AUTOMATIC1111 web UI's wire format: request rules, answer parsing, error shapes.

Pure functions the client (:mod:`bot.providers.automatic1111`) builds on, kept apart so the
client reads as the protocol it follows. The web UI answers errors in two shapes: FastAPI's
422 ``{"detail": [{"loc", "msg", "type"}]}`` for a mistyped field, and its own
``{"error", "detail", "body", "errors"}`` for everything else (``api_middleware``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.config import ProviderSettings
from bot.providers import retry
from bot.providers.capabilities import (
    FIFTY_MB,
    IMAGE_FORMATS,
    InputRule,
    ModelSpec,
    parse_size,
    sd_sizes,
)
from bot.providers.checks import png_dimensions
from bot.providers.errors import (
    InvalidRequest,
    MalformedResponse,
    OperatorProblem,
    ProviderError,
    ProviderUnavailable,
    UnsupportedOption,
    UnsupportedSize,
    scrub,
)
from bot.providers.progress import ProgressUpdate
from bot.providers.types import EditRequest, GenerateRequest, Operation

log = logging.getLogger(__name__)

#: Sizes the client sends: multiples of 8 (the latent grid) within these sides.
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_IMAGES = 4
DEFAULT_SIZE = "512x512"
SIZE_RULE = f"multiples of 8 from {MIN_SIDE} to {MAX_SIDE}"
BACKEND = "AUTOMATIC1111"
#: The model table's one entry when no checkpoint is configured (jobs, prices, the usage CSV).
MODEL_NAME = "automatic1111"
#: The sizes offered as choices; any other multiple of 8 can be typed.
#: The web UI takes prompts of any length; this bounds what a member can paste.
MAX_PROMPT_CHARS = 8000
#: Uploads img2img takes: any of these formats, not necessarily square.
INPUT_RULE = InputRule(formats=IMAGE_FORMATS, max_bytes=FIFTY_MB, square=False)


def model_spec(settings: ProviderSettings) -> ModelSpec:
    """The one model an A1111 backend offers: named after its configured checkpoint, else
    ``MODEL_NAME``; any size on the latent grid up to the operator's ``max_side``."""
    side = min(settings.max_side, MAX_SIDE)
    sizes, free_size = sd_sizes(side, MIN_SIDE, max_ratio=side / MIN_SIDE)
    return ModelSpec(
        name=settings.model or MODEL_NAME,
        operations=frozenset(Operation),
        sizes=sizes,
        free_size=free_size,
        default_size=DEFAULT_SIZE,
        max_n=MAX_IMAGES,
        max_prompt_chars=MAX_PROMPT_CHARS,
        response_format=False,
        accepts_user=False,
        edit_input=INPUT_RULE,
        mask_max_bytes=INPUT_RULE.max_bytes,
    )


@dataclass(frozen=True)
class Checkpoint:
    """One model file the server can load (``GET /sdapi/v1/sd-models``)."""

    title: str  # "v1-5-pruned-emaonly.safetensors [6ce0161689]", what the server matches
    model_name: str  # "v1-5-pruned-emaonly", what people call it
    hash: str | None

    def answers_to(self, name: str) -> bool:
        names = {self.title, self.model_name, self.title.split(" [", 1)[0], self.hash}
        return name in names


def classify_error(status: int, raw: bytes, what: str, secrets: tuple[str, ...]) -> ProviderError:
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
    message = scrub(message or f"HTTP {status}", secrets)
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


def refuse_openai_options(request: GenerateRequest | EditRequest) -> None:
    for name in ("quality", "background", "output_format", "style", "input_fidelity", "moderation"):
        value = getattr(request, name, None)
        if value is not None:
            raise UnsupportedOption(model=BACKEND, option=name, value=value, allowed="none")


def checked_size(size: str) -> tuple[int, int]:
    parsed = parse_size(size)
    if parsed is None or not all(MIN_SIDE <= side <= MAX_SIDE and side % 8 == 0 for side in parsed):
        raise UnsupportedSize(model=BACKEND, size=size, allowed=SIZE_RULE)
    return parsed


def size_of(image: bytes) -> str:
    """The source's own size, on the latent grid (A1111 would floor it there anyway)."""
    dimensions = png_dimensions(image)
    if dimensions is None:
        return DEFAULT_SIZE
    width, height = (min(max(side // 8 * 8, MIN_SIDE), MAX_SIDE) for side in dimensions)
    return f"{width}x{height}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise MalformedResponse(detail=f"answer is not JSON ({len(raw)} bytes)") from None
    if not isinstance(payload, dict):
        raise MalformedResponse(detail="answer is JSON but not an object")
    return payload


def info_object(raw: Any) -> dict[str, Any]:
    """``info`` is a JSON object inside a string."""
    try:
        info = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def objects(items: Any) -> list[Mapping[str, Any]]:
    if not isinstance(items, list):
        raise MalformedResponse(detail="answer is not a list")
    return [item for item in items if isinstance(item, dict)]


def _problem(item: Mapping[str, Any]) -> tuple[str | None, str]:
    """("steps", "steps: value is not a valid integer") from one FastAPI 422 entry."""
    loc = [str(part) for part in item.get("loc", []) if part != "body"]
    field = ".".join(loc) or None
    msg = str(item.get("msg") or "invalid")
    return field, f"{field}: {msg}" if field else msg


def progress_update(
    task: Mapping[str, Any], state: Mapping[str, Any], preview: bytes | None
) -> ProgressUpdate:
    """Our task's fraction and ETA (``/internal/progress``), steps from the server's state."""

    def number(value: Any) -> float:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if is_number else 0.0

    step, steps = int(number(state.get("sampling_step"))), int(number(state.get("sampling_steps")))
    job_no, job_count = int(number(state.get("job_no"))), int(number(state.get("job_count")))
    text = task.get("textinfo") if isinstance(task.get("textinfo"), str) else None
    if not text:
        text = f"step {step}/{steps}" if steps else "starting"
        if job_count > 1:
            text += f", batch {job_no + 1}/{job_count}"
    eta = task.get("eta")
    return ProgressUpdate(
        fraction=min(max(number(task.get("progress")), 0.0), 1.0),
        text=text,
        step=step,
        steps=steps,
        eta_seconds=float(eta) if isinstance(eta, int | float) and eta >= 0 else None,
        preview=preview,
    )
