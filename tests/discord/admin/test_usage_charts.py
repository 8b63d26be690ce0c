"""/usage server and /usage me attach a chart of the last 30 days, made from real jobs.

Images come from real /imagine requests through the fake Discord and image API (one refused by
the image API's safety system); the chart is the PNG attachment of the private answer: Pillow
opens it, it has a sensible size and is no blank image, and its bars have the outcomes' colours.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from PIL import Image

from bot.charts import OUTCOMES
from bot.testing.harness import Harness, made
from tests.charts.test_usage import colours, hex_rgb
from tests.discord.admin.test_usage import QUOTAS, csv_files, failed, quotas, usage

__all__ = ["quotas"]  # the module's limits (the fixture of test_usage)


def chart(files: dict[str, bytes], max_size: tuple[int, int]) -> Image.Image:
    [(name, data)] = [(n, d) for n, d in files.items() if n.endswith(".png")]
    today = datetime.now(UTC).date()
    assert re.fullmatch(rf"usage-(server|member)-\d+-{today:%Y-%m-%d}\.png", name)
    assert len(data) < 1_000_000
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.size <= max_size
    return image.convert("RGB")


async def test_usage_server_attaches_a_chart_of_the_last_30_days(bot: Harness) -> None:
    fake = bot.fake
    await made(bot, fake.user, 2)
    await made(bot, fake.admin, 1)
    await failed(bot, fake.user)
    message = await usage(bot, "server", user=fake.admin)
    assert message.content.splitlines()[1].startswith("Images: **3** of 500")  # the text too
    [attachment] = message.attachments
    assert (attachment.width, attachment.height) == (1200, 600)
    present = colours(chart(message.files, (1200, 600)))
    assert hex_rgb(OUTCOMES["done"][1]) in present
    assert hex_rgb(OUTCOMES["failed"][1]) in present
    assert len(present) > 20


async def test_usage_server_with_csv_attaches_the_chart_and_the_ledger(bot: Harness) -> None:
    await made(bot, bot.fake.user, 1)
    message = await usage(bot, "server", {"csv": True}, user=bot.fake.admin)
    assert len(message.attachments) == 2
    chart(message.files, (1200, 600))
    [(_, data)] = csv_files(message)
    assert len(data.decode("utf-8").splitlines()) == 2  # header and the one job


async def test_usage_server_of_a_new_server_has_an_empty_chart(bot: Harness) -> None:
    message = await usage(bot, "server", user=bot.fake.admin)
    assert message.content.splitlines()[-1] == "No images made this month yet."
    present = colours(chart(message.files, (1200, 600)))
    assert len(present) > 5 and hex_rgb(OUTCOMES["failed"][1]) not in present


async def test_usage_me_attaches_a_small_chart_of_the_members_own_images(bot: Harness) -> None:
    fake = bot.fake
    await made(bot, fake.user, 2)
    await made(bot, fake.admin, 1)
    await failed(bot, fake.admin)  # the admin's refusal is not on the member's chart
    message = await usage(bot, "me")
    assert message.content.startswith("**You today:** 2 of 5 images used")
    [attachment] = message.attachments
    assert (attachment.width, attachment.height) == (800, 400)
    present = colours(chart(message.files, (800, 400)))
    assert hex_rgb(OUTCOMES["done"][1]) in present
    assert hex_rgb(OUTCOMES["failed"][1]) not in present
    assert QUOTAS.member_images_per_day == 5


async def test_usage_me_before_any_image_still_has_its_chart(bot: Harness) -> None:
    message = await usage(bot, "me", user=bot.fake.admin)
    assert message.content.startswith("**You today:** 0 of 5 images used")
    assert len(colours(chart(message.files, (800, 400)))) > 5


async def test_the_numbers_come_without_the_chart_when_it_cannot_be_drawn(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await made(bot, bot.fake.user, 1)
    bot.bot.engine.images.close()  # the image worker takes no more work (as at shutdown)
    message = await usage(bot, "server", user=bot.fake.admin)
    assert message.content.splitlines()[1].startswith("Images: **1** of 500")
    assert message.attachments == []
    assert "usage chart" in caplog.text
