"""OpenAI's ``POST /moderations``: is a prompt (and, for the omni models, an image) flagged?

The check is free and goes to an OpenAI-type backend's base URL with its key, through that
backend's :class:`~bot.providers.client.ImagesClient` (the same session, timeouts, retries and
error mapping as the image calls; its 429s do not hold the image requests back). Whatever
backend makes the images, an OpenAI-type one checks them: see :func:`moderation_backend`.

Wire (the official spec's CreateModerationRequest/Response): ``input`` is a string, or for
the ``omni-moderation-*`` models an array of ``{"type": "text", "text"}`` and
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` parts; the answer
has ``results[]`` each with ``flagged`` and ``categories`` (name -> bool).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pybase64

from bot.config import DEFAULT_BACKEND
from bot.providers.client import ImagesClient
from bot.providers.errors import MalformedResponse
from bot.providers.registry import BackendSet

#: Models whose names start so take images as well as text.
IMAGE_MODELS_PREFIX = "omni-moderation"


@dataclass(frozen=True)
class ModerationVerdict:
    """What the check said: flagged or not, and the flagged categories (sorted, the API's
    names such as ``violence`` or ``harassment/threatening``)."""

    flagged: bool
    categories: tuple[str, ...] = ()


class ModerationClient:
    """The moderation endpoint of one OpenAI-type backend, with one moderation model."""

    def __init__(self, backend: ImagesClient, model: str) -> None:
        self.backend = backend
        self.model = model

    def __repr__(self) -> str:
        return f"ModerationClient(backend={self.backend.name!r}, model={self.model!r})"

    @property
    def takes_images(self) -> bool:
        """Whether the model classifies images too (omni-moderation does; text-moderation not)."""
        return self.model.startswith(IMAGE_MODELS_PREFIX)

    async def check(self, prompt: str, image_png: bytes | None = None) -> ModerationVerdict | None:
        """Classify ``prompt`` and, where the model takes images, ``image_png``.

        None when there is nothing this model can check (a variation's image for a text-only
        model): no request is made. Raises the provider's typed errors when the check fails.
        """
        if image_png is not None and self.takes_images:
            # Megabytes of base64 text: made in a thread, so the event loop stays free.
            encoded = await asyncio.to_thread(self._encoded, prompt, image_png)
        else:
            encoded = self._encoded(prompt, image_png)
        if encoded is None:
            return None
        payload = await self.backend.post_json("/moderations", encoded)
        return verdict_of(payload)

    def _encoded(self, prompt: str, image_png: bytes | None) -> bytes | None:
        body = self.request_body(prompt, image_png)
        return None if body is None else json.dumps(body, ensure_ascii=False).encode()

    def request_body(self, prompt: str, image_png: bytes | None) -> dict[str, Any] | None:
        """The JSON body: the prompt as a string, or text and image parts for an omni model."""
        text = prompt.strip()
        if image_png is None or not self.takes_images:
            return {"model": self.model, "input": text} if text else None
        url = "data:image/png;base64," + pybase64.b64encode(image_png).decode("ascii")
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        parts.append({"type": "image_url", "image_url": {"url": url}})
        return {"model": self.model, "input": parts}


def verdict_of(payload: dict[str, Any]) -> ModerationVerdict:
    """The answer read: flagged when any result is, with every category flagged in any."""
    results = payload.get("results")
    if not isinstance(results, list) or not results:
        raise MalformedResponse(detail="/moderations: answer has no 'results'")
    flagged = False
    categories: set[str] = set()
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
            raise MalformedResponse(detail="/moderations: a result has no 'flagged'")
        flagged = flagged or result["flagged"]
        named = result.get("categories")
        if isinstance(named, dict):
            categories.update(name for name, on in named.items() if on is True)
    return ModerationVerdict(flagged, tuple(sorted(categories)) if flagged else ())


def moderation_backend(backends: BackendSet) -> ImagesClient | None:
    """The OpenAI-type backend that checks: ``[provider]`` when it is one, else the first
    ``[backends.NAME]`` of type openai; None when none is configured."""
    names = [DEFAULT_BACKEND, *(name for name in backends.names() if name != DEFAULT_BACKEND)]
    for name in names:
        backend = backends.backends.get(name)
        if isinstance(backend, ImagesClient):
            return backend
    return None
