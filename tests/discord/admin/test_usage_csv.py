"""The /usage server CSV as an admin opens it in a spreadsheet: text is text, never a formula.

No cell of the ledger is typed by members (prompts are left out), but some text comes from
outside the bot: the provider's answer has written a job's size and quality, and model names
are the operator's. The job below is made by a real /imagine; its quality is then set the way a
hostile provider's answer sets it, and the file comes from the real command.
"""

from __future__ import annotations

import csv
import io

from sqlalchemy import update

from bot.db import Job
from bot.testing.harness import Harness, made

FORMULA = '=HYPERLINK("x")'  # a formula that fits the quality column (16 characters)


async def test_a_formula_from_the_provider_arrives_as_text(harness: Harness) -> None:
    fake = harness.fake
    await made(harness, fake.user, 1)
    async with harness.bot.storage.sessions() as session, session.begin():
        await session.execute(update(Job).values(quality=FORMULA, size="@SUM(1+1)"))

    handle = await fake.slash("usage", {"csv": True}, subcommand="server", user=fake.admin)
    message = await handle.wait_message(lambda m: bool(m.files))
    [data] = [data for name, data in message.files.items() if name.endswith(".csv")]
    [row] = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert row["quality"] == "'" + FORMULA
    assert row["size"] == "'@SUM(1+1)"
    assert row["model"] == "dall-e-2" and row["cost_usd"] == "0.020000"
