"""Decompression bombs: the pixel limit holds before any pixel is decoded, in every format.

Each check runs in a child process whose peak memory (``ru_maxrss``) is measured around the
call, because what matters is what the process allocates, not what the call returns: before
this was fixed a real 20000x20000 PNG was refused too, but only after 6 s and 1.6 GB. The
child also runs under an address-space limit so a regression cannot take the machine down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.imaging.samples import bilevel_png, encode

REPO = Path(__file__).resolve().parents[2]
#: The child may not grow its peak memory by more than this while refusing an upload.
MAX_GROWTH_MB = 12
ADDRESS_SPACE_LIMIT = 1536 * 1024 * 1024

_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from bot.imaging import ImageError, ImageLimits, probe
data = open(sys.argv[1], "rb").read()
limits = ImageLimits(max_pixels=int(sys.argv[2]), max_bytes=100 * 1024 * 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    probe(data, limits)
    outcome = "accepted"
except ImageError as exc:
    outcome = str(exc)
except MemoryError:
    outcome = "MemoryError"
seconds = time.monotonic() - started
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"outcome": outcome, "seconds": seconds, "growth_mb": growth / 1024}}))
"""


def refuse_in_child(path: Path, max_pixels: int) -> dict[str, object]:
    script = _CHILD.format(limit=ADDRESS_SPACE_LIMIT)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(max_pixels)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_fully_encoded_20000_square_png_is_refused_at_once_without_decoding(
    tmp_path: Path,
) -> None:
    data = bilevel_png(20_000, 20_000)
    assert len(data) < 2_000_000
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    result = refuse_in_child(path, 50_000_000)
    assert result["outcome"] == (
        "That image is 20000x20000 pixels (400 megapixels); the limit is 50 megapixels. "
        "Please upload a smaller version."
    )
    assert result["growth_mb"] < MAX_GROWTH_MB
    assert result["seconds"] < 0.5


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 80}),
        ("WEBP", {"quality": 50}),
        ("GIF", {}),
        ("GIF", {"save_all": True, "append_images": "second frame"}),
        ("BMP", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("TIFF", {"compression": "tiff_lzw", "save_all": True, "append_images": "second frame"}),
    ],
)
def test_every_format_is_refused_before_decoding(
    tmp_path: Path, fmt: str, params: dict[str, object]
) -> None:
    # 4000x4000 decodes to 16-64 MB, far above the growth allowed; the limit is 1 MP.
    picture = Image.new("RGB", (4000, 4000), (200, 30, 30))
    if fmt == "GIF":
        picture = picture.convert("P")
    if params.get("append_images"):
        params = {**params, "append_images": [Image.new(picture.mode, picture.size)]}
    path = tmp_path / f"big.{fmt.lower()}"
    path.write_bytes(encode(picture, fmt, **params))
    result = refuse_in_child(path, 1_000_000)
    assert str(result["outcome"]).startswith("That image is 4000x4000 pixels (16 megapixels)")
    assert result["growth_mb"] < MAX_GROWTH_MB
