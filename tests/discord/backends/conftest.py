"""Fixtures and helpers of the backend tests: a fake AUTOMATIC1111 server, a job as stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.db.models import Job
from bot.jobs import store
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.harness import Harness


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as server:
        yield server


async def stored_job(harness: Harness, job_id: int) -> Job:
    job = await store.get_job(harness.bot.storage.sessions, job_id)
    assert job is not None
    return job
