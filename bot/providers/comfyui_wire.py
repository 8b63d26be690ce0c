"""ComfyUI's wire format: error answers, websocket frames, history entries, node lists.

Pure functions the client (:mod:`bot.providers.comfyui`) builds on. ComfyUI answers a graph it
will not run with 400 ``{"error": {"type", "message", "details"}, "node_errors": {node_id:
{"class_type", "errors": [...]}}}`` (``execution.validate_prompt``): that is the operator's
workflow (or server) at fault, never the member's, since the bot checks the member's choices
(checkpoint, sampler, limits) before it sends anything.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Mapping
from typing import Any

from bot.providers import retry
from bot.providers.errors import (
    InvalidRequest,
    MalformedResponse,
    OperatorProblem,
    ProviderError,
    ProviderUnavailable,
    scrub,
)

log = logging.getLogger(__name__)

BACKEND = "ComfyUI"
#: ``server.BinaryEventTypes.PREVIEW_IMAGE``; then ``>I`` 1 = JPEG, 2 = PNG.
PREVIEW_IMAGE = 1
PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}


def json_answer(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise MalformedResponse(detail=f"{what}: answer is not JSON ({len(raw)} bytes)") from None


def describe_refusal(payload: Mapping[str, Any], graph: Mapping[str, Any] | None) -> str:
    """One line per refused node: "node 3 'imagebot:seed' (KSampler): Value 0 smaller than min
    of 1: steps", or ComfyUI's own reason when no node is named."""
    lines: list[str] = []
    node_errors = payload.get("node_errors")
    for node_id, entry in node_errors.items() if isinstance(node_errors, dict) else ():
        if not isinstance(entry, dict):
            continue
        node = graph.get(str(node_id)) if graph is not None else None
        meta = node.get("_meta") if isinstance(node, dict) else None
        title = meta.get("title") if isinstance(meta, dict) else None
        name = f"node {node_id}" + (f" '{title}'" if isinstance(title, str) and title else "")
        name += f" ({entry.get('class_type', '?')})"
        for reason in entry.get("errors") or ():
            if isinstance(reason, dict):
                lines.append(f"{name}: {reason.get('message', '?')}: {reason.get('details', '')}")
    if not lines:
        error = payload.get("error")
        if isinstance(error, dict):
            lines.append(
                f"{error.get('message', 'refused')}: {error.get('details', '')}".rstrip(": ")
            )
        elif isinstance(error, str):
            lines.append(error)
    return "; ".join(lines) or "the prompt was refused"


def classify_error(
    status: int, raw: bytes, what: str, graph: Mapping[str, Any] | None = None
) -> ProviderError:
    """The error for a non-2xx answer to ``what`` (a path)."""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if status == 400 and what == "/prompt" and isinstance(payload, dict):
        reason = scrub(describe_refusal(payload, graph))
        return OperatorProblem(status=status, detail=f"ComfyUI refused the workflow: {reason}")
    text = scrub(raw[:300].decode("utf-8", "replace").strip()) or f"HTTP {status}"
    detail = f"HTTP {status} {what}: {text}"
    if status in {401, 403}:
        return OperatorProblem(status=status, detail=f"{detail} (a proxy in front of ComfyUI?)")
    if status == 404 or 300 <= status < 400:
        return OperatorProblem(status=status, detail=f"{detail} (check the ComfyUI base URL)")
    if retry.is_retryable_status(status):
        return ProviderUnavailable(status=status, detail=detail)
    return InvalidRequest(status=status, detail=detail, reason=text)


def preview_frame(frame: bytes) -> tuple[str, bytes] | None:
    """(mime, image bytes) of a binary preview frame; None for any other binary event."""
    if len(frame) < 8:
        return None
    event, image_format = struct.unpack(">II", frame[:8])
    mime = PREVIEW_FORMATS.get(image_format)
    if event != PREVIEW_IMAGE or mime is None:
        return None
    return mime, frame[8:]


def outcome_error(entry: Mapping[str, Any], prompt_id: str) -> ProviderError | None:
    """The failure a finished history entry records, None when it succeeded."""
    status = entry.get("status")
    if not isinstance(status, dict) or status.get("status_str") != "error":
        return None
    for message in status.get("messages") or ():
        if not (isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)):
            continue
        kind, data = message
        where = f"node {data.get('node_id')} ({data.get('node_type')})"
        if kind == "execution_error":
            text = scrub(f"{data.get('exception_type')}: {data.get('exception_message')}")
            return ProviderUnavailable(
                detail=f"ComfyUI prompt {prompt_id} failed at {where}: {text}"
            )
        if kind == "execution_interrupted":
            return ProviderUnavailable(
                detail=f"ComfyUI prompt {prompt_id} was interrupted on the server at {where}"
            )
    return ProviderUnavailable(detail=f"ComfyUI prompt {prompt_id} ended with an error")


def output_images(entry: Mapping[str, Any], node_id: str) -> list[dict[str, str]]:
    """The ``{filename, subfolder, type}`` of each image the output node saved."""
    outputs = entry.get("outputs")
    node = outputs.get(node_id) if isinstance(outputs, dict) else None
    images = node.get("images") if isinstance(node, dict) else None
    found = [
        {
            "filename": image["filename"],
            "subfolder": str(image.get("subfolder") or ""),
            "type": str(image.get("type") or "output"),
        }
        for image in images or ()
        if isinstance(image, dict) and isinstance(image.get("filename"), str)
    ]
    if not found:
        raise MalformedResponse(detail=f"ComfyUI history has no images from node {node_id}")
    return found


def choices(info: Any, class_type: str, input_name: str) -> tuple[str, ...]:
    """The values ``/object_info`` lists for a choice input (old ``[[...], {}]`` and new
    ``["COMBO", {"options": [...]}]`` shapes)."""
    node = info.get(class_type) if isinstance(info, dict) else None
    inputs = node.get("input") if isinstance(node, dict) else None
    for group in ("required", "optional"):
        spec = inputs.get(group, {}).get(input_name) if isinstance(inputs, dict) else None
        if not isinstance(spec, list) or not spec:
            continue
        if isinstance(spec[0], list):
            return tuple(str(v) for v in spec[0])
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return tuple(str(v) for v in spec[1].get("options", ()))
    return ()


def queue_ids(queue: Any) -> tuple[set[str], set[str]]:
    """(running, pending) prompt ids from ``GET /queue``."""

    def ids(items: Any) -> set[str]:
        return {
            str(item[1])
            for item in (items if isinstance(items, list) else ())
            if isinstance(item, list) and len(item) > 1
        }

    if not isinstance(queue, dict):
        raise MalformedResponse(detail="/queue: answer is not an object")
    return ids(queue.get("queue_running")), ids(queue.get("queue_pending"))
