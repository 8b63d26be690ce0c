"""An intake's stored request keeps what the channel was when the member asked."""

from __future__ import annotations

import json

from bot.generation import ImageOrder
from bot.jobs.intake import IntakeRequest, order_options
from bot.providers import Operation


def test_an_age_restricted_channel_survives_the_json() -> None:
    request = IntakeRequest(order=order_options(ImageOrder(Operation.GENERATE, prompt="a fox")))
    flagged = IntakeRequest(order=request.order, age_restricted=True)

    assert IntakeRequest.from_json(flagged.to_json()).age_restricted
    assert not IntakeRequest.from_json(request.to_json()).age_restricted


def test_an_intake_stored_before_the_flag_existed_is_not_age_restricted() -> None:
    stored = json.loads(IntakeRequest(order={"operation": "generate", "prompt": "a fox"}).to_json())
    del stored["age_restricted"]

    assert not IntakeRequest.from_json(json.dumps(stored)).age_restricted
