"""The fake ComfyUI's node types and its graph validation, as ``nodes.py`` and ``execution.py``
define them.

Each node type is described the way ``GET /object_info`` shows it (required inputs as
``[type, options]``, a list for a choice, outputs, ``output_node``), and ``validate_prompt``
walks a submitted graph from its output nodes exactly as ComfyUI's does: the same error
``type``/``message``/``details`` per input, ``node_errors`` only for nodes with reasons of
their own, 400 answers whose ``error`` says why the whole prompt was refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_RESOLUTION = 16384
SAMPLERS = (
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpmpp_2m",
    "dpmpp_sde",
    "dpmpp_2m_sde",
    "ddim",
    "uni_pc",
)
SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta")
CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")
#: The files in ``models/upscale_models`` (what UpscaleModelLoader lists).
UPSCALE_MODELS = ("RealESRGAN_x4plus.pth", "4x-UltraSharp.pth", "RealESRGAN_x2plus.pth")
CHANNELS = ("alpha", "red", "green", "blue")


@dataclass(frozen=True)
class NodeType:
    name: str
    required: Mapping[str, Sequence[Any]]
    outputs: tuple[str, ...]
    output_node: bool = False
    optional: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    #: Inputs checked by the node's own VALIDATE_INPUTS instead of the choice list.
    validates_itself: frozenset[str] = frozenset()
    category: str = ""

    def info(self) -> dict[str, Any]:
        """This node in ``GET /object_info``."""
        return {
            "input": {
                "required": {k: list(v) for k, v in self.required.items()},
                "optional": {k: list(v) for k, v in self.optional.items()},
            },
            "input_order": {"required": list(self.required), "optional": list(self.optional)},
            "output": list(self.outputs),
            "output_is_list": [False] * len(self.outputs),
            "output_name": list(self.outputs),
            "name": self.name,
            "display_name": self.name,
            "description": "",
            "python_module": "nodes",
            "category": self.category,
            "output_node": self.output_node,
        }


def _int(default: int, low: int, high: int, step: int = 1) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": low, "max": high, "step": step})


def node_types(
    checkpoints: Sequence[str],
    inputs: Sequence[str],
    upscale_models: Sequence[str] = UPSCALE_MODELS,
) -> dict[str, NodeType]:
    """The node types the shipped workflows use (and a few neighbours), with the server's
    current lists: its checkpoints, upscale models and the files in its input folder."""
    files = sorted(inputs)
    image = ([*files], {"image_upload": True})
    latent = ("LATENT",)
    types = [
        NodeType(
            "CheckpointLoaderSimple",
            {"ckpt_name": (list(checkpoints), {"tooltip": "The checkpoint to load."})},
            ("MODEL", "CLIP", "VAE"),
            category="loaders",
        ),
        NodeType(
            "CLIPTextEncode",
            {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)},
            ("CONDITIONING",),
            category="conditioning",
        ),
        NodeType(
            "EmptyLatentImage",
            {
                "width": _int(512, 16, MAX_RESOLUTION, 8),
                "height": _int(512, 16, MAX_RESOLUTION, 8),
                "batch_size": _int(1, 1, 4096),
            },
            ("LATENT",),
            category="latent",
        ),
        NodeType(
            "KSampler",
            {
                "model": ("MODEL",),
                "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF),
                "steps": _int(20, 1, 10000),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1}),
                "sampler_name": (list(SAMPLERS),),
                "scheduler": (list(SCHEDULERS),),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": latent,
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            },
            ("LATENT",),
            category="sampling",
        ),
        NodeType("VAEDecode", {"samples": latent, "vae": ("VAE",)}, ("IMAGE",), category="latent"),
        NodeType("VAEEncode", {"pixels": ("IMAGE",), "vae": ("VAE",)}, ("LATENT",)),
        NodeType(
            "VAEEncodeForInpaint",
            {
                "pixels": ("IMAGE",),
                "vae": ("VAE",),
                "mask": ("MASK",),
                "grow_mask_by": _int(6, 0, 64),
            },
            ("LATENT",),
        ),
        NodeType("SetLatentNoiseMask", {"samples": latent, "mask": ("MASK",)}, ("LATENT",)),
        NodeType("RepeatLatentBatch", {"samples": latent, "amount": _int(1, 1, 64)}, ("LATENT",)),
        NodeType(
            "LoadImage", {"image": image}, ("IMAGE", "MASK"), validates_itself=frozenset({"image"})
        ),
        NodeType(
            "LoadImageMask",
            {"image": image, "channel": (list(CHANNELS),)},
            ("MASK",),
            validates_itself=frozenset({"image"}),
        ),
        NodeType(
            "SaveImage",
            {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
            (),
            output_node=True,
            category="image",
        ),
        NodeType("PreviewImage", {"images": ("IMAGE",)}, (), output_node=True, category="image"),
        # comfy_extras/nodes_upscale_model.py
        NodeType(
            "UpscaleModelLoader",
            {"model_name": (list(upscale_models),)},
            ("UPSCALE_MODEL",),
            category="loaders",
        ),
        NodeType(
            "ImageUpscaleWithModel",
            {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)},
            ("IMAGE",),
            category="image/upscaling",
        ),
    ]
    return {t.name: t for t in types}


def _error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


Validated = dict[str, tuple[bool, list[dict[str, Any]]]]


def validate_inputs(
    prompt: Mapping[str, Any],
    node_id: str,
    types: Mapping[str, NodeType],
    inputs: frozenset[str],
    validated: Validated,
) -> tuple[bool, list[dict[str, Any]]]:
    """``execution.validate_inputs``: one node's reasons; linked nodes first."""
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    kind = types[node["class_type"]]
    given = node["inputs"]
    errors: list[dict[str, Any]] = []
    valid = True
    for name, info in kind.required.items():
        if name not in given:
            errors.append(
                _error("required_input_missing", "Required input is missing", name, input_name=name)
            )
            continue
        value, expected = given[name], info[0]
        extra = {"input_name": name, "input_config": list(info), "received_value": value}
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(
                    _error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name,
                        **extra,
                    )
                )
                continue
            source = str(value[0])
            if source not in prompt or prompt[source].get("class_type") not in types:
                reason = _error(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    repr(source),
                    input_name=name,
                    linked_node=value,
                )
                validated[source] = (False, [reason])
                valid = False
                continue
            outputs = types[prompt[source]["class_type"]].outputs
            slot = value[1]
            received = outputs[slot] if isinstance(slot, int) and 0 <= slot < len(outputs) else None
            if received != expected:
                details = f"{name}, received_type({received}) mismatch input_type({expected})"
                errors.append(
                    _error(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        details,
                        input_name=name,
                        received_type=received,
                        linked_node=value,
                    )
                )
                continue
            if not validate_inputs(prompt, source, types, inputs, validated)[0]:
                valid = False
            continue
        try:
            if expected == "INT":
                value = int(value)
            elif expected == "FLOAT":
                value = float(value)
            elif expected == "STRING":
                value = str(value)
        except (TypeError, ValueError) as exc:
            errors.append(
                _error(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {expected} value",
                    f"{name}, {value}, {exc}",
                    **extra,
                )
            )
            continue
        limits = info[1] if len(info) > 1 and isinstance(info[1], dict) else {}
        if "min" in limits and value < limits["min"]:
            message = f"Value {value} smaller than min of {limits['min']}"
            errors.append(_error("value_smaller_than_min", message, name, **extra))
            continue
        if "max" in limits and value > limits["max"]:
            message = f"Value {value} bigger than max of {limits['max']}"
            errors.append(_error("value_bigger_than_max", message, name, **extra))
            continue
        if name in kind.validates_itself:
            if value not in inputs:
                errors.append(
                    _error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"{name} - Invalid image file: {value}",
                        **extra,
                    )
                )
            continue
        if isinstance(expected, list) and value not in expected:
            listed = f"(list of length {len(expected)})" if len(expected) > 20 else str(expected)
            errors.append(
                _error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {listed}",
                    **extra,
                )
            )
    result = (valid and not errors, errors)
    validated[node_id] = result
    return result


