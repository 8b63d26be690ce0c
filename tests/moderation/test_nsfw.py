"""The NSFW rules' storage (on SQLite and PostgreSQL, the ``database_url`` fixture) and how they
change an order at admission."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage
from bot.generation import ImageOrder
from bot.moderation import nsfw
from bot.moderation.nsfw import ContentRules, NsfwRules, apply_rules, with_server_negative
from bot.providers import Operation

GUILD, OTHER = 11, 22


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    engine = create_engine(database_url)
    await upgrade_database(engine)
    yield Storage(engine, create_sessionmaker(engine))
    await engine.dispose()


async def test_each_rule_is_stored_per_server(storage: Storage) -> None:
    sessions = storage.sessions
    assert await nsfw.rules_of(sessions, GUILD) == NsfwRules()

    await nsfw.set_low_moderation(sessions, GUILD, True)
    await nsfw.set_spoilers(sessions, GUILD, True, channel_id=5)
    await nsfw.set_spoilers(sessions, GUILD, True, channel_id=3)
    await nsfw.set_negative_prompt(sessions, GUILD, "  lowres  ")
    rules = await nsfw.set_spoilers(sessions, GUILD, False, channel_id=5)

    assert rules == NsfwRules(
        low_moderation=True, spoiler_channels=frozenset({3}), sd_negative_prompt="lowres"
    )
    assert await nsfw.rules_of(sessions, GUILD) == rules
    assert await nsfw.rules_of(sessions, OTHER) == NsfwRules()
    cleared = await nsfw.set_negative_prompt(sessions, GUILD, "   ")
    assert cleared.sd_negative_prompt == ""


async def test_the_reader_keeps_rules_until_told_they_changed(storage: Storage) -> None:
    now = [0.0]
    rules = ContentRules(storage.sessions, clock=lambda: now[0])
    assert not (await rules.of(GUILD)).spoiler_results
    await nsfw.set_spoilers(storage.sessions, GUILD, True)
    assert not (await rules.of(GUILD)).spoiler_results  # kept a few seconds
    rules.forget(GUILD)
    assert (await rules.of(GUILD)).spoiler_results
    assert rules.last_known(GUILD).spoiler_results
    assert await rules.of(None) == NsfwRules()


def test_spoilers_hold_in_the_chosen_channels_and_their_threads() -> None:
    rules = NsfwRules(spoiler_channels=frozenset({7}))
    assert rules.spoilers_in(7, None)
    assert rules.spoilers_in(99, 7)  # a thread of channel 7
    assert not rules.spoilers_in(8, None)
    assert NsfwRules(spoiler_results=True).spoilers_in(8, None)


LOW = NsfwRules(low_moderation=True)


@pytest.mark.parametrize(
    ("rules", "operation", "age_restricted", "takes", "expected"),
    [
        (LOW, Operation.GENERATE, True, True, "low"),
        (LOW, Operation.GENERATE, False, True, None),  # an ordinary channel
        (NsfwRules(), Operation.GENERATE, True, True, None),  # not allowed by the server
        (LOW, Operation.GENERATE, True, False, None),  # dall-e, SD: no such parameter
        (LOW, Operation.EDIT, True, True, None),  # the edits form has no moderation field
    ],
)
def test_low_moderation_only_where_everything_allows_it(
    rules: NsfwRules, operation: Operation, age_restricted: bool, takes: bool, expected: str | None
) -> None:
    order = ImageOrder(operation, prompt="a fox", moderation="low")  # a Redo's: decided anew
    applied = apply_rules(
        order, rules, age_restricted=age_restricted, takes_moderation=takes, sd_backend=False
    )
    assert applied.moderation == expected


def test_the_server_negative_prompt_is_added_once_on_sd_backends_only() -> None:
    rules = NsfwRules(sd_negative_prompt="lowres")
    order = ImageOrder(Operation.GENERATE, prompt="a fox", negative_prompt="fog")
    kwargs = {"age_restricted": False, "takes_moderation": False}
    once = apply_rules(order, rules, sd_backend=True, **kwargs)
    assert once.negative_prompt == "fog, lowres"
    assert apply_rules(once, rules, sd_backend=True, **kwargs).negative_prompt == "fog, lowres"
    assert apply_rules(order, rules, sd_backend=False, **kwargs).negative_prompt == "fog"
    assert with_server_negative("", "lowres") == "lowres"
    assert with_server_negative("fog", "") == "fog"
