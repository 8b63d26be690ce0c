"""The admin tests call the running bot ``bot``: it is ``harness`` under the module's ``quotas``."""

from __future__ import annotations

import pytest

from bot.testing.harness import Harness


@pytest.fixture
def bot(harness: Harness) -> Harness:
    return harness
