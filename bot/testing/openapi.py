"""Validate request bodies against the official OpenAPI documents in ../shared/specs.

The fakes call :func:`request_validator` once per operation and then validate every body they
receive, so a request the real service would reject fails the test that caused it. The specs are
optional: when the folder is absent (an installed bot running ``python -m bot demo``) or
``jsonschema`` is not installed (it comes with the ``test`` extra), :func:`load_spec` returns
``None`` and the fakes skip validation (tests that exist only to check the contract skip with a
reason instead). ``IMAGEBOT_SPECS_DIR`` points elsewhere than ``../shared/specs``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

#: The checkout's ``../shared/specs`` (the project's own layout), unless told otherwise.
SPECS_DIR = Path(
    os.environ.get("IMAGEBOT_SPECS_DIR")
    or Path(__file__).resolve().parents[2].parent / "shared" / "specs"
)


class SpecViolation(AssertionError):
    """A request body that the official spec rejects."""


@functools.cache
def load_spec(name: str) -> dict[str, Any] | None:
    """The spec ``name`` (e.g. ``"openai"``) with nullable fields made explicit, or None."""
    path = SPECS_DIR / f"{name}-openapi.json"
    if not path.is_file() or importlib.util.find_spec("jsonschema") is None:
        return None
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    _allow_nullable(doc)
    return doc


def _allow_nullable(node: Any) -> None:
    """Rewrite OpenAPI 3.0 ``nullable: true`` into JSON Schema that accepts null.

    The OpenAI document claims 3.1 but still uses ``nullable``, which JSON Schema ignores.
    """
    if isinstance(node, list):
        for item in node:
            _allow_nullable(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _allow_nullable(value)
    if node.pop("nullable", False) is True:
        original = {k: node.pop(k) for k in list(node) if k not in {"description", "default"}}
        node["anyOf"] = [original, {"type": "null"}]


#: How many bodies' answers a validator remembers (then it forgets them all and starts again).
REMEMBERED_BODIES = 256


class RequestValidator:
    """Validates bodies of one operation (path + method + content type) against a spec.

    One validator per operation serves the whole process (:func:`request_validator` is
    cached), and it remembers its answer for each body it saw: every bot a test starts syncs
    the same command list, whose validation against Discord's document alone took half a
    second of each such test. Validation is a pure function of the body, so a remembered
    answer is the answer; the key is the body's ``repr``, which tells apart every value a
    JSON or form body holds (``1``, ``1.0`` and ``True``; a list and a tuple).
    """

    def __init__(self, spec: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        import jsonschema  # only here: load_spec returned a spec, so it is installed
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        registry: Registry[Any] = Registry().with_resource("urn:spec", resource)
        self._schema: dict[str, Any] = _rebase_refs(copy.deepcopy(schema))
        self._validator = jsonschema.Draft202012Validator(self._schema, registry=registry)
        self.where = where
        self._answers: dict[str, list[str]] = {}

    @property
    def schema(self) -> dict[str, Any]:
        return self._schema

    def errors(self, body: Any) -> list[str]:
        key = repr(body)
        answer = self._answers.get(key)
        if answer is None:
            answer = [
                f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in self._validator.iter_errors(body)
            ]
            if len(self._answers) >= REMEMBERED_BODIES:
                self._answers.clear()
            self._answers[key] = answer
        return list(answer)

    def validate(self, body: Any) -> None:
        errors = self.errors(body)
        if errors:
            raise SpecViolation(f"{self.where} violates the official spec: " + "; ".join(errors))


def _rebase_refs(node: Any) -> Any:
    """Point local ``#/...`` references at the registered spec resource."""
    if isinstance(node, dict):
        return {
            k: (
                f"urn:spec{v}"
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else _rebase_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rebase_refs(v) for v in node]
    return node


@functools.cache
def request_validator(
    spec_name: str, path: str, method: str, content_type: str = "application/json"
) -> RequestValidator | None:
    """A validator for the request body of ``method path``, or None when the spec is absent."""
    spec = load_spec(spec_name)
    if spec is None:
        return None
    operation = spec["paths"][path][method.lower()]
    schema = operation["requestBody"]["content"][content_type]["schema"]
    return RequestValidator(spec, schema, f"{method.upper()} {path} ({content_type})")


@functools.cache
def schema_validator(spec_name: str, schema_name: str) -> RequestValidator | None:
    """A validator for ``#/components/schemas/<schema_name>``, or None when the spec is absent."""
    spec = load_spec(spec_name)
    if spec is None:
        return None
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return RequestValidator(spec, ref, schema_name)


def coerce_multipart_fields(schema: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Turn multipart text fields into the types the (resolved) schema declares.

    Multipart sends every value as a string; the spec declares ``n`` as an integer and so on.
    File parts are replaced by a placeholder string by the caller before this is applied.
    """
    properties = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, value in fields.items():
        declared = _declared_types(properties.get(key, {}))
        if isinstance(value, str):
            if "integer" in declared and value.lstrip("-").isdigit():
                value = int(value)
            elif "number" in declared:
                with contextlib.suppress(ValueError):
                    value = float(value)
            elif "boolean" in declared and value in {"true", "false"}:
                value = value == "true"
        out[key] = value
    return out


def _declared_types(prop: dict[str, Any]) -> set[str]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        # Only the OpenAI document sends multipart bodies (``partial_images`` is a reference).
        spec = load_spec("openai")
        name = ref.removeprefix("#/components/schemas/")
        prop = spec["components"]["schemas"].get(name, {}) if spec else {}
    types: set[str] = set()
    if isinstance(prop.get("type"), str):
        types.add(prop["type"])
    for key in ("anyOf", "oneOf"):
        for option in prop.get(key, []):
            types |= _declared_types(option)
    return types


def resolved_schema(spec_name: str, schema_name: str) -> dict[str, Any]:
    """``#/components/schemas/<schema_name>`` as a dict (for reading declared property types)."""
    spec = load_spec(spec_name)
    assert spec is not None, "spec not available"
    schema: dict[str, Any] = spec["components"]["schemas"][schema_name]
    return schema
