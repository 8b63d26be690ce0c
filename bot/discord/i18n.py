"""Member-facing text in the member's language: messages, error texts and command names.

Translations are data, not code: ``locales/<tag>.json`` holds one flat ``key -> template`` object
per Discord locale, so a translator edits one file and the tests can check every file against
``en-US.json`` (same keys, same placeholders). ``en-US`` is the source language and the fallback
for every other locale, including ``en-GB``. Error texts come from ``BotError.key`` and
``BotError.params``; the English file repeats each class's template so it can be checked against
the code instead of drifting from it.

Nothing here may raise because of a translation: a missing key or a placeholder a translator
broke falls back to English (and is logged), since an untranslated answer beats no answer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import discord
from discord import app_commands

from bot.discord.markup import shown
from bot.errors import BotError
from bot.imaging.errors import ImageError, MaskError
from bot.providers.errors import SDOptionOutOfRange, SDOptionUnavailable

log = logging.getLogger(__name__)

FALLBACK_LOCALE = "en-US"
#: What members see for errors only the operator can fix (keys, billing): no internals.
OPERATOR_KEY = "error.operator"
#: Prefix for file problems about the mask upload ("Mask: That file is empty ...").
MASK_SUBJECT_KEY = "image.subject.mask"

#: Errors whose ``option`` is a command option's name: shown in the member's language, as
#: Discord shows them the option (its ``opt.<name>.name`` key).
OPTION_NAMED_ERRORS = (SDOptionUnavailable, SDOptionOutOfRange)

#: Discord's rule for slash command and option names, as far as Python's ``re`` can say it;
#: names with case must also be lowercase.
CHAT_INPUT_NAME = re.compile(r"[-\w]{1,32}")
_NAME_LOCATIONS = {
    app_commands.TranslationContextLocation.command_name,
    app_commands.TranslationContextLocation.group_name,
    app_commands.TranslationContextLocation.parameter_name,
}

LocaleLike = discord.Locale | str | None


def text(english: str, key: str) -> app_commands.locale_str:
    """A command text declared in English with its catalog key: BotTranslator translates it."""
    return app_commands.locale_str(english, key=key)


def locale_tag(locale: LocaleLike) -> str:
    """A locale as a tag: ``discord.Locale.korean`` -> "ko", "zh_TW" -> "zh-TW", None -> en-US."""
    if locale is None:
        return FALLBACK_LOCALE
    tag = locale.value if isinstance(locale, discord.Locale) else str(locale)
    return tag.replace("_", "-").strip() or FALLBACK_LOCALE


def is_valid_chat_input_name(name: str) -> bool:
    """Whether Discord accepts ``name`` as a slash command or option name (lowercase, 1-32)."""
    return bool(CHAT_INPUT_NAME.fullmatch(name)) and name == name.lower()


class Catalog:
    """All locale tables, loaded once; lookups never raise and never return an empty string."""

    def __init__(self, tables: Mapping[str, Mapping[str, str]]) -> None:
        by_tag = {tag.lower(): dict(table) for tag, table in tables.items()}
        if FALLBACK_LOCALE.lower() not in by_tag:
            raise ValueError(f"the {FALLBACK_LOCALE} table is missing")
        self._tables = by_tag
        self._fallback = by_tag[FALLBACK_LOCALE.lower()]
        self._tags = sorted(tables)
        self._warned: set[str] = set()

    @classmethod
    def load(cls, folder: Traversable | None = None) -> Catalog:
        """Read every ``*.json`` in ``folder`` (default: the packaged ``locales`` folder).

        A malformed file fails here, at start-up, rather than in the middle of an answer.
        """
        folder = folder if folder is not None else files("bot.discord").joinpath("locales")
        tables: dict[str, dict[str, str]] = {}
        for entry in folder.iterdir():
            if not entry.name.endswith(".json"):
                continue
            data = json.loads(entry.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                raise ValueError(f"{entry.name}: expected a flat object of strings")
            tables[entry.name.removesuffix(".json")] = data
        return cls(tables)

    @property
    def locales(self) -> list[str]:
        """The locale tags that have a file, e.g. ``["en-US", "ja", "ko", "zh-CN", "zh-TW"]``."""
        return list(self._tags)

    def table(self, locale: LocaleLike) -> Mapping[str, str] | None:
        """The locale's own table (exact tag, then language only: "ko-KR" -> "ko"), or None.

        None also for English locales, which have no table of their own but the fallback.
        """
        tag = locale_tag(locale).lower()
        table = self._tables.get(tag) or self._tables.get(tag.partition("-")[0])
        return None if table is None or table is self._fallback else table

    def template(self, key: str, locale: LocaleLike = None) -> str | None:
        """The raw template for ``key`` in ``locale`` or English; None if no file has it."""
        own = self.table(locale)
        if own is not None and key in own:
            return own[key]
        return self._fallback.get(key)

    def text(self, key: str, locale: LocaleLike = None, /, **params: Any) -> str:
        """``key`` in ``locale`` formatted with ``params``; English if that fails; else the key."""
        template = self.template(key, locale)
        if template is None:
            self._warn_once(key, "no locale file has the key %r", key)
            return key
        try:
            return template.format(**params)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            english = self._fallback.get(key, template)
            if english is not template:
                self._warn_once(
                    f"{locale_tag(locale)}:{key}",
                    "broken template %r in %s (%r); using English",
                    key,
                    locale_tag(locale),
                    exc,
                )
            try:
                return english.format(**params)
            except (KeyError, IndexError, ValueError, TypeError, AttributeError):
                return english

    def error_text(self, error: BotError, locale: LocaleLike = None) -> str:
        """What to tell a member about ``error``, in their language.

        Operator problems get the generic operator text, so members never see internals. An
        error raised with its own sentence (``BotError("...")``) keeps that English sentence,
        which says more than the class's generic template would.
        """
        if error.operator_problem:
            return self.text(OPERATOR_KEY, locale)
        if error._message is not None or self.template(error.key, locale) is None:
            return str(error)
        params = {name: shown(value) for name, value in error.params.items()}
        if isinstance(error, OPTION_NAMED_ERRORS):
            params["option"] = self.option_name(str(error.params["option"]), locale)
        message = self.text(error.key, locale, **params)
        if (
            isinstance(error, ImageError)
            and not isinstance(error, MaskError)
            and error.subject == "mask"
        ):
            return self.text(MASK_SUBJECT_KEY, locale, message=message)
        return message

    def option_name(self, option: str, locale: LocaleLike = None) -> str:
        """A command option's name as Discord shows it to the member; as given if none."""
        key = f"opt.{option}.name"
        return self.text(key, locale) if self.template(key, locale) is not None else option

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)


class BotTranslator(app_commands.Translator):
    """Gives discord.py the localized command names, descriptions and choice names.

    Strings are declared as ``locale_str("imagine", key="cmd.imagine.name")``; the English text
    is the default Discord shows, so English locales and unknown keys return None. A translated
    name Discord would reject is dropped (with a warning): one bad name would otherwise make
    Discord refuse the whole command sync.
    """

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog if catalog is not None else Catalog.load()

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        key = string.extras.get("key")
        table = self.catalog.table(locale)
        if not isinstance(key, str) or table is None:
            return None
        text = table.get(key)
        if text is None:
            return None
        if context.location in _NAME_LOCATIONS:
            if isinstance(context.data, app_commands.ContextMenu):
                valid = 1 <= len(text) <= 32
            else:
                valid = is_valid_chat_input_name(text)
            if not valid:
                log.warning("invalid %s name %r for %r; using English", locale.value, text, key)
                return None
        return text