def validate_prompt(
    prompt: Any, types: Mapping[str, NodeType], inputs: frozenset[str]
) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
    """``execution.validate_prompt``: (error or None, output node ids to run, node_errors)."""
    if not isinstance(prompt, dict):
        return _error("invalid_prompt", "Invalid prompt", "prompt is not an object"), [], {}
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
        kind = types.get(node["class_type"])
        if kind is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            error = _error(
                "invalid_prompt",
                message,
                f"Node ID '#{node_id}'",
                node_id=node_id,
                class_type=node["class_type"],
            )
            return error, [], {}
        if not isinstance(node.get("inputs"), dict):
            node["inputs"] = {}
        if kind.output_node:
            outputs.append(node_id)
    if not outputs:
        return _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    validated: Validated = {}
    for output in outputs:
        ok, reasons = validate_inputs(prompt, output, types, inputs, validated)
        if ok:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (node_ok, node_reasons) in validated.items():
            if node_ok or not node_reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": node_reasons,
                    "dependent_outputs": [],
                    "class_type": prompt.get(node_id, {}).get("class_type", ""),
                },
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(
            f"{reason['message']}: {reason['details']}"
            for _, reasons in failed
            for reason in reasons
        )
        error = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return error, [], node_errors
    return None, good, node_errors
