"""What the fake AUTOMATIC1111 accepts, as its own source defines it (web UI 1.10, FastAPI 0.94).

The request bodies of ``/sdapi/v1/txt2img`` and ``/img2img`` are pydantic v1 models generated
from the ``__init__`` parameters of ``StableDiffusionProcessingTxt2Img``/``Img2Img``
(``modules/api/models.py``): every field optional, pydantic's default ``extra = ignore``, so an
unknown field is dropped without a word and only a mistyped one is refused. A refusal is
FastAPI's 422 ``{"detail": [{"loc": ["body", field], "msg": ..., "type": ...}]}`` with pydantic
v1's wording, one entry per bad field in field order. The checks here mirror pydantic v1's
coercions (``"20"`` is a fine integer, ``2.7`` becomes 2, ``"abc"`` is refused).

Samplers and checkpoints are the other two tables whose quiet fallbacks trip clients:
``sd_samplers.get_sampler_and_scheduler`` swaps an unknown (or wrongly cased) sampler for the
first one, and ``process_images`` drops an unknown ``sd_model_checkpoint`` override.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Error = dict[str, Any]

_TRUE = {1, "1", "on", "t", "true", "y", "yes"}
_FALSE = {0, "0", "off", "f", "false", "n", "no"}


class _Invalid(Exception):
    def __init__(self, msg: str, kind: str, loc: tuple[Any, ...] = ()) -> None:
        super().__init__(msg)
        self.msg, self.kind, self.loc = msg, kind, loc


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise _Invalid("value is not a valid integer", "type_error.integer") from None


def _float(value: Any) -> float:
    if isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Invalid("value is not a valid float", "type_error.float") from None


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise _Invalid("str type expected", "type_error.str")


def _bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        value = value.lower()
    try:
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    except TypeError:  # unhashable: a list or an object
        pass
    raise _Invalid("value could not be parsed to a boolean", "type_error.bool")


def _dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _Invalid("value is not a valid dict", "type_error.dict")


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    raise _Invalid("value is not a valid list", "type_error.list")


def _strings(value: Any) -> list[str]:
    items = _list(value)
    out = []
    for index, item in enumerate(items):
        try:
            out.append(_str(item))
        except _Invalid as exc:
            raise _Invalid(exc.msg, exc.kind, (index,)) from None
    return out


def _any(value: Any) -> Any:
    return value


Coerce = Callable[[Any], Any]

#: ``StableDiffusionProcessing.__init__`` minus ``API_NOT_ALLOWED``, in declaration order.
_COMMON: tuple[tuple[str, Coerce, Any], ...] = (
    ("prompt", _str, ""),
    ("negative_prompt", _str, ""),
    ("styles", _strings, None),
    ("seed", _int, -1),
    ("subseed", _int, -1),
    ("subseed_strength", _float, 0),
    ("seed_resize_from_h", _int, -1),
    ("seed_resize_from_w", _int, -1),
    ("sampler_name", _str, None),
    ("scheduler", _str, None),
    ("batch_size", _int, 1),
    ("n_iter", _int, 1),
    ("steps", _int, 50),
    ("cfg_scale", _float, 7.0),
    ("width", _int, 512),
    ("height", _int, 512),
    ("restore_faces", _bool, None),
    ("tiling", _bool, None),
    ("do_not_save_samples", _bool, False),
    ("do_not_save_grid", _bool, False),
    ("eta", _float, None),
    ("denoising_strength", _float, 0),
    ("s_min_uncond", _float, None),
    ("s_churn", _float, None),
    ("s_tmax", _float, None),
    ("s_tmin", _float, None),
    ("s_noise", _float, None),
    ("override_settings", _dict, None),
    ("override_settings_restore_afterwards", _bool, True),
    ("refiner_checkpoint", _str, None),
    ("refiner_switch_at", _float, None),
    ("disable_extra_networks", _bool, False),
    ("firstpass_image", _str, None),
    ("comments", _dict, None),
)
_TXT2IMG: tuple[tuple[str, Coerce, Any], ...] = (
    ("enable_hr", _bool, False),
    ("denoising_strength", _float, 0.75),
    ("firstphase_width", _int, 0),
    ("firstphase_height", _int, 0),
    ("hr_scale", _float, 2.0),
    ("hr_upscaler", _str, None),
    ("hr_second_pass_steps", _int, 0),
    ("hr_resize_x", _int, 0),
    ("hr_resize_y", _int, 0),
    ("hr_checkpoint_name", _str, None),
    ("hr_sampler_name", _str, None),
    ("hr_scheduler", _str, None),
    ("hr_prompt", _str, ""),
    ("hr_negative_prompt", _str, ""),
)
_IMG2IMG: tuple[tuple[str, Coerce, Any], ...] = (
    ("init_images", _list, None),
    ("resize_mode", _int, 0),
    ("denoising_strength", _float, 0.75),
    ("image_cfg_scale", _float, None),
    ("mask", _str, None),
    ("mask_blur_x", _int, 4),
    ("mask_blur_y", _int, 4),
    ("mask_blur", _int, None),
    ("inpainting_fill", _int, 0),
    ("inpaint_full_res", _bool, True),
    ("inpaint_full_res_padding", _int, 0),
    ("inpainting_mask_invert", _int, 0),
    ("initial_noise_multiplier", _float, None),
    ("latent_mask", _str, None),
    ("include_init_images", _bool, False),
)
#: The ``additional_fields`` the API adds to both models.
_API: tuple[tuple[str, Coerce, Any], ...] = (
    ("sampler_index", _str, "Euler"),
    ("script_name", _str, None),
    ("script_args", _list, []),
    ("send_images", _bool, True),
    ("save_images", _bool, False),
    ("alwayson_scripts", _dict, {}),
    ("force_task_id", _str, None),
    ("infotext", _str, None),
)


def _fields(*groups: tuple[tuple[str, Coerce, Any], ...]) -> dict[str, tuple[Coerce, Any]]:
    fields: dict[str, tuple[Coerce, Any]] = {}
    for group in groups:
        for name, coerce, default in group:
            fields[name] = (coerce, default)  # a later group's default wins, in the first place
    return fields


#: The coercions and the field table builder, for the other request models (extras).
integer, number, text, boolean, fields_of = _int, _float, _str, _bool, _fields

TXT2IMG_FIELDS = _fields(_COMMON, _TXT2IMG, _API)
IMG2IMG_FIELDS = _fields(_COMMON, _IMG2IMG, _API)


#: ``modules.progress.ProgressRequest``.
INTERNAL_PROGRESS_FIELDS: dict[str, tuple[Coerce, Any]] = {
    "id_task": (_str, None),
    "id_live_preview": (_int, -1),
    "live_preview": (_bool, True),
}


def query_flag(value: str | None) -> bool:
    """A boolean query parameter as FastAPI reads one (absent or unreadable = False here)."""
    return value is not None and value.lower() in {"1", "on", "t", "true", "y", "yes"}


def parse_body(
    body: Any, fields: dict[str, tuple[Coerce, Any]]
) -> tuple[dict[str, Any], list[Error], list[str]]:
    """(values with defaults, 422 errors, unknown fields the real server silently ignores)."""
    if not isinstance(body, dict):
        return (
            {},
            [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}],
            [],
        )
    values: dict[str, Any] = {}
    errors: list[Error] = []
    for name, (coerce, default) in fields.items():
        if name not in body or body[name] is None:
            values[name] = default
            continue
        try:
            values[name] = coerce(body[name])
        except _Invalid as exc:
            errors.append({"loc": ["body", name, *exc.loc], "msg": exc.msg, "type": exc.kind})
    unknown = [name for name in body if name not in fields]
    return values, errors, unknown


@dataclass(frozen=True)
class Sampler:
    name: str
    aliases: tuple[str, ...]
    options: dict[str, str]

    def item(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "options": dict(self.options)}


#: ``sd_samplers.all_samplers`` of 1.10 (k-diffusion, then timesteps, then LCM); the first is
#: what an unknown name silently becomes.
SAMPLERS = (
    Sampler("DPM++ 2M", ("k_dpmpp_2m",), {"scheduler": "karras"}),
    Sampler("DPM++ SDE", ("k_dpmpp_sde",), {"scheduler": "karras", "second_order": "True"}),
    Sampler(
        "DPM++ 2M SDE", ("k_dpmpp_2m_sde",), {"scheduler": "exponential", "brownian_noise": "True"}
    ),
    Sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), {"scheduler": "exponential"}),
    Sampler("DPM++ 2S a", ("k_dpmpp_2s_a",), {"scheduler": "karras", "uses_ensd": "True"}),
    Sampler("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), {"scheduler": "exponential"}),
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), {"uses_ensd": "True"}),
    Sampler("Euler", ("k_euler",), {}),
    Sampler("LMS", ("k_lms",), {}),
    Sampler("Heun", ("k_heun",), {"second_order": "True"}),
    Sampler("DPM2", ("k_dpm_2",), {"scheduler": "karras", "discard_next_to_last_sigma": "True"}),
    Sampler("DPM2 a", ("k_dpm_2_a",), {"scheduler": "karras", "uses_ensd": "True"}),
    Sampler("DPM fast", ("k_dpm_fast",), {"uses_ensd": "True"}),
    Sampler("DPM adaptive", ("k_dpm_ad",), {"uses_ensd": "True"}),
    Sampler("Restart", ("restart",), {"scheduler": "karras", "second_order": "True"}),
    Sampler("DDIM", ("ddim",), {}),
    Sampler("DDIM CFG++", ("ddim_cfgpp",), {}),
    Sampler("PLMS", ("plms",), {}),
    Sampler("UniPC", ("unipc",), {}),
    Sampler("LCM", ("k_lcm",), {}),
)
#: Labels a sampler name may end with (``"DPM++ 2M Karras"``), as ``sd_schedulers`` lists them.
SCHEDULERS = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform")


def resolve_sampler(name: str | None) -> str:
    """What ``get_sampler_and_scheduler`` makes of ``name``: exact, case-sensitive names only."""
    wanted = name or SAMPLERS[0].name
    for label in SCHEDULERS:
        if wanted.endswith(" " + label):
            wanted = wanted[: -len(label) - 1]
            break
    known = {sampler.name for sampler in SAMPLERS}
    return wanted if wanted in known else SAMPLERS[0].name


@dataclass(frozen=True)
class Checkpoint:
    """One entry of ``sd_models.checkpoints_list`` and the aliases it is known by."""

    name: str  # the file name relative to models/Stable-diffusion
    shorthash: str
    sha256: str

    @property
    def model_name(self) -> str:
        return self.name.rsplit(".", 1)[0].replace("/", "_").replace("\\", "_")

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]"

    @property
    def aliases(self) -> frozenset[str]:
        return frozenset({self.title, self.name, self.model_name, self.shorthash, self.sha256})

    def item(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.shorthash,
            "sha256": self.sha256,
            "filename": f"/stable-diffusion-webui/models/Stable-diffusion/{self.name}",
            "config": None,
        }


CHECKPOINTS = (
    Checkpoint(
        "v1-5-pruned-emaonly.safetensors",
        "6ce0161689",
        "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
    ),
    Checkpoint(
        "sd_xl_base_1.0.safetensors",
        "31e35c80fc",
        "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
    ),
)


def find_checkpoint(checkpoints: tuple[Checkpoint, ...], name: Any) -> Checkpoint | None:
    """``sd_models.checkpoint_aliases.get(name)``."""
    return next((c for c in checkpoints if isinstance(name, str) and name in c.aliases), None)
