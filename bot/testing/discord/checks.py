"""Request bodies: parsing (JSON or multipart), the official spec, and Discord's real limits.

Every problem is recorded as a readable line in ``FakeDiscord.spec_violations`` and answered the way
Discord answers it (400 code 50035 "Invalid Form Body" with a nested ``errors`` tree, 50006 for an
empty message, 413 code 40005 for uploads over the limit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiohttp import web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from ..openapi import RequestValidator, request_validator

ErrorPath = tuple[str | int, ...]

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_FILES = 10
MAX_CUSTOM_ID = 100
EMBED_TOTAL = 6000
EMBED_LIMITS = {"title": 256, "description": 4096}
MODAL_TITLE = 45
TEXT_INPUT_MAX = 4000


@dataclass
class Upload:
    index: int
    filename: str
    data: bytes = field(repr=False)


@dataclass
class Body:
    json: Any = None
    files: list[Upload] = field(default_factory=list)
    multipart: bool = False

    @property
    def upload_size(self) -> int:
        return sum(len(f.data) for f in self.files)


class Rejection(Exception):
    """An error answer in Discord's shape."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


async def read_body(request: web.Request) -> Body:
    """JSON, or multipart with ``payload_json`` and ``files[n]`` parts, as discord.py sends them.

    A multipart body is read whole, then cut at its boundaries: aiohttp's part reader takes
    8 KB at a time, 4-5 ms of the fake's CPU for one 1.6 MB result, time the benchmarks would
    count as the bot's (real Discord's intake is not the bot's cost)."""
    raw = await _read_whole(request)
    if request.content_type == "multipart/form-data":
        return _multipart(raw, request.headers.get("Content-Type", ""))
    return Body(json=_loads(raw) if raw else None)


