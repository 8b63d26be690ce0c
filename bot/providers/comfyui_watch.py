"""Following one ComfyUI prompt on its websocket: progress, previews, the moment it is done.

The socket is the call's own (its ``client_id``), so every preview frame on it is of our
prompt; JSON messages carry the ``prompt_id`` and others' are skipped. ComfyUI writes the
history entry before it sends ``executing`` with ``node: null``, so that message, not
``execution_success``, is when the result can be read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import aiohttp

from bot.providers.comfyui_wire import preview_frame
from bot.providers.progress import ProgressCallback, ProgressUpdate, tell

log = logging.getLogger(__name__)

VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]
#: done: ComfyUI said so; queue: the server's queue changed (ours may have been removed by
#: someone: the caller asks ``/queue``); closed: the socket went first.
Outcome = Literal["done", "queue", "closed"]


class PromptFollower:
    """Reads one prompt's websocket; the last step seen is kept between reads, so a preview
    after a queue change still says which step it shows."""

    def __init__(
        self, prompt_id: str, progress: ProgressCallback | None, *, verify: VerifyImages
    ) -> None:
        self._prompt_id = prompt_id
        self._progress = progress
        self._verify = verify
        self._step = self._steps = 0

    async def read(self, socket: aiohttp.ClientWebSocketResponse) -> Outcome:
        """Until our prompt is done, the server's queue changes, or the socket closes."""
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                try:
                    event = json.loads(message.data)
                except ValueError:
                    continue
                kind, data = _parts(event)
                if kind == "status":
                    return "queue"
                if data.get("prompt_id") != self._prompt_id:
                    continue
                if kind == "executing" and data.get("node") is None:
                    return "done"
                if kind == "progress" and self._progress is not None:
                    self._step, self._steps = _number(data.get("value")), _number(data.get("max"))
                    await tell(self._progress, _update(self._step, self._steps, None))
            elif message.type == aiohttp.WSMsgType.BINARY and self._progress is not None:
                preview = await _preview(message.data, self._verify)
                if preview is not None:
                    await tell(self._progress, _update(self._step, self._steps, preview))
            elif message.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR}:
                break
        return "closed"


def _parts(event: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(event, dict):
        return "", {}
    data = event.get("data")
    return str(event.get("type", "")), data if isinstance(data, dict) else {}


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _update(step: int, steps: int, preview: bytes | None) -> ProgressUpdate:
    fraction = min(step / steps, 1.0) if steps else 0.0
    text = f"step {step}/{steps}" if steps else "starting"
    return ProgressUpdate(fraction=fraction, text=text, step=step, steps=steps, preview=preview)


async def _preview(frame: bytes, verify: VerifyImages) -> bytes | None:
    """A preview frame's image, checked like any image the server sends; None if unusable."""
    parsed = preview_frame(frame)
    if parsed is None:
        return None
    try:
        await verify([parsed[1]])
    except ValueError as exc:
        log.debug("unusable ComfyUI preview ignored: %s", exc)
        return None
    return parsed[1]
