"""bot.studio and bot.generation name the same actions: generation knows them by value (it sits
below bot.studio), so a renamed action would silently lose its canvas or its instruction."""

from __future__ import annotations

from bot.generation import ACTION_INSTRUCTIONS, CANVAS_ACTIONS, WHOLE_IMAGE_ACTIONS
from bot.studio import BUILDERS, StudioAction, available_actions


def test_every_canvas_and_variation_action_is_a_studio_action_with_a_button() -> None:
    values = {action.value for action in StudioAction}
    assert set(CANVAS_ACTIONS) | WHOLE_IMAGE_ACTIONS | set(ACTION_INSTRUCTIONS) <= values
    mine = {StudioAction(value) for value in set(CANVAS_ACTIONS) | WHOLE_IMAGE_ACTIONS}
    assert mine <= available_actions() and mine <= set(BUILDERS)
    assert set(ACTION_INSTRUCTIONS) == set(CANVAS_ACTIONS) | WHOLE_IMAGE_ACTIONS