async def _read_whole(request: web.Request) -> bytes:
    """The body as the socket delivers it, joined once (``request.read`` copies each chunk into
    a growing buffer, then the whole into bytes: a millisecond more for a 1.6 MB upload)."""
    limit, total, chunks = request.client_max_size, 0, []
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if limit and total > limit:
            raise Rejection(413, 40005, "Request entity too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _multipart(raw: bytes, content_type: str) -> Body:
    """The parts of a ``multipart/form-data`` body (RFC 7578), each as sent (no decoding)."""
    boundary = _boundary(content_type)
    if not boundary:
        raise Rejection(400, 50035, "Invalid Form Body", {"<body>": _err("NO_BOUNDARY")})
    # Each delimiter is CRLF "--boundary"; the first may open the body without the CRLF.
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    first = -2 if raw.startswith(delimiter[2:]) else raw.find(delimiter)
    start = first + len(delimiter)
    if first == -1:
        raise Rejection(400, 50035, "Invalid Form Body", {"<body>": _err("UNTERMINATED")})
    body = Body(multipart=True)
    while not raw.startswith(b"--", start):  # "--" after a delimiter closes the body
        end = raw.find(delimiter, start)
        head_end = raw.find(b"\r\n\r\n", start, end)
        if end < 0 or head_end < 0:
            raise Rejection(400, 50035, "Invalid Form Body", {"<body>": _err("UNTERMINATED")})
        head, data = raw[start:head_end], raw[head_end + 4 : end]  # the part's one copy
        start = end + len(delimiter)
        headers = _part_headers(head)
        if headers.get("content-type", "").lower().startswith("multipart/"):
            raise Rejection(400, 50035, "Invalid Form Body", {"<body>": _err("NESTED")})
        _, params = parse_content_disposition(headers.get("content-disposition"))
        name = params.get("name", "")
        if name == "payload_json":
            body.json = _loads(data)
        elif name.startswith("files[") and name.endswith("]") and name[6:-1].isdigit():
            index = int(name[6:-1])
            filename = content_disposition_filename(params, "filename")
            body.files.append(Upload(index, filename or f"file{index}", data))
        else:
            raise Rejection(400, 50035, "Invalid Form Body", {name: _err("UNKNOWN_FIELD")})
    return body


def _boundary(content_type: str) -> str | None:
    message = Message()
    message["content-type"] = content_type
    found = message.get_param("boundary")
    return found if isinstance(found, str) else None


def _part_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, colon, value = line.partition(":")
        if colon:
            headers[key.strip().lower()] = value.strip()
    return headers


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise Rejection(400, 50109, "The request body contains invalid JSON.") from None


def _err(code: str, message: str = "Invalid value.") -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


class BodyChecker:
    """Validates bodies against the spec (when present) and Discord's limits."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        self._validators: dict[tuple[str, str], RequestValidator | None] = {}

    def _validator(self, method: str, spec_path: str) -> RequestValidator | None:
        key = (method, spec_path)
        if key not in self._validators:
            self._validators[key] = request_validator("discord", spec_path, method)
        return self._validators[key]

    def check(
        self,
        method: str,
        spec_path: str,
        body: Body,
        *,
        kind: str | None = None,
        upload_limit: int | None = None,
        creates_message: bool = False,
    ) -> None:
        """Raise :class:`Rejection` (after recording it) when Discord would refuse ``body``."""
        where = f"{method} {spec_path}"
        problems: list[tuple[ErrorPath, str, str]] = []
        validator = self._validator(method, spec_path)
        if validator is not None:
            for line in validator.errors(_normalized(body.json)):
                where_in_body, _, text = line.partition(": ")
                parts = () if where_in_body == "<body>" else tuple(where_in_body.split("/"))
                problems.append((parts, "SPEC_VIOLATION", _short(text)))
        message, prefix = _message_part(body.json, kind)
        if message is not None:
            problems.extend(message_problems(message, prefix, len(body.files)))
        if kind == "callback" and isinstance(body.json, dict) and body.json.get("type") == 9:
            problems.extend(modal_problems(body.json.get("data") or {}))
        if problems:
            for path, _, text in problems:
                self.violations.append(f"{where}: {'/'.join(map(str, path)) or '<body>'}: {text}")
            raise Rejection(400, 50035, "Invalid Form Body", _error_tree(problems))
        if upload_limit is not None and body.upload_size > upload_limit:
            self.violations.append(
                f"{where}: upload of {body.upload_size} bytes exceeds the limit of {upload_limit}"
            )
            raise Rejection(413, 40005, "Request entity too large")
        if creates_message and message is not None and _is_empty(message, body):
            self.violations.append(f"{where}: empty message")
            raise Rejection(400, 50006, "Cannot send an empty message")


def _message_part(payload: Any, kind: str | None) -> tuple[dict[str, Any] | None, ErrorPath]:
    if not isinstance(payload, dict):
        return None, ()
    if kind == "message":
        return payload, ()
    if kind == "callback" and payload.get("type") in (4, 7):
        data = payload.get("data")
        return (data if isinstance(data, dict) else {}), ("data",)
    return None, ()


SNOWFLAKE_KEYS = {"recipient_id", "message_id", "channel_id", "guild_id", "sku_id"}
SNOWFLAKE_LISTS = {"users", "roles", "sticker_ids", "applied_tags"}
ID_LISTS = {"attachments", "default_values"}


def _normalized(payload: Any, parent: str = "") -> Any:
    """Undo the spec's strictness about number types where Discord itself is lenient.

    discord.py sends snowflakes such as ``attachments[].id`` (a small int in multipart uploads),
    ``message_reference.message_id``, ``allowed_mentions.users`` and ``recipient_id`` as JSON
    integers, and ``default_member_permissions`` as a string; the real API accepts both forms
    while the spec declares only one.
    """
    if isinstance(payload, list):
        if parent in SNOWFLAKE_LISTS:
            return [str(v) if isinstance(v, int) else v for v in payload]
        items = [_normalized(v, parent) for v in payload]
        if parent in ID_LISTS:
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("id"), int):
                    item["id"] = str(item["id"])
        return items
    if not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in SNOWFLAKE_KEYS and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif key == "default_member_permissions" and isinstance(value, str) and value.isdigit():
            value = int(value)
        out[key] = _normalized(value, key)
    return out


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_empty(message: dict[str, Any], body: Body) -> bool:
    keys = ("content", "embeds", "components", "sticker_ids", "poll", "attachments")
    return not body.files and not any(message.get(k) for k in keys)


def _error_tree(problems: list[tuple[ErrorPath, str, str]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, code, message in problems:
        node = tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return tree


def _max_len(path: ErrorPath, value: Any, limit: int) -> list[tuple[ErrorPath, str, str]]:
    if isinstance(value, str | list) and len(value) > limit:
        return [(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")]
    return []


def message_problems(
    msg: dict[str, Any], prefix: ErrorPath = (), file_count: int = 0
) -> list[tuple[ErrorPath, str, str]]:
    """Limits Discord enforces on a message body that the spec does not (or not for bots)."""
    out = _max_len((*prefix, "content"), msg.get("content"), MAX_CONTENT)
    embeds = msg.get("embeds") or []
    out += _max_len((*prefix, "embeds"), embeds, MAX_EMBEDS)
    total = 0
    for i, embed in enumerate(embeds if isinstance(embeds, list) else []):
        if not isinstance(embed, dict):
            continue
        where = (*prefix, "embeds", i)
        for key, limit in EMBED_LIMITS.items():
            out += _max_len((*where, key), embed.get(key), limit)
        fields = embed.get("fields") or []
        out += _max_len((*where, "fields"), fields, 25)
        for j, fld in enumerate(fields):
            out += _max_len((*where, "fields", j, "name"), fld.get("name"), 256)
            out += _max_len((*where, "fields", j, "value"), fld.get("value"), 1024)
            total += len(fld.get("name") or "") + len(fld.get("value") or "")
        footer, author = embed.get("footer") or {}, embed.get("author") or {}
        out += _max_len((*where, "footer", "text"), footer.get("text"), 2048)
        out += _max_len((*where, "author", "name"), author.get("name"), 256)
        total += sum(len(embed.get(k) or "") for k in EMBED_LIMITS)
        total += len(footer.get("text") or "") + len(author.get("name") or "")
    if total > EMBED_TOTAL:
        message = f"Embed size exceeds maximum size of {EMBED_TOTAL}"
        out.append(((*prefix, "embeds"), "MAX_EMBED_SIZE_EXCEEDED", message))
    out += _max_len((*prefix, "attachments"), msg.get("attachments") or [], MAX_FILES)
    if file_count > MAX_FILES:
        out.append(((*prefix, "files"), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."))
    out += component_problems(msg.get("components") or [], (*prefix, "components"))
    return out


def _walk(components: list[Any], path: ErrorPath) -> Iterator[tuple[ErrorPath, dict[str, Any]]]:
    for i, comp in enumerate(components):
        if not isinstance(comp, dict):
            continue
        yield (*path, i), comp
        yield from _walk(comp.get("components") or [], (*path, i, "components"))
        for key in ("component", "accessory"):
            if isinstance(comp.get(key), dict):
                yield from _walk([comp[key]], (*path, i, key))


def component_problems(components: list[Any], path: ErrorPath) -> list[tuple[ErrorPath, str, str]]:
    out: list[tuple[ErrorPath, str, str]] = []
    seen: set[str] = set()
    for where, comp in _walk(components, path):
        custom_id = comp.get("custom_id")
        if not isinstance(custom_id, str):
            continue
        out += _max_len((*where, "custom_id"), custom_id, MAX_CUSTOM_ID)
        if custom_id in seen:
            message = "Component custom id cannot be duplicated"
            out.append(((*where, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", message))
        seen.add(custom_id)
        if comp.get("type") == 4:
            out += _max_len((*where, "label"), comp.get("label"), 45)
            max_length = comp.get("max_length")
            if isinstance(max_length, int) and max_length > TEXT_INPUT_MAX:
                message = f"int value should be less than or equal to {TEXT_INPUT_MAX}."
                out.append(((*where, "max_length"), "NUMBER_TYPE_MAX", message))
    return out


def modal_problems(data: dict[str, Any]) -> list[tuple[ErrorPath, str, str]]:
    out = _max_len(("data", "title"), data.get("title"), MODAL_TITLE)
    out += _max_len(("data", "custom_id"), data.get("custom_id"), MAX_CUSTOM_ID)
    out += component_problems(data.get("components") or [], ("data", "components"))
    return out
