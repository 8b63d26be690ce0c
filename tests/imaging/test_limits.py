from __future__ import annotations

import pytest

from bot.imaging import (
    DownloadTooLarge,
    ImageLimits,
    ImageTooLarge,
    SizeCappedBuffer,
    check_declared_size,
)

MIB = 1024 * 1024


def test_declared_size_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        check_declared_size(int(31.2 * MIB), 25 * MIB)
    assert str(caught.value) == "That file is 31.2 MB; the limit is 25 MB."


@pytest.mark.parametrize("declared", [None, 0, 25 * MIB])
def test_unknown_or_allowed_declared_size_passes(declared: int | None) -> None:
    check_declared_size(declared, 25 * MIB)


def test_streaming_buffer_fails_on_the_chunk_that_crosses_the_limit() -> None:
    buffer = SizeCappedBuffer(10)
    buffer.feed(b"12345")
    buffer.feed(b"67890")
    assert len(buffer) == 10
    with pytest.raises(DownloadTooLarge) as caught:
        buffer.feed(b"x")
    assert isinstance(caught.value, ImageTooLarge)  # callers can catch both kinds at once
    assert buffer.getvalue() == b"1234567890"  # the crossing chunk was never stored


def test_streaming_buffer_message_names_the_limit() -> None:
    buffer = SizeCappedBuffer(25 * MIB)
    with pytest.raises(DownloadTooLarge, match="larger than the limit of 25 MB"):
        buffer.feed(bytes(25 * MIB + 1))


@pytest.mark.parametrize(
    "changes",
    [
        {"max_bytes": 0},
        {"max_pixels": 0},
        {"max_aspect_ratio": 0.5},
        {"output_max_bytes": 1000},
    ],
)
def test_nonsense_limits_are_refused_at_startup(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ImageLimits(**changes)  # type: ignore[arg-type]
