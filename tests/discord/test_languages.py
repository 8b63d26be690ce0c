"""Every member-facing message in the member's language, end to end, through the fake Discord.

The bot speaks English, Korean, Japanese, Simplified and Traditional Chinese: command metadata
through ``app_commands.Translator`` (synced once, shown by Discord in each member's language),
everything else in the locale of the interaction that asked. Any other locale, and British
English, gets English. Expected texts come from the catalog, so these tests check the wiring
(which locale reaches which message) rather than repeat the translations.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from bot.config import Settings
from bot.discord.errors import AttachmentNotImage
from bot.discord.i18n import Catalog, is_valid_chat_input_name
from bot.imaging.errors import EditNeedsMask
from bot.providers.errors import SafetyRejected
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import Harness, run_bot
from bot.testing.openai_api import FakeImagesAPI

CATALOG = Catalog.load()
TRANSLATED = ["ko", "ja", "zh-CN", "zh-TW"]
#: Interaction locale -> whether the member should see a translation (else English).
LOCALES = [
    ("en-US", False),
    ("ko", True),
    ("ja", True),
    ("zh-CN", True),
    ("zh-TW", True),
    ("fr", False),
    ("en-GB", False),
]
LOCALE_IDS = [tag for tag, _ in LOCALES]


def png(width: int = 64, height: int = 64, mode: str = "RGB") -> bytes:
    colour: Any = (200, 30, 30, 255) if mode == "RGBA" else (200, 30, 30)
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def english_key(prefix: str, suffix: str, english: str) -> str:
    """The catalog key whose English text is ``english`` (among ``prefix*suffix`` keys)."""
    table = CATALOG.table("ko")  # any translated table has every key
    assert table is not None
    keys = [
        key
        for key in table
        if key.startswith(prefix) and key.endswith(suffix) and CATALOG.text(key, "en-US") == english
    ]
    assert len(keys) == 1, f"{english!r} is the English text of {keys or 'no key'}"
    return keys[0]


def expected_localizations(key: str) -> dict[str, str]:
    return {tag: CATALOG.text(key, tag) for tag in TRANSLATED}


def discord_accepts_name(name: str) -> bool:
    """Discord's rule for CHAT_INPUT names, ``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``
    and lowercase where the script has case, spelled out with unicodedata (without the
    Devanagari and Thai marks, which none of our languages use)."""
    allowed = all(c in "-_" or unicodedata.category(c)[0] in "LN" for c in name)
    return allowed and 1 <= len(name) <= 32 and name == name.lower()


def field_names(message: StoredMessage) -> list[str]:
    return [field["name"] for field in message.embeds[0].get("fields", [])]


def button_labels(message: StoredMessage) -> list[str]:
    """The labels of the buttons that have one (the pans show an emoji only)."""
    return [
        button["label"]
        for row in message.components
        for button in row.get("components", [])
        if button.get("type") == 2 and "label" in button
    ]


# --- command metadata --------------------------------------------------------------------------


def _check_localized(item: dict[str, Any], name_key: str, description_key: str | None) -> None:
    assert item.get("name_localizations") == expected_localizations(name_key), item["name"]
    if description_key is not None:
        assert item.get("description_localizations") == expected_localizations(description_key), (
            item["name"]
        )


def _check_options(options: list[dict[str, Any]], path: str) -> int:
    """Check options (and subcommands, recursively); the number of translated choices seen.

    A subcommand's keys follow its English path (``cmd.quota.channels.add.name``): two
    subcommands may share an English name (/quota channels add, /moderation blocklist add);
    a dash in a name is an underscore in its key (audit-channel: ``...audit_channel.name``)."""
    checked_choices = 0
    for option in options:
        if option["type"] in (1, 2):  # a subcommand or a subcommand group
            where = f"{path}.{option['name'].replace('-', '_')}"
            _check_localized(option, f"cmd.{where}.name", f"cmd.{where}.description")
            assert CATALOG.text(f"cmd.{where}.description", "en-US") == option["description"]
            checked_choices += _check_options(option.get("options", []), where)
            continue
        _check_localized(
            option,
            english_key("opt.", ".name", option["name"]),
            english_key("opt.", ".description", option["description"]),
        )
        for choice in option.get("choices", []):
            if choice["name"] == choice["value"] and "x" in choice["value"]:
                # A size such as "1024x1024" reads the same in every language.
                assert "name_localizations" not in choice
                continue
            key = english_key("choice.", "", choice["name"])
            assert choice.get("name_localizations") == expected_localizations(key)
            checked_choices += 1
    return checked_choices


def _all_options(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for option in options:
        found.append(option)
        found += _all_options(option.get("options", []))
    return found


async def test_synced_commands_carry_every_translation(harness: Harness) -> None:
    commands = harness.fake.commands
    kinds = sorted((c["name"], c["type"]) for c in commands)
    assert kinds == [
        ("Vary image", 3),
        ("blend", 1),
        ("edit", 1),
        ("history", 1),
        ("imagine", 1),
        ("moderation", 1),
        ("quota", 1),
        ("settings", 1),
        ("show", 1),
        ("usage", 1),
        ("vary", 1),
    ]
    checked_choices = 0
    for command in commands:
        if command["type"] == 3:  # context menu: a name only, no description
            _check_localized(command, "ctx.vary.name", None)
            assert all(1 <= len(n) <= 32 for n in command["name_localizations"].values())
            continue
        name = command["name"]
        _check_localized(
            command,
            f"cmd.{name}.name",
            english_key("cmd.", ".description", command["description"]),
        )
        checked_choices += _check_options(command["options"], name)
    assert checked_choices >= 3  # fit: crop/pad (edit, vary), quality: standard


async def test_synced_names_pass_discords_rules(harness: Harness) -> None:
    for command in harness.fake.commands:
        if command["type"] != 1:
            continue
        names = [command["name"], *command["name_localizations"].values()]
        for option in _all_options(command["options"]):
            names += [option["name"], *option["name_localizations"].values()]
            for choice in option.get("choices", []):
                localized = [choice["name"], *choice.get("name_localizations", {}).values()]
                assert all(1 <= len(n) <= 100 for n in localized)
        bad = [n for n in names if not (discord_accepts_name(n) and is_valid_chat_input_name(n))]
        assert bad == [], command["name"]
        # Options of one command must stay distinct in every language.
        for tag in TRANSLATED:
            option_names = [o["name_localizations"][tag] for o in command["options"]]
            assert len(option_names) == len(set(option_names)), (command["name"], tag)
    assert harness.fake.spec_violations == []


# --- messages in the interaction's locale ------------------------------------------------------


def _translated(key: str, locale: str, translated: bool, **params: Any) -> str:
    text = CATALOG.text(key, locale, **params)
    english = CATALOG.text(key, "en-US", **params)
    assert (text != english) == translated, (key, locale, text)
    return text


@pytest.mark.parametrize(("locale", "translated"), LOCALES, ids=LOCALE_IDS)
async def test_a_refused_upload_is_explained_in_the_members_language(
    harness: Harness, locale: str, translated: bool
) -> None:
    fake = harness.fake
    member = fake.add_member(None, f"member-{locale}", locale=locale)
    notes = fake.add_attachment(b"shopping list", "notes.txt", "text/plain")
    handle = await fake.slash("vary", {"image": notes}, user=member)
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    expected = CATALOG.error_text(AttachmentNotImage(filename="notes.txt"), locale)
    english = CATALOG.error_text(AttachmentNotImage(filename="notes.txt"), "en-US")
    assert response.data["content"] == expected
    assert (expected != english) == translated
    assert harness.api.requests == []


@pytest.mark.parametrize(("locale", "translated"), LOCALES, ids=LOCALE_IDS)
async def test_an_image_problem_found_in_the_pixels_is_told_in_the_members_language(
    harness: Harness, locale: str, translated: bool
) -> None:
    """Found when the upload is normalized, after the defer: the answer is still theirs."""
    fake = harness.fake
    member = fake.add_member(None, f"member-{locale}", locale=locale)
    photo = fake.add_attachment(png(), "photo.png", "image/png")
    handle = await fake.slash("edit", {"image": photo, "prompt": "a hat"}, user=member)
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    expected = CATALOG.error_text(EditNeedsMask(), locale)
    assert (expected != CATALOG.error_text(EditNeedsMask(), "en-US")) == translated
    status = await handle.wait_message(lambda m: m.content == expected)
    assert status.ephemeral
    await harness.idle()
    assert harness.api.requests == []
    assert fake.messages() == []  # nothing public


@pytest.mark.parametrize(("locale", "translated"), LOCALES, ids=LOCALE_IDS)
async def test_a_result_is_labelled_in_the_members_language(
    harness: Harness, locale: str, translated: bool
) -> None:
    fake = harness.fake
    member = fake.add_member(None, f"member-{locale}", locale=locale)
    handle = await fake.slash(
        "imagine", {"prompt": "a paper boat", "size": "256x256", "count": 2}, user=member
    )
    result = await harness.result()
    assert len(result.attachments) == 2
    details = result.embeds[0]
    assert field_names(result) == [
        _translated("result.requested_by", locale, translated),
        _translated("result.model", locale, translated),
        _translated("result.size", locale, translated),
        _translated("result.time", locale, translated),
        _translated("result.cost", locale, translated),
    ]
    assert details["title"] == _translated("result.prompt", locale, translated)
    job_id = int(result.custom_ids[-1].rsplit(":", 1)[1])
    assert details["footer"]["text"] == _translated(
        "result.footer", locale, translated, job_id=job_id
    )
    seconds = details["fields"][3]["value"]
    unit = re.escape(CATALOG.text("result.seconds", locale, seconds=1.5)).replace(
        r"1\.5", r"\d+\.\d"
    )
    assert re.fullmatch(unit, seconds), seconds
    assert button_labels(result) == [
        _translated("button.vary", locale, translated, index=1),
        _translated("button.vary", locale, translated, index=2),
        "U1",  # Midjourney's label, the same in every language
        "U2",
        _translated("button.redo", locale, translated),
        _translated("button.remix", locale, translated),
        _translated("button.params", locale, translated),
        _translated("button.delete", locale, translated),
    ]
    done = _translated("status.done", locale, translated)
    status = await handle.wait_message(lambda m: m.content == done)
    assert status.ephemeral
    assert fake.spec_violations == []


@pytest.mark.parametrize("locale", ["ja", "fr"])
async def test_a_safety_rejection_is_explained_in_the_members_language(
    harness: Harness, locale: str
) -> None:
    fake = harness.fake
    member = fake.add_member(None, f"member-{locale}", locale=locale)
    harness.api.safety_next()
    handle = await fake.slash("imagine", {"prompt": "something", "size": "256x256"}, user=member)
    expected = CATALOG.error_text(SafetyRejected(), locale)
    status = await handle.wait_message(lambda m: m.content == expected)
    assert status.ephemeral
    if locale == "ja":
        assert expected == CATALOG.text("provider.safety_rejected", "ja")
        assert expected != CATALOG.error_text(SafetyRejected(), "en-US")
        assert "安全" in expected
    else:
        assert expected == str(SafetyRejected())
    assert len(harness.api.requests) == 1  # a safety rejection is not retried
    assert fake.messages() == []


async def test_the_interactions_locale_wins_over_the_members_default(harness: Harness) -> None:
    """Discord sends the locale of the client in use; the same member may switch languages."""
    fake = harness.fake
    member = fake.add_member(None, "switcher", locale="ko")
    notes = fake.add_attachment(b"x", "notes.txt", "text/plain")
    korean = await fake.slash("vary", {"image": notes}, user=member)
    chinese = await fake.slash("vary", {"image": notes}, user=member, locale="zh-TW")
    error = AttachmentNotImage(filename="notes.txt")
    assert (await korean.response()).data["content"] == CATALOG.error_text(error, "ko")
    assert (await chinese.response()).data["content"] == CATALOG.error_text(error, "zh-TW")


async def test_result_buttons_answer_in_the_clickers_language(harness: Harness) -> None:
    """A Korean member's result, used by a Japanese member: each sees their own language."""
    fake = harness.fake
    author = fake.add_member(None, "mina", locale="ko")
    other = fake.add_member(None, "yuki", locale="ja")
    await fake.slash("imagine", {"prompt": "a lantern", "size": "256x256"}, user=author)
    result = await harness.result()
    await harness.idle()  # the result is posted a moment before it is recorded as the job's
    assert button_labels(result)[-1] == CATALOG.text("button.delete", "ko")
    job_id = int(result.custom_ids[-1].rsplit(":", 1)[1])

    remix = await fake.click(result, f"ib:remix:{job_id}", user=other)
    assert (await remix.response()).type == 9
    modal = remix.modal
    assert modal is not None and modal["title"] == CATALOG.text("modal.remix.title", "ja")
    text_input = modal["components"][0]["components"][0]
    assert text_input["label"] == CATALOG.text("modal.remix.label", "ja")
    assert text_input["placeholder"] == CATALOG.text("modal.remix.placeholder", "ja")

    refused = await fake.click(result, f"ib:delete:{job_id}", user=other)
    response = await refused.response()
    assert response.ephemeral
    assert response.data["content"] == CATALOG.text("error.not_requester", "ja")

    deleted = await fake.click(result, f"ib:delete:{job_id}", user=author, locale="zh-CN")
    note = await deleted.wait_message(
        lambda m: m.content == CATALOG.text("result.deleted", "zh-CN")
    )
    assert note.ephemeral and result.deleted
    assert fake.spec_violations == []


