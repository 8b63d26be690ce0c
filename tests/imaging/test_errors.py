from __future__ import annotations

import string

import pytest

import bot.imaging.errors as errors_module
from bot.errors import BotError
from bot.imaging.errors import (
    ImageAspectRatio,
    ImageError,
    ImageTooLarge,
    MaskMarksNothing,
    NotAnImage,
    megabytes,
)

ERROR_CLASSES = [
    obj
    for obj in vars(errors_module).values()
    if isinstance(obj, type) and issubclass(obj, ImageError)
]


def _sample_params(template: str) -> dict[str, object]:
    names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    return dict.fromkeys(names, 3)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_is_a_bot_error_with_its_own_key_and_a_complete_message(
    cls: type[ImageError],
) -> None:
    error = cls(**_sample_params(cls.template))
    assert isinstance(error, BotError)
    assert cls.key.startswith("image.")
    assert "{" not in str(error) and "}" not in str(error)
    assert not cls.operator_problem  # members can fix all of these themselves


def test_keys_are_unique() -> None:
    keys = [cls.key for cls in ERROR_CLASSES]
    assert len(keys) == len(set(keys))


def test_messages_name_the_problem_and_the_limit() -> None:
    assert str(ImageTooLarge(size_mb=31.2, limit_mb=25.0)) == (
        "That file is 31.2 MB; the limit is 25 MB."
    )
    message = str(ImageAspectRatio(width=1, height=10000, max_ratio=4.0))
    assert message.startswith(
        "That image is 1x10000 pixels; the longest side may be at most 4 times the shortest."
    )


def test_errors_about_the_mask_file_say_so() -> None:
    error = NotAnImage(formats="PNG or JPEG").about("mask")
    assert isinstance(error, NotAnImage)
    assert error.subject == "mask"
    assert str(error) == "Mask: That file isn't an image. Please upload a picture as PNG or JPEG."
    # Mask errors already talk about the mask.
    assert not str(MaskMarksNothing().about("mask")).startswith("Mask:")


def test_sizes_round_up_so_a_file_just_over_the_limit_does_not_read_as_equal() -> None:
    limit = 25 * 1024 * 1024
    assert megabytes(limit + 1, round_up=True) == 25.1
    assert megabytes(limit) == 25.0
