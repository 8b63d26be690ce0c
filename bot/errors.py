"""The error type every layer raises when a member (or operator) must be told something.

Errors carry a stable ``key`` and named ``params`` instead of only a finished sentence, so the
Discord layer can translate the message into the member's language while logs and the CLI use the
English template. ``str(error)`` is always the English message and never contains secrets.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BotError(Exception):
    """Base of all errors whose message is meant for a person, not a traceback."""

    key: ClassVar[str] = "error.generic"
    template: ClassVar[str] = "Something went wrong."
    #: True when only the operator can fix it (bad key, billing): members get a generic message.
    operator_problem: ClassVar[bool] = False

    def __init__(self, message: str | None = None, /, **params: Any) -> None:
        self.params = params
        self._message = message
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The English message, formatted with this error's parameters."""
        if self._message is not None:
            return self._message
        return self.worded(self.template)

    def worded(self, template: str) -> str:
        """This error said with another English ``template`` (the CLI's wording for operators)."""
        try:
            return template.format(**self.params)
        except (KeyError, IndexError, ValueError):
            return template

    def __str__(self) -> str:
        return self.message


class ConfigError(BotError):
    """The configuration file or environment is invalid; the message names the key."""

    key = "error.config"
    template = "Invalid configuration."
    operator_problem = True


class UsageError(BotError):
    """A command was used wrongly: a missing secret, an input file that does not exist."""

    key = "error.usage"
    template = "Invalid usage."


class InternalError(BotError):
    """A bug, not the member's fault: the log has the traceback under ``ref``."""

    key = "error.unexpected"
    template = "Something went wrong on our side. Reference: {ref}"


class ShuttingDown(BotError):
    key = "error.restarting"
    template = "The bot is restarting and takes no new requests right now. Try again in a minute."
