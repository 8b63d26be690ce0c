"""Blocked terms: the normalized form prompts and terms meet in, the matcher (word boundaries,
CJK substrings, wildcards), the term rules, and the one store (on SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest

from bot.db.engine import Storage
from bot.errors import BotError, ConfigError
from bot.moderation import blocklist
from bot.moderation.blocklist import (
    MAX_TERM_CHARS,
    MAX_TERMS,
    BlockedTermEmpty,
    BlockedTermTooLong,
    Blocklist,
    PromptBlocked,
    TooManyBlockedTerms,
    any_match,
    normalize,
    operator_terms,
    parse_term,
)

GUILD, OTHER = 1001, 2002


def blocks(term: str, prompt: str) -> bool:
    return any_match([parse_term(term)], prompt)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Cat  IN\tthe\nHat ", "cat in the hat"),
        ("ＣＡＴ", "cat"),  # full-width
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana
        ("c\u200ba\u200cb\u200dd\u2060e\ufefff\u00adg", "cabdefg"),  # zero-width, soft hyphen
        ("ﬁne", "fine"),  # a compatibility ligature
        ("STRASSE Straße", "strasse strasse"),  # case-folded, not only lowered
        ("e\u200b\u0301", "é"),  # the accent joins its letter once the space between is gone
        ("a\u3000b", "a b"),  # the ideographic space
    ],
)
def test_normalize(raw: str, normalized: str) -> None:
    assert normalize(raw) == normalized


@pytest.mark.parametrize(
    ("term", "prompt"),
    [
        ("cat", "a Cat on a mat"),
        ("cat", "A CAT!"),
        ("cat", "ａ ｃａｔ"),
        ("cat", "a c\u200bat"),
        ("cat", "a c\u00ada\u2060t"),
        ("CAT", "cat"),
        ("bad word", "a BAD   word here"),
        ("cat*", "category"),
        ("cat*", "cats and dogs"),
        ("*cat", "wildcat"),
        ("f*ck", "what the fuuuck"),
        ("f*ck", "f**ck"),
        ("c++", "written in c++"),
        ("cat", "猫とcatが好き"),  # next to kana: a word boundary
        ("猫", "黒猫です"),  # CJK: anywhere
        ("猫*犬", "猫と犬"),
        ("고양이", "귀여운고양이가"),
        ("カタカナ", "ｶﾀｶﾅ"),
        ("кот", "Большой КОТ"),
        ("γάτα", "μια ΓΆΤΑ"),
        ("cat*dog", "catdogs catdogsdog"),  # the later end of the word is a whole word
    ],
)
def test_blocked(term: str, prompt: str) -> None:
    assert blocks(term, prompt)


@pytest.mark.parametrize(
    ("term", "prompt"),
    [
        ("cat", "a category of things"),
        ("cat", "wildcat"),
        ("cat", "cats"),
        ("cat", "cat2"),
        ("cat", "c a t"),
        ("f*ck", "f uck"),  # a wildcard never spans a space
        ("cat*dog", "catdogs"),
        ("bad word", "badword"),
        ("кот", "котёнок"),
        ("猫", "犬です"),
        ("dog", ""),
    ],
)
def test_not_blocked(term: str, prompt: str) -> None:
    assert not blocks(term, prompt)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [(" Cat ", "cat"), ("ＣＡＴ＊", "cat*"), ("a**b", "a*b"), ("c\u200bat", "cat")],
)
def test_terms_are_stored_normalized(raw: str, stored: str) -> None:
    assert parse_term(raw).text == stored


@pytest.mark.parametrize("raw", ["", "   ", "*", "***", " * * ", "\u200b"])
def test_a_term_of_only_wildcards_or_nothing_is_refused(raw: str) -> None:
    with pytest.raises(BlockedTermEmpty) as caught:
        parse_term(raw)
    assert str(caught.value) == (
        "A blocked term needs at least one letter, number or sign besides * and spaces."
    )


def test_a_term_longer_than_the_limit_after_normalizing_is_refused() -> None:
    assert parse_term("Ａ" * MAX_TERM_CHARS).text == "a" * MAX_TERM_CHARS
    with pytest.raises(BlockedTermTooLong) as caught:
        parse_term("x" * (MAX_TERM_CHARS + 1))
    assert str(caught.value) == (
        f"A blocked term can be at most {MAX_TERM_CHARS} characters long; that one has 101."
    )
    assert parse_term("x\u200b" * MAX_TERM_CHARS).text == "x" * MAX_TERM_CHARS


def test_operator_terms_are_checked_with_the_key_named() -> None:
    assert [t.text for t in operator_terms(["Cat", "ＣＡＴ", "dog*"])] == ["cat", "dog*"]
    with pytest.raises(ConfigError, match=r"^moderation\.blocked_terms: '\*\*': A blocked term"):
        operator_terms(["fine", "**"])


def test_a_hostile_prompt_is_checked_quickly() -> None:
    """No backtracking: a long prompt of one letter against many wildcard terms."""
    pieces = ("a", "aa", "aaa", "b")
    shapes = [(p, q, r) for p in pieces for q in pieces for r in pieces]
    terms = [parse_term("*".join(shape)) for shape in shapes * 4][:MAX_TERMS]
    started = time.perf_counter()
    assert not any_match(terms, "c" + "a" * 6000)
    assert not any_match(terms, "a " * 3000)
    assert not any_match(terms, "ab" * 3000 + "c")
    assert not any_match(terms, "a" * 6000 + "c")
    assert any_match(terms, "a" * 6000)
    assert time.perf_counter() - started < 2.0


# --- storage, on both engines -------------------------------------------------------------------


async def test_add_list_remove(storage: Storage) -> None:
    sessions = storage.sessions
    added = await blocklist.add_term(sessions, GUILD, "ＣＡＴ*", added_by=7)
    assert (added.term, added.changed, added.count) == ("cat*", True, 1)
    again = await blocklist.add_term(sessions, GUILD, "Cat*", added_by=8)
    assert (again.term, again.changed, again.count) == ("cat*", False, 1)
    await blocklist.add_term(sessions, GUILD, "狗", added_by=7)
    await blocklist.add_term(sessions, OTHER, "dog", added_by=9)
    assert await blocklist.terms_of(sessions, GUILD) == ["cat*", "狗"]
    assert await blocklist.terms_of(sessions, OTHER) == ["dog"]

    removed = await blocklist.remove_term(sessions, GUILD, "CAT*")
    assert (removed.term, removed.changed, removed.count) == ("cat*", True, 1)
    missing = await blocklist.remove_term(sessions, GUILD, "cat*")
    assert (missing.changed, missing.count) == (False, 1)
    assert await blocklist.terms_of(sessions, GUILD) == ["狗"]
    assert await blocklist.terms_of(sessions, OTHER) == ["dog"]


async def test_a_server_holds_at_most_the_limit(storage: Storage) -> None:
    sessions = storage.sessions
    for number in range(MAX_TERMS):
        await blocklist.add_term(sessions, GUILD, f"term{number}", added_by=1)
    with pytest.raises(TooManyBlockedTerms):
        await blocklist.add_term(sessions, GUILD, "one more", added_by=1)
    # a term already there is no new term; another server has its own room
    assert not (await blocklist.add_term(sessions, GUILD, "TERM7", added_by=1)).changed
    assert (await blocklist.add_term(sessions, OTHER, "one more", added_by=1)).changed
    assert len(await blocklist.terms_of(sessions, GUILD)) == MAX_TERMS


async def test_the_check_reads_the_servers_terms_and_the_operators(storage: Storage) -> None:
    terms = Blocklist.build(storage.sessions, ["everywhere"])
    await blocklist.add_term(storage.sessions, GUILD, "castle", added_by=1)

    assert await terms.blocked(GUILD, "a CASTLE at night")
    assert not await terms.blocked(OTHER, "a castle at night")
    assert await terms.blocked(OTHER, "Everywhere at once")
    assert await terms.blocked(None, "everywhere, in a DM")
    assert not await terms.blocked(GUILD, "")
    with pytest.raises(PromptBlocked) as caught:
        await terms.check(guild_id=GUILD, user_id=5, command="imagine", prompt="castle")
    assert isinstance(caught.value, BotError)
    assert "castle" not in str(caught.value)
    await terms.check(guild_id=GUILD, user_id=5, command="imagine", prompt="a lighthouse")


async def test_a_servers_terms_are_kept_a_few_seconds_and_forgotten_when_changed(
    storage: Storage,
) -> None:
    """One read per server every few seconds, not per request; the admin's own change (the
    command calls forget) is in force at once."""
    now = [100.0]
    terms = Blocklist(storage.sessions, clock=lambda: now[0])
    await blocklist.add_term(storage.sessions, GUILD, "castle", added_by=1)
    assert await terms.blocked(GUILD, "a castle")

    # Written by someone else (another process, a script): seen once the kept copy is old.
    await blocklist.add_term(storage.sessions, GUILD, "tower", added_by=1)
    now[0] += blocklist.TERMS_SECONDS - 0.5
    assert not await terms.blocked(GUILD, "a tower")
    now[0] += 1.0
    assert await terms.blocked(GUILD, "a tower")

    await blocklist.remove_term(storage.sessions, GUILD, "castle")
    terms.forget(GUILD)
    assert not await terms.blocked(GUILD, "a castle")
    assert await terms.blocked(GUILD, "a tower")
    assert not await terms.blocked(OTHER, "a tower")
