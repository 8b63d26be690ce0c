"""/quota end to end: what an admin sees, and what the limits they set do to members' requests.

Every answer is private. The operator's config (QUOTAS) has small numbers so the tests reach the
limits with a few images; results and refusals are the ones members see on the wire.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.config import QuotaSettings
from bot.testing.discord.payloads import P
from bot.testing.harness import Harness, made, quota, refused, synced

QUOTAS = QuotaSettings(
    images_per_day=50,
    images_per_month=500,
    spend_per_month_usd=5.0,
    member_images_per_day=2,
    max_images_per_day=100,
    max_images_per_month=1000,
    max_spend_per_month_usd=20.0,
    max_member_images_per_day=10,
    max_n=4,
)
TRANSLATED = {"ko", "ja", "zh-CN", "zh-TW"}


@pytest.fixture
def quotas() -> QuotaSettings:
    return QUOTAS


def line(text: str, start: str) -> str:
    found = [item for item in text.splitlines() if item.startswith(start)]
    assert found, f"no line starting {start!r} in:\n{text}"
    return found[0]


# --- what Discord is told ----------------------------------------------------------------------


async def test_quota_is_for_server_managers_and_translated(bot: Harness) -> None:
    command = synced(bot.fake, "quota")
    assert command["default_member_permissions"] == str(int(P.MANAGE_GUILD))
    assert command.get("contexts") == [0]  # servers only
    assert set(command["name_localizations"]) == TRANSLATED
    subs = {option["name"]: option for option in command["options"]}
    assert set(subs) == {"show", "set", "role", "channels", "reset"}
    assert {o["name"] for o in subs["channels"]["options"]} == {"add", "remove", "clear"}
    for sub in subs.values():
        assert set(sub["name_localizations"]) == TRANSLATED
        for option in sub.get("options") or []:
            assert set(option["name_localizations"]) == TRANSLATED
            assert set(option["description_localizations"]) == TRANSLATED
    numbers = [o for o in subs["set"]["options"] if o["type"] in (4, 10)]
    assert len(numbers) == 4 and all(o["min_value"] == 0 for o in numbers)
    assert subs["set"]["name_localizations"]["ko"] == "설정"


async def test_a_member_cannot_use_quota(bot: Harness) -> None:
    with pytest.raises(PermissionError):  # Discord does not even offer it
        await bot.fake.slash("quota", subcommand="show", user=bot.fake.user)


async def test_the_permission_is_checked_again_when_the_command_runs(bot: Harness) -> None:
    # A server may open the command to everyone in its Integrations settings.
    synced(bot.fake, "quota")["default_member_permissions"] = None
    text = await quota(bot, "set", {"member_images_per_day": 9}, user=bot.fake.user)
    assert text == "You need the Manage Server permission(s) to do that."
    assert "(default)" in line(await quota(bot, "show"), "Images per member per day")


# --- show and set ------------------------------------------------------------------------------


async def test_show_with_the_operators_defaults(bot: Harness) -> None:
    text = await quota(bot, "show")
    assert text.splitlines()[0] == "**Image limits on this server**"
    assert line(text, "Server images per day") == (
        "Server images per day: **50** (default) (ceiling 100)"
    )
    assert line(text, "Server images per month") == (
        "Server images per month: **500** (default) (ceiling 1,000)"
    )
    assert line(text, "Server spend per month") == (
        "Server spend per month: **$5.00** (default) (ceiling $20.00)"
    )
    assert line(text, "Images per member per day") == (
        "Images per member per day: **2** (default) (ceiling 10)"
    )
    assert re.fullmatch(
        r"Time zone: \*\*UTC\*\* \(default\)\. Today ends <t:\d+:R>; this month ends <t:\d+:R>\.",
        line(text, "Time zone"),
    )
    assert "Channels: all" in text
    assert "Per request: at most 4 images. Models: any. Sizes: any." in text
    assert "Role rules: none" in text


async def test_show_in_korean(bot: Harness) -> None:
    text = await quota(bot, "show", locale="ko")
    assert text.splitlines()[0] == "**이 서버의 이미지 한도**"
    assert "서버 하루 이미지: **50장** (기본값) (상한 100장)" in text


async def test_set_within_the_ceilings(bot: Harness) -> None:
    text = await quota(
        bot,
        "set",
        {
            "images_per_day": 80,
            "images_per_month": 1000,
            "spend_per_month": 12.5,
            "member_images_per_day": 7,
            "timezone": "asia/seoul",
        },
    )
    assert text.splitlines()[0] == "Saved."
    assert line(text, "Server images per day") == "Server images per day: **80** (ceiling 100)"
    assert "**1,000** (ceiling 1,000)" in text
    assert "Server spend per month: **$12.50** (ceiling $20.00)" in text
    assert "Images per member per day: **7** (ceiling 10)" in text
    assert line(text, "Time zone").startswith("Time zone: **Asia/Seoul**. Today ends")
    # One option at a time leaves the others as they are.
    text = await quota(bot, "set", {"images_per_day": 60})
    assert "**60**" in line(text, "Server images per day")
    assert "**7**" in line(text, "Images per member per day")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"images_per_day": 101},
            "This server's images per day can be at most 100 (the bot operator's ceiling); "
            "101 is too many.",
        ),
        (
            {"images_per_month": 5000},
            "This server's images per month can be at most 1,000 (the bot operator's ceiling); "
            "5,000 is too many.",
        ),
        (
            {"spend_per_month": 25},
            "This server's spend per month can be at most $20.00 (the bot operator's ceiling); "
            "$25.00 is too much.",
        ),
        (
            {"member_images_per_day": 11, "images_per_day": 5},
            "A member's images per day can be at most 10 (the bot operator's ceiling); "
            "11 is too many.",
        ),
    ],
)
async def test_a_value_above_the_ceiling_is_refused_and_nothing_changes(
    bot: Harness, options: dict[str, Any], message: str
) -> None:
    before = await quota(bot, "show")
    assert await quota(bot, "set", options) == message
    assert await quota(bot, "show") == before


async def test_negative_values_and_unknown_time_zones_are_refused(bot: Harness) -> None:
    with pytest.raises(ValueError, match="outside"):  # Discord's own client stops it
        await bot.fake.slash("quota", {"images_per_day": -1}, subcommand="set", user=bot.fake.admin)
    # A client that ignores min_value still gets a clear answer from the bot.
    for sub in synced(bot.fake, "quota")["options"]:
        for option in sub.get("options") or []:
            option.pop("min_value", None)
    assert await quota(bot, "set", {"member_images_per_day": -3}) == (
        "A limit can't be negative (-3). Use 0 to stop image making."
    )
    assert await quota(bot, "set", {"timezone": "Mars/Olympus_Mons"}) == (
        "“Mars/Olympus_Mons” is not a time zone I know. Use a name like Asia/Seoul, "
        "Europe/Berlin, America/New_York or UTC."
    )
    assert await quota(bot, "set") == "Nothing was changed: choose at least one option."
    assert await quota(bot, "set", {"timezone": "Nowhere"}, locale="ko") == (
        "알 수 없는 시간대예요: “Nowhere”. Asia/Seoul, Europe/Berlin, America/New_York, UTC "
        "같은 이름을 입력해 주세요."
    )


# --- the limits take effect --------------------------------------------------------------------


async def test_a_new_member_limit_refuses_the_next_request(bot: Harness) -> None:
    member = bot.fake.user
    await quota(bot, "set", {"member_images_per_day": 3})
    await made(bot, member, 2)
    text = await refused(bot, member, 2)
    assert re.fullmatch(
        r"You have used your 3 images for today \(1 left, you asked for 2\)\. "
        r"Your limit resets <t:\d+:R>\.",
        text,
    )
    await made(bot, member, 1)


async def test_a_new_guild_limit_refuses_everyone(bot: Harness) -> None:
    await quota(bot, "set", {"images_per_day": 1})
    await made(bot, bot.fake.user)
    text = await refused(bot, bot.fake.admin)
    assert text.startswith("This server has used its 1 images for today (0 left")


async def test_role_limit_and_exemption(bot: Harness) -> None:
    fake = bot.fake
    artists = fake.add_role(fake.guild, "Artists")
    staff = fake.add_role(fake.guild, "Staff")
    carol = fake.add_member(fake.guild, "carol", roles=[artists])
    dave = fake.add_member(fake.guild, "dave", roles=[staff])
    text = await quota(bot, "role", {"role": artists, "images_per_day": 5})
    assert text == f"Members with <@&{artists.id}> may now make up to 5 images a day."
    text = await quota(bot, "role", {"role": staff, "exempt": True})
    assert text == (
        f"Members with <@&{staff.id}> now have no daily limit (the server's limits still apply)."
    )
    show = await quota(bot, "show")
    assert f"• <@&{artists.id}>: 5 images per member per day" in show
    assert f"• <@&{staff.id}>: no daily limit" in show

    await made(bot, carol, 4)
    assert (await refused(bot, carol, 2)).startswith("You have used your 5 images for today")
    await made(bot, dave, 4)
    await made(bot, dave, 4)  # 8 > the member limit of 2: exempt
    await made(bot, fake.user, 2)
    assert (await refused(bot, fake.user)).startswith("You have used your 2 images for today")

    text = await quota(bot, "role", {"role": staff, "remove": True})
    assert text == (
        f"The rule for <@&{staff.id}> is removed: its members have the per-member limit (2 a day)."
    )
    assert (await refused(bot, dave)).startswith("You have used your 2 images for today")
    assert await quota(bot, "role", {"role": staff}) == (
        f"<@&{staff.id}> has no rule: its members have the per-member limit (2 a day)."
    )
    assert await quota(bot, "role", {"role": artists, "images_per_day": 11}) == (
        "A member's images per day can be at most 10 (the bot operator's ceiling); 11 is too many."
    )


async def test_a_role_limit_below_the_member_limit_lowers_it(bot: Harness) -> None:
    fake = bot.fake
    newcomers = fake.add_role(fake.guild, "Newcomers")
    newcomer = fake.add_member(fake.guild, "newcomer", roles=[newcomers])
    text = await quota(bot, "role", {"role": newcomers, "images_per_day": 1})
    assert text == f"Members with <@&{newcomers.id}> may now make up to 1 images a day."
    await made(bot, newcomer, 1)
    assert (await refused(bot, newcomer)).startswith("You have used your 1 images for today")


async def test_channels_restrict_where_images_are_made(bot: Harness) -> None:
    fake = bot.fake
    art = fake.add_channel(fake.guild, "art")
    text = await quota(bot, "channels add", {"channel": art})
    assert text == f"Images can now be made only in: <#{art.id}>."
    assert f"Channels: only <#{art.id}>" in await quota(bot, "show")
    assert await refused(bot, fake.user) == (
        f"Images can't be made in this channel. Try <#{art.id}>."
    )
    await made(bot, fake.user, channel=art)
    text = await quota(bot, "channels remove", {"channel": fake.channel})
    assert text.splitlines() == [
        f"<#{fake.channel.id}> was not on the list.",
        f"Images can now be made only in: <#{art.id}>.",
    ]
    assert await quota(bot, "channels clear") == "Images can now be made in every channel."
    await made(bot, fake.user)
    await quota(bot, "channels add", {"channel": art})
    text = await quota(bot, "channels remove", {"channel": art})
    assert text == "Images can now be made in every channel."


async def test_reset_member_lets_them_generate_again(bot: Harness) -> None:
    member = bot.fake.user
    await made(bot, member, 2)
    assert (await refused(bot, member)).startswith("You have used your 2 images for today")
    text = await quota(bot, "reset", {"member": member})
    assert text == f"<@{member.user.id}>'s image count for today starts again from zero now."
    await made(bot, member, 2)
    assert (await refused(bot, member)).startswith("You have used your 2 images for today")


async def test_answers_are_translated(bot: Harness) -> None:
    art = bot.fake.add_channel(bot.fake.guild, "art")
    text = await quota(bot, "channels add", {"channel": art}, locale="ko")
    assert text == f"이제 다음 채널에서만 이미지를 만들 수 있어요: <#{art.id}>."
    text = await quota(bot, "set", {"images_per_day": 500}, locale="ja")
    assert text.startswith("サーバーの 1 日の画像数は最大 100 枚までです")
