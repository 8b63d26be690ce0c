"""Database errors never carry the values of the statement that failed (tokens, prompts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.models import Intake, utcnow

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OmZha2UtdG9rZW4tdmFsdWU"


async def test_a_failed_write_names_no_value_of_the_row(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await upgrade_database(engine)
        sessions = create_sessionmaker(engine)

        def intake() -> Intake:
            return Intake(
                interaction_id=1,
                interaction_token=TOKEN,
                interaction_at=utcnow(),
                user_id=2,
                command="imagine",
                request="{}",
            )

        async with sessions() as session, session.begin():
            session.add(intake())
        with pytest.raises(IntegrityError) as caught:  # the same interaction twice
            async with sessions() as session, session.begin():
                session.add(intake())
        assert TOKEN not in str(caught.value)
        assert "hidden" in str(caught.value)  # SQLAlchemy says the parameters were left out
    finally:
        await engine.dispose()
