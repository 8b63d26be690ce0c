"""The fake AUTOMATIC1111's upscalers: ``GET /sdapi/v1/upscalers`` and ``POST
/sdapi/v1/extra-single-image``, as web UI 1.10 serves them.

* ``/upscalers`` lists ``shared.sd_upscalers`` as ``UpscalerItem`` objects: the plain resizes
  ("None", "Lanczos", "Nearest") first, then the model upscalers of a default install.
* ``extra-single-image`` takes an ``ExtrasSingleImageRequest`` (pydantic v1: unknown fields
  ignored, a bad number a 422 naming it) and runs ``postprocessing.run_extras`` under the same
  queue lock as generations. ``upscaler_1`` "None" leaves the image as it is; a name the server
  does not have fails the upscale script's assertion, which the API middleware answers as a 500
  ``{"error": "AssertionError", ..., "errors": "could not find upscaler named X"}``.
  The answer is ``{"html_info", "image"}`` (base64 PNG) at ``upscaling_resize`` times the size.

Pillow's resize stands in for the network; what a test checks is which image, which upscaler
and what size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from bot.testing import automatic1111_rules as rules


@dataclass(frozen=True)
class Upscaler:
    name: str
    model_name: str | None = None
    scale: float | None = 4

    def item(self) -> dict[str, Any]:
        """``UpscalerItem``."""
        path = None if self.model_name is None else f"/models/ESRGAN/{self.model_name}.pth"
        return {
            "name": self.name,
            "model_name": self.model_name,
            "model_path": path,
            "model_url": None,
            "scale": self.scale,
        }


UPSCALERS = (
    Upscaler("None", None, None),
    Upscaler("Lanczos", None, None),
    Upscaler("Nearest", None, None),
    Upscaler("ESRGAN_4x", "ESRGAN_4x"),
    Upscaler("LDSR", "LDSR"),
    Upscaler("R-ESRGAN 4x+", "RealESRGAN_x4plus"),
    Upscaler("R-ESRGAN 4x+ Anime6B", "RealESRGAN_x4plus_anime_6B"),
    Upscaler("SwinIR 4x", "SwinIR_4x"),
)

#: ``ExtrasSingleImageRequest`` (``ExtrasBaseRequest`` plus ``image``), in declaration order.
EXTRAS_FIELDS = rules.fields_of(
    (
        ("resize_mode", rules.integer, 0),
        ("show_extras_results", rules.boolean, True),
        ("gfpgan_visibility", rules.number, 0),
        ("codeformer_visibility", rules.number, 0),
        ("codeformer_weight", rules.number, 0),
        ("upscaling_resize", rules.number, 2),
        ("upscaling_resize_w", rules.integer, 512),
        ("upscaling_resize_h", rules.integer, 512),
        ("upscaling_crop", rules.boolean, True),
        ("upscaler_1", rules.text, "None"),
        ("upscaler_2", rules.text, "None"),
        ("extras_upscaler_2_visibility", rules.number, 0),
        ("upscale_first", rules.boolean, False),
        ("image", rules.text, ""),
    )
)
_UNIT = ("gfpgan_visibility", "codeformer_visibility", "codeformer_weight")


def limit_errors(values: dict[str, Any]) -> list[rules.Error]:
    """The ``Field`` constraints (``gt``, ``ge``, ``le``) pydantic v1 checks, as its 422s."""
    errors: list[rules.Error] = []
    if values["resize_mode"] not in (0, 1):
        errors.append(
            {
                "loc": ["body", "resize_mode"],
                "msg": "unexpected value; permitted: 0, 1",
                "type": "value_error.const",
                "ctx": {"given": values["resize_mode"], "permitted": [0, 1]},
            }
        )
    for name in (*_UNIT, "extras_upscaler_2_visibility"):
        if not 0 <= values[name] <= 1:
            kind, limit = ("ge", 0) if values[name] < 0 else ("le", 1)
            word = "greater than or equal to" if kind == "ge" else "less than or equal to"
            errors.append(
                {
                    "loc": ["body", name],
                    "msg": f"ensure this value is {word} {limit}",
                    "type": f"value_error.number.not_{kind}",
                    "ctx": {"limit_value": limit},
                }
            )
    if values["upscaling_resize"] <= 0:
        errors.append(
            {
                "loc": ["body", "upscaling_resize"],
                "msg": "ensure this value is greater than 0",
                "type": "value_error.number.not_gt",
                "ctx": {"limit_value": 0},
            }
        )
    return errors


class NoSuchUpscaler(Exception):
    """The postprocessing script's ``assert upscaler1 or (upscaler_1_name is None)``."""


def run_extras(
    image: Image.Image, values: dict[str, Any], upscalers: tuple[Upscaler, ...]
) -> Image.Image:
    """What ``postprocessing_upscale`` makes of ``image`` (resize mode 0 or 1)."""
    name = values["upscaler_1"]
    if name == "None":
        return image
    if not any(upscaler.name == name for upscaler in upscalers):
        raise NoSuchUpscaler(f"could not find upscaler named {name}")
    if values["resize_mode"] == 1:
        size = (values["upscaling_resize_w"], values["upscaling_resize_h"])
    else:
        scale = values["upscaling_resize"]
        size = (int(image.width * scale), int(image.height * scale))
    resample = Image.Resampling.NEAREST if name == "Nearest" else Image.Resampling.LANCZOS
    return image.convert("RGB").resize(size, resample)
