"""Logging setup with secret redaction.

Code never logs secrets on purpose, but libraries sometimes echo request headers or URLs into
exceptions. The filter below replaces every configured secret in every record, including the
formatted traceback, as a last line of defence. Interaction tokens are not configured secrets:
each member's interaction brings a new one, and at DEBUG discord.py logs them (webhook URLs
``/webhooks/{app}/{token}/...``, gateway payloads with ``"token": ...``) and SQLAlchemy logs the
job rows that hold them, so anything shaped like one is redacted too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TextIO

REDACTED = "[redacted]"

#: The token segment of webhook and interaction URLs: ``/webhooks/<id>/<token>``,
#: ``/interactions/<id>/<token>/callback``.
_URL_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/?#\s'\"]+")
#: A ``token`` field in a logged payload (dict repr or JSON), e.g. a gateway INTERACTION_CREATE.
_FIELD_TOKEN = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+""")
#: Interaction tokens themselves start with base64 "interaction:" wherever they appear (SQL
#: parameters logged at DEBUG, exception texts).
_INTERACTION_TOKEN = re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_\-]+")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Very short "secrets" would redact ordinary words; real tokens are long.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _INTERACTION_TOKEN.sub(REDACTED, text)
        text = _URL_TOKEN.sub(rf"\g<1>{REDACTED}", text)
        return _FIELD_TOKEN.sub(rf"\g<1>{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


#: Context a log call may pass with ``extra=``; shown as fields in JSON and as key=value in text.
CONTEXT_FIELDS = ("job_id", "guild_id", "user_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors (Loki, CloudWatch, journald + jq)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        if not context:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{context}]{newline}{rest}"


def configure_logging(
    level: str,
    secrets: Iterable[str] = (),
    json_format: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Log to stderr (or ``stream``: the demo's log file), one line per event, with secrets
    redacted from every handler's output."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("discord.http").setLevel(max(logging.INFO, root.level))
    # Alembic announces every plugin it loads at INFO on each start: noise for operators.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class _Holder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def held_logs() -> Iterator[list[logging.LogRecord]]:
    """Keep the warnings logged while the settings are read, before logging is configured.

    The settings choose the log format, so a warning from reading them would otherwise be a
    bare line in a JSON log; :func:`replay` sends them through the configured handler.
    """
    holder = _Holder()
    root = logging.getLogger()
    root.addHandler(holder)
    try:
        yield holder.records
    finally:
        root.removeHandler(holder)


def replay(records: Iterable[logging.LogRecord]) -> None:
    for record in records:
        logging.getLogger(record.name).handle(record)
