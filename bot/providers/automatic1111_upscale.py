"""AUTOMATIC1111's upscalers on the wire: ``GET /sdapi/v1/upscalers`` and
``POST /sdapi/v1/extra-single-image`` (web UI ``modules/api/api.py``, ``models.py``).

The server's answer to an upscaler it does not have is an assertion in its postprocessing
script, a 500 (an outage to this client, retried and failed over); so the operator's
``provider.upscaler`` is checked against the server's own list first, and a name that only
resizes (``None``, ``Lanczos``, ``Nearest``) is refused: a resize is no upscale.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

import pybase64

from bot.providers.automatic1111_wire import b64, json_object, objects
from bot.providers.errors import MalformedResponse, UnknownUpscaler
from bot.providers.upscale import A1111_DEFAULT_UPSCALER, A1111_FACTOR, PLAIN_RESIZES

UPSCALERS_PATH = "/sdapi/v1/upscalers"
EXTRAS_PATH = "/sdapi/v1/extra-single-image"


def upscaler_names(answer: Any) -> tuple[str, ...]:
    """The names in a ``/sdapi/v1/upscalers`` answer (``UpscalerItem`` objects)."""
    return tuple(item["name"] for item in objects(answer) if isinstance(item.get("name"), str))


def chosen_upscaler(configured: str, offered: Iterable[str]) -> str:
    """The operator's upscaler (``""``: the default), if the server has it and it upscales;
    else :class:`UnknownUpscaler` naming the key and the ones the server has."""
    name = configured or A1111_DEFAULT_UPSCALER
    real = [candidate for candidate in offered if candidate not in PLAIN_RESIZES]
    if name in real:
        return name
    raise UnknownUpscaler(
        upscaler=name,
        allowed=", ".join(real) or "(none)",
        detail=f"provider.upscaler {name!r} is not among the server's upscalers "
        f"({', '.join(real) or 'none'}); set provider.upscaler to one of them",
    )


def extras_body(image: bytes, upscaler: str) -> dict[str, Any]:
    """``ExtrasSingleImageRequest``: ``image`` enlarged ``A1111_FACTOR`` times by ``upscaler``,
    no face restoration, no second upscaler."""
    return {
        "image": b64(image),
        "resize_mode": 0,
        "upscaling_resize": A1111_FACTOR,
        "upscaler_1": upscaler,
        "upscaler_2": "None",
        "extras_upscaler_2_visibility": 0,
        "gfpgan_visibility": 0,
        "codeformer_visibility": 0,
        "show_extras_results": True,
    }


def upscaled_image(answer: bytes) -> bytes:
    """The image of an ``ExtrasSingleImageResponse`` (``image``: base64), decoded."""
    item = json_object(answer).get("image")
    if not isinstance(item, str) or not item:
        raise MalformedResponse(detail=f"{EXTRAS_PATH}: answer has no image")
    if item.startswith("data:"):
        item = item.split(",", 1)[-1]
    try:
        return pybase64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse(detail=f"{EXTRAS_PATH}: image is not valid base64") from None