# --- untranslated text falls back to English ---------------------------------------------------


async def test_untranslated_text_falls_back_to_english(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Korean file missing some keys, with a broken template and a name Discord would refuse:
    the command sync still succeeds, and the member gets English exactly where Korean is
    missing or unusable, Korean everywhere else."""
    full = Catalog.load()
    tables: dict[str, dict[str, str]] = {}
    for tag in full.locales:
        own = full.table(tag)
        tables[tag] = dict(own) if own is not None else {}
    tables["en-US"] = {key: full.text(key, "en-US") for key in tables["ko"]}
    korean = tables["ko"]
    for key in ("result.model", "button.redo", "opt.prompt.description", "cmd.vary.name"):
        del korean[key]
    korean["error.attachment_not_image"] = "{filname} 파일은 이미지가 아니에요."  # a typo
    korean["opt.size.name"] = "Image Size"  # uppercase and a space: Discord refuses it
    partial = Catalog(tables)
    monkeypatch.setattr(Catalog, "load", classmethod(lambda cls, folder=None: partial))

    async with run_bot(fake_discord, fake_images_api, settings_factory()) as harness:
        fake = harness.fake
        assert harness.bot.catalog is partial
        imagine = next(c for c in fake.commands if c["name"] == "imagine")
        vary = next(c for c in fake.commands if c["name"] == "vary")
        prompt = next(o for o in imagine["options"] if o["name"] == "prompt")
        size = next(o for o in imagine["options"] if o["name"] == "size")
        assert "ko" not in vary["name_localizations"]
        assert vary["name_localizations"]["ja"] == full.text("cmd.vary.name", "ja")
        assert "ko" not in prompt["description_localizations"]
        assert prompt["name_localizations"]["ko"] == full.text("opt.prompt.name", "ko")
        assert "ko" not in size["name_localizations"]
        assert size["description_localizations"]["ko"] == full.text("opt.size.description", "ko")

        member = fake.add_member(None, "mina", locale="ko")
        notes = fake.add_attachment(b"x", "notes.txt", "text/plain")
        refused = await fake.slash("vary", {"image": notes}, user=member)
        error = AttachmentNotImage(filename="notes.txt")
        assert (await refused.response()).data["content"] == str(error)

        await fake.slash(
            "imagine", {"prompt": "a kite", "size": "256x256", "count": 2}, user=member
        )
        result = await harness.result()
        names = field_names(result)
        assert names[0] == full.text("result.requested_by", "ko")
        assert names[1] == "Model"
        labels = button_labels(result)
        assert labels[0] == full.text("button.vary", "ko", index=1)
        assert labels[2:] == [
            full.text("button.upscale", "ko", index=1),
            full.text("button.upscale", "ko", index=2),
            "Redo",
            full.text("button.remix", "ko"),
            full.text("button.params", "ko"),
            full.text("button.delete", "ko"),
        ]
    assert fake_discord.spec_violations == []
