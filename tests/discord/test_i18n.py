"""The locale files against the code and Discord's rules, and the catalogue's fallbacks.

The English file must repeat every error class's template (so it cannot drift from the code),
every other file must have the same keys and placeholders, and command metadata must pass
Discord's limits: one invalid localized name makes Discord reject the whole command sync.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import string
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.app_commands import locale_str

import bot.discord.admin._quota
import bot.discord.errors  # these imports make every BotError subclass exist
import bot.errors
import bot.imaging
import bot.jobs
import bot.providers
import bot.quotas.admin
import bot.quotas.backends
import bot.quotas.policy
from bot.discord.i18n import BotTranslator, Catalog
from bot.errors import BotError, ConfigError
from bot.imaging.errors import ImageTooLarge, MaskMarksNothing, NotAnImage
from bot.providers.errors import OperatorProblem, RateLimited

LOCALES_DIR = files("bot.discord").joinpath("locales")
RAW: dict[str, dict[str, str]] = {
    entry.name.removesuffix(".json"): json.loads(entry.read_text(encoding="utf-8"))
    for entry in LOCALES_DIR.iterdir()
    if entry.name.endswith(".json")
}
ENGLISH = RAW["en-US"]
TRANSLATED = ["ko", "ja", "zh-CN", "zh-TW"]
CATALOG = Catalog.load()

#: Translations that may equal the English text: proper nouns and abbreviations (U1…Un).
SAME_AS_ENGLISH = {"choice.quality.hd", "button.upscale"}

#: The keys the Discord layer uses (besides the error classes' keys).
DISCORD_KEYS = [
    "cmd.imagine.name",
    "cmd.imagine.description",
    "cmd.edit.name",
    "cmd.edit.description",
    "cmd.vary.name",
    "cmd.vary.description",
    "ctx.vary.name",
    "opt.prompt.name",
    "opt.prompt.description",
    "opt.edit_prompt.description",
    "opt.n.name",
    "opt.n.description",
    "opt.size.name",
    "opt.size.description",
    "opt.quality.name",
    "opt.quality.description",
    "opt.style.name",
    "opt.style.description",
    "opt.image.name",
    "opt.image.description",
    "opt.edit_image.description",
    "opt.mask.name",
    "opt.mask.description",
    "opt.fit.name",
    "opt.fit.description",
    "choice.fit.crop",
    "choice.fit.pad",
    "choice.quality.low",
    "choice.quality.medium",
    "choice.quality.high",
    "choice.quality.auto",
    "choice.quality.standard",
    "choice.quality.hd",
    "choice.style.vivid",
    "choice.style.natural",
    "status.queued",
    "status.working",
    "status.step",
    "status.eta",
    "status.done",
    "status.cancelled",
    "result.prompt",
    "result.revised_prompt",
    "result.requested_by",
    "result.model",
    "result.size",
    "result.quality",
    "result.time",
    "result.cost",
    "result.seconds",
    "result.image_n",
    "result.vary_of",
    "result.edit_of",
    "result.footer",
    "button.vary",
    "button.redo",
    "button.remix",
    "button.delete",
    "button.cancel",
    "button.retry",
    "modal.remix.title",
    "modal.remix.label",
    "modal.remix.placeholder",
    "result.deleted",
    "error.unexpected",
    "error.operator",
    "error.not_requester",
    "error.result_gone",
    "error.no_image_in_message",
    "error.attachment_not_image",
    "error.attachment_too_large",
    "error.bot_missing_permissions",
    "error.member_missing_permissions",
    "error.guild_only",
    "error.prompt_empty",
    "error.cooldown",
    "image.subject.mask",
]

# Discord: CHAT_INPUT command/option names match ^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$
# and must be lowercase where the script has case; \w is the closest Python re gets.
NAME = re.compile(r"[-\w]{1,32}")


def _walk(cls: type[BotError]) -> Iterator[type[BotError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _walk(sub)


ERROR_CLASSES: list[type[BotError]] = [BotError, *dict.fromkeys(_walk(BotError))]


def _fields(template: str) -> set[tuple[str, str]]:
    return {(name, spec or "") for _, name, spec, _ in string.Formatter().parse(template) if name}


def _sample_params(template: str) -> dict[str, Any]:
    """Plausible values: numbers where a format spec needs one, short text elsewhere."""
    return {name: 12.5 if spec else "x7" for name, spec in _fields(template)}


def _all_locales() -> list[str]:
    return ["en-US", *TRANSLATED]


def test_the_five_locale_files_exist() -> None:
    assert set(RAW) == set(_all_locales())
    assert sorted(CATALOG.locales) == sorted(_all_locales())


@pytest.mark.parametrize("locale", _all_locales())
def test_files_are_sorted_flat_utf8_json(locale: str) -> None:
    text = LOCALES_DIR.joinpath(f"{locale}.json").read_text(encoding="utf-8")
    assert text == json.dumps(RAW[locale], ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    assert all(isinstance(value, str) and value.strip() for value in RAW[locale].values())


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_locale_has_exactly_the_english_keys(locale: str) -> None:
    assert sorted(RAW[locale].keys() - ENGLISH.keys()) == []  # extra
    assert sorted(ENGLISH.keys() - RAW[locale].keys()) == []  # missing


def test_english_has_every_discord_layer_key() -> None:
    assert sorted(set(DISCORD_KEYS) - ENGLISH.keys()) == []


def test_every_key_named_in_the_discord_layer_exists() -> None:
    """Keys the code spells out (catalog.text("quota.show.title", ...)) are in the English file."""
    root = Path(bot.discord.errors.__file__).parent
    key = re.compile(r'"((?:quota|usage|status|result|button|modal|cmd|opt|choice)\.[a-z_.]+)"')
    named = {k for path in root.rglob("*.py") for k in key.findall(path.read_text("utf-8"))}
    assert len(named) > 50
    assert sorted(named - ENGLISH.keys()) == []


def test_english_command_texts_in_the_code_are_the_english_file_texts() -> None:
    """``text("Show this server's limits", "cmd.quota.show.description")``: English members
    see the code's text, everyone else the translation of the file's; they must not differ."""
    root = Path(bot.discord.errors.__file__).parent
    found = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "text"
                and len(node.args) == 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            ):
                english, key = (a.value for a in node.args)  # type: ignore[attr-defined]
                found[key] = english
    assert len(found) > 40
    assert {k: v for k, v in found.items() if ENGLISH.get(k) != v} == {}


def test_error_keys_are_unique() -> None:
    keys = [cls.key for cls in ERROR_CLASSES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_english_error_templates_are_the_code_templates(cls: type[BotError]) -> None:
    assert ENGLISH.get(cls.key) == cls.template


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_keep_the_placeholders_and_format_specs(locale: str) -> None:
    broken = {
        key: (sorted(_fields(english)), sorted(_fields(RAW[locale][key])))
        for key, english in ENGLISH.items()
        if _fields(english) != _fields(RAW[locale][key])
    }
    assert broken == {}


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_translation_formats_with_sample_params(locale: str) -> None:
    for key, template in RAW[locale].items():
        text = template.format(**_sample_params(ENGLISH[key]))
        assert "{" not in text and "}" not in text, key


@pytest.mark.parametrize("locale", _all_locales())
@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_has_a_translated_text(
    cls: type[BotError], locale: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = cls(**_sample_params(cls.template))
    with caplog.at_level(logging.WARNING):
        text = CATALOG.error_text(error, locale)
    assert caplog.records == []
    if cls.operator_problem:
        assert text == CATALOG.text("error.operator", locale)
    else:
        assert text == RAW[locale][cls.key].format(**error.params)
    if locale == "en-US" and not cls.operator_problem:
        assert text == str(error)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_differ_from_english(locale: str) -> None:
    same = {key for key, text in RAW[locale].items() if text == ENGLISH[key]}
    assert same <= SAME_AS_ENGLISH


# --- Discord's limits on command metadata ------------------------------------------------------

NAME_KEYS = [key for key in ENGLISH if key.startswith(("cmd.", "opt.")) and key.endswith(".name")]
DESCRIPTION_KEYS = [key for key in ENGLISH if key.endswith(".description")]


@pytest.mark.parametrize("locale", _all_locales())
def test_command_and_option_names_follow_discords_rules(locale: str) -> None:
    table = RAW[locale]
    bad = [table[key] for key in NAME_KEYS if not NAME.fullmatch(table[key])]
    bad += [table[key] for key in NAME_KEYS if table[key] != table[key].lower()]
    assert bad == []
    assert 1 <= len(table["ctx.vary.name"]) <= 32


@pytest.mark.parametrize("locale", _all_locales())
def test_names_are_distinct(locale: str) -> None:
    table = RAW[locale]
    commands = [key for key in NAME_KEYS if key.startswith("cmd.")]
    options = [table[key] for key in NAME_KEYS if key.startswith("opt.")]
    # As Discord: distinct among siblings (/quota channels add and /moderation blocklist add).
    siblings: dict[str, list[str]] = {}
    for key in commands:
        siblings.setdefault(key.removesuffix(".name").rpartition(".")[0], []).append(table[key])
    assert len(commands) >= 3
    assert {
        parent: names for parent, names in siblings.items() if len(names) != len(set(names))
    } == {}
    # Stricter than Discord (which only needs distinct names within one command), so that any
    # set of options the commands use is safe.
    assert len(options) == len(set(options))


@pytest.mark.parametrize("locale", _all_locales())
def test_lengths_fit_discords_limits(locale: str) -> None:
    table = RAW[locale]
    assert all(1 <= len(table[key]) <= 100 for key in DESCRIPTION_KEYS)
    assert all(1 <= len(table[key]) <= 100 for key in ENGLISH if key.startswith("choice."))
    assert all(
        len(table[key].format(index=4)) <= 80 for key in ENGLISH if key.startswith("button.")
    )
    assert len(table["modal.remix.title"]) <= 45
    assert len(table["modal.remix.label"]) <= 45
    assert len(table["modal.remix.placeholder"]) <= 100


# --- lookups and fallbacks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (None, "Cancelled."),
        ("en-GB", "Cancelled."),
        (discord.Locale.british_english, "Cancelled."),
        ("fr", "Cancelled."),
        (discord.Locale.german, "Cancelled."),
        ("ko", "취소했어요."),
        (discord.Locale.korean, "취소했어요."),
        ("ko-KR", "취소했어요."),
        ("ja", "キャンセルしました。"),
        (discord.Locale.chinese, "已取消。"),
        (discord.Locale.taiwan_chinese, "已取消。"),
        ("zh_CN", "已取消。"),
    ],
)
def test_locale_lookup(locale: discord.Locale | str | None, expected: str) -> None:
    assert CATALOG.text("status.cancelled", locale) == expected


def test_traditional_and_simplified_chinese_are_told_apart() -> None:
    assert CATALOG.text("result.deleted", "zh-CN") == "已删除。"
    assert CATALOG.text("result.deleted", "zh-TW") == "已刪除。"


def test_params_are_formatted_with_their_format_specs() -> None:
    assert CATALOG.text("result.seconds", "en-US", seconds=3.14159) == "3.1 s"
    assert CATALOG.text("result.seconds", "ko", seconds=3.14159) == "3.1초"
    assert CATALOG.text("error.cooldown", "ja", seconds=4.6) == (
        "少し待ってください。5 秒後にもう一度お試しください。"
    )


def test_a_key_missing_from_every_file_returns_the_key_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog = Catalog.load()
    with caplog.at_level(logging.WARNING, logger="bot.discord.i18n"):
        assert catalog.text("no.such.key", "ko") == "no.such.key"
        assert catalog.text("no.such.key", "ja") == "no.such.key"
    assert len(caplog.records) == 1


def test_a_key_missing_from_a_translation_falls_back_to_english() -> None:
    catalog = Catalog({"en-US": {"a": "Hello {name}"}, "ko": {}})
    assert catalog.text("a", "ko", name="Mina") == "Hello Mina"


@pytest.mark.parametrize("broken", ["안녕 {nmae}", "안녕 {name:d}", "안녕 {name", "안녕 {0}"])
def test_a_broken_translation_falls_back_to_english(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = Catalog({"en-US": {"a": "Hello {name}"}, "ko": {"a": broken}})
    with caplog.at_level(logging.WARNING, logger="bot.discord.i18n"):
        assert catalog.text("a", "ko", name="Mina") == "Hello Mina"
    assert len(caplog.records) == 1


def test_missing_params_give_the_english_template_rather_than_raising() -> None:
    assert CATALOG.text("status.working", "ko") == "Making {n} image(s)…"


def test_keys_and_locales_may_be_named_like_the_parameters() -> None:
    catalog = Catalog({"en-US": {"a": "{key} in {locale}"}})
    assert catalog.text("a", None, key="k", locale="l") == "k in l"


def test_loading_needs_the_english_file() -> None:
    with pytest.raises(ValueError, match="en-US"):
        Catalog({"ko": {}})


# --- error texts -------------------------------------------------------------------------------


def test_error_text_translates_with_the_errors_params() -> None:
    error = ImageTooLarge(size_mb=31.2, limit_mb=25.0)
    assert CATALOG.error_text(error, "en-US") == "That file is 31.2 MB; the limit is 25 MB."
    assert CATALOG.error_text(error, "ko") == (
        "파일 크기가 31.2MB예요. 최대 25MB까지 올릴 수 있어요."
    )
    assert CATALOG.error_text(error, discord.Locale.japanese) == (
        "ファイルサイズは 31.2 MB です。上限は 25 MB です。"
    )


@pytest.mark.parametrize("locale", _all_locales())
def test_operator_problems_get_the_generic_operator_text(locale: str) -> None:
    generic = CATALOG.text("error.operator", locale)
    assert CATALOG.error_text(OperatorProblem(detail="HTTP 401 invalid_api_key"), locale) == generic
    assert CATALOG.error_text(ConfigError("provider.api_key: sk-secret"), locale) == generic


def test_file_problems_with_the_mask_upload_say_mask() -> None:
    error = NotAnImage(formats="PNG or JPEG").about("mask")
    assert CATALOG.error_text(error, "en-US") == str(error)
    assert CATALOG.error_text(error, "ko") == (
        "마스크: 이미지 파일이 아니에요. PNG or JPEG 형식의 이미지를 올려 주세요."
    )
    assert CATALOG.error_text(error, "zh-TW").startswith("遮罩：這個檔案不是圖片。")


def test_mask_errors_are_not_prefixed_twice() -> None:
    error = MaskMarksNothing(subject="mask")
    assert not CATALOG.error_text(error, "ko").startswith("마스크:")
    assert CATALOG.error_text(error, "ko") == CATALOG.text("image.mask_empty", "ko")


def test_an_error_with_an_unknown_key_is_told_in_english() -> None:
    catalog = Catalog({"en-US": {}, "ko": {}})
    error = RateLimited()
    assert catalog.error_text(error, "ko") == str(error)


def test_an_error_with_its_own_sentence_keeps_it() -> None:
    error = BotError("The queue is full: 20 jobs.")
    assert CATALOG.error_text(error, "ko") == "The queue is full: 20 jobs."


# --- the app_commands translator ---------------------------------------------------------------

OTHER: app_commands.TranslationContextTypes = app_commands.TranslationContext(
    app_commands.TranslationContextLocation.other, None
)


async def test_translator_gives_localized_strings_and_none_for_english() -> None:
    translator = BotTranslator(CATALOG)
    name = locale_str("imagine", key="cmd.imagine.name")
    assert await translator.translate(name, discord.Locale.korean, OTHER) == "그리기"
    assert await translator.translate(name, discord.Locale.american_english, OTHER) is None
    assert await translator.translate(name, discord.Locale.british_english, OTHER) is None
    assert await translator.translate(name, discord.Locale.french, OTHER) is None
    unknown = locale_str("imagine", key="cmd.nothing.name")
    assert await translator.translate(unknown, discord.Locale.korean, OTHER) is None
    assert await translator.translate(locale_str("imagine"), discord.Locale.korean, OTHER) is None


async def _imagine(interaction: discord.Interaction, prompt: str, n: int = 1) -> None:
    """A slash command declared the way the Discord layer declares them."""


async def _vary(interaction: discord.Interaction, message: discord.Message) -> None:
    """A message context menu declared the way the Discord layer declares it."""


async def test_translated_command_payloads_carry_the_localizations() -> None:
    client = discord.Client(intents=discord.Intents.none())
    tree = app_commands.CommandTree(client)
    command: app_commands.Command[Any, ..., None] = app_commands.Command(
        name=locale_str("imagine", key="cmd.imagine.name"),
        description=locale_str("Make images from a prompt", key="cmd.imagine.description"),
        callback=_imagine,
    )
    command = app_commands.rename(
        prompt=locale_str("prompt", key="opt.prompt.name"),
        n=locale_str("count", key="opt.n.name"),
    )(command)
    menu = app_commands.ContextMenu(
        name=locale_str("Vary image", key="ctx.vary.name"), callback=_vary
    )
    translator = BotTranslator(CATALOG)

    payload = await command.get_translated_payload(tree, translator)
    assert payload["name"] == "imagine"
    assert payload["name_localizations"] == {
        "ko": "그리기",
        "ja": "画像生成",
        "zh-CN": "绘图",
        "zh-TW": "繪圖",
    }
    assert payload["description_localizations"]["ko"] == "프롬프트로 이미지를 만들어요"
    options = {option["name"]: option for option in payload["options"]}
    assert options["count"]["name_localizations"]["ja"] == "枚数"
    menu_payload = await menu.get_translated_payload(tree, translator)
    assert menu_payload["name_localizations"]["ko"] == "이미지 변형"
    await client.close()


async def test_translator_drops_a_name_discord_would_reject(
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog = Catalog(
        {"en-US": {"cmd.imagine.name": "imagine"}, "ko": {"cmd.imagine.name": "그 림"}}
    )
    command: app_commands.Command[Any, ..., None] = app_commands.Command(
        name="imagine", description="d", callback=_imagine
    )
    context: app_commands.TranslationContextTypes = app_commands.TranslationContext(
        app_commands.TranslationContextLocation.command_name, command
    )
    name = locale_str("imagine", key="cmd.imagine.name")
    with caplog.at_level(logging.WARNING, logger="bot.discord.i18n"):
        assert await BotTranslator(catalog).translate(name, discord.Locale.korean, context) is None
    assert len(caplog.records) == 1
