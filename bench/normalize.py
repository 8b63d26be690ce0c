"""Benchmark: normalizing a 12 MP phone photo versus the naive path from the API guides.

Run with ``python bench/normalize.py`` (no network, about 15 s on two cores; ``--quick``: one
run and one noise input, to prove the script works, as CI does). It makes a
photo-like 4000x3000 JPEG in memory (smooth colour fields, shapes, sensor-like noise, quality
90), then times each path's CPU time (``time.process_time``: on a shared machine wall time
mostly measures the neighbours; both paths are single-threaded), alternating so both see the
same machine load:

* naive: ``Image.open`` -> ``resize((1024, 1024))`` -> ``save(PNG)``, as the guides do;
* ours: ``normalize_image(data, side=1024)`` with every check it makes on real uploads.

The target (DESIGN.md section 6) is ours <= 0.14 x naive. It prints the PNG encoder used, also
normalizes random noise, the worst case for the 4,000,000-byte limit, and prints markdown
tables for the README.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import io  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from PIL import Image  # noqa: E402

from bot.imaging import normalize_image  # noqa: E402
from bot.imaging.decode import load, open_image, to_rgb  # noqa: E402
from bot.imaging.encode import ENCODER  # noqa: E402
from bot.imaging.geometry import DEFAULT_FIT, apply, plan  # noqa: E402
from bot.imaging.limits import DEFAULT_LIMITS  # noqa: E402
from bot.testing.images import photo_jpeg  # noqa: E402

QUICK = False
RUNS = 7
#: The noise inputs: mode and side.
NOISE = (("RGBA", 1024), ("RGB", 1024), ("RGBA", 2048), ("RGB", 2048))
SIDE = 1024
TARGET = 0.14
OUTPUT_LIMIT = 4_000_000


def naive(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    im = im.resize((SIDE, SIDE))
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


def ours(data: bytes) -> bytes:
    return normalize_image(data, side=SIDE).png


def floor(data: bytes) -> bytes:
    """normalize_image's decoding and resizing alone, without any PNG encoding."""
    opened = open_image(data, DEFAULT_LIMITS)
    placement = plan(opened.size, (SIDE, SIDE), DEFAULT_FIT)
    im, scale = load(opened, max_reduce=placement.max_reduce)
    return apply(to_rgb(im, keep_alpha=False), placement, scale=scale).tobytes()


def decode(data: bytes) -> bytes:
    """normalize_image's JPEG decoding alone (at the scale it drafts): mostly libjpeg's Huffman
    decoding, which no scale makes cheaper."""
    opened = open_image(data, DEFAULT_LIMITS)
    placement = plan(opened.size, (SIDE, SIDE), DEFAULT_FIT)
    im, _ = load(opened, max_reduce=placement.max_reduce)
    im.close()
    return b""


def time_alternating(
    functions: dict[str, Callable[[bytes], bytes]], data: bytes
) -> dict[str, tuple[float, int]]:
    """Median CPU milliseconds and output size for each function, runs interleaved."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    sizes: dict[str, int] = {}
    for name, fn in functions.items():
        sizes[name] = len(fn(data))  # warm-up: imports, plugin registration, caches
    for _ in range(RUNS):
        for name, fn in functions.items():
            start = time.process_time()
            fn(data)
            times[name].append((time.process_time() - start) * 1000)
    return {name: (statistics.median(times[name]), sizes[name]) for name in functions}


def noise_png(mode: str, side: int) -> bytes:
    im = Image.frombytes(mode, (side, side), os.urandom(side * side * len(mode)))
    buffer = io.BytesIO()
    im.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def main() -> None:
    data = photo_jpeg()
    paths = {"naive": naive, "ours": ours, "floor": floor, "decode": decode}
    results = time_alternating(paths, data)
    naive_ms, naive_bytes = results["naive"]
    ours_ms, ours_bytes = results["ours"]
    ratio = ours_ms / naive_ms
    floor_ms = results["floor"][0]
    decode_ms = results["decode"][0]
    verdict = "yes" if ratio <= TARGET else "NO"

    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(f"### Normalization benchmark ({os.cpu_count()} CPUs, median of {RUNS} runs){mode}")
    print()
    print(f"12 MP JPEG (4000x3000, {len(data) / 1e6:.1f} MB) to a {SIDE}x{SIDE} PNG:")
    print()
    print("| path | median CPU ms | output bytes |")
    print("|---|---:|---:|")
    print(f"| naive (open, resize, save PNG) | {naive_ms:.1f} | {naive_bytes:,} |")
    print(f"| bot.imaging.normalize_image ({ENCODER}) | {ours_ms:.1f} | {ours_bytes:,} |")
    print(f"| its decoding and resizing alone (no PNG) | {floor_ms:.1f} | - |")
    print(f"| its JPEG decoding alone | {decode_ms:.1f} | - |")
    print()
    print(f"ratio ours/naive: **{ratio:.3f}** (target <= {TARGET}: {verdict})")
    print(f"ratio decoding and resizing alone/naive: {floor_ms / naive_ms:.3f}")
    print(
        f"where ours goes: decoding {decode_ms:.1f} ms, resizing {floor_ms - decode_ms:.1f} ms, "
        f"PNG encoding {ours_ms - floor_ms:.1f} ms"
    )
    print()
    print(f"Incompressible input (random noise), limit {OUTPUT_LIMIT:,} bytes:")
    print()
    print("| input | requested side | output side | quantized | output bytes | under limit |")
    print("|---|---:|---:|---|---:|---|")
    for colours, side in NOISE:
        source = noise_png(colours, side)
        result = normalize_image(source, side=side, keep_alpha=True)
        under = "yes" if len(result.png) < OUTPUT_LIMIT else "NO"
        print(
            f"| {colours} noise {side}x{side} ({len(source):,} bytes as plain PNG) | {side} "
            f"| {result.side} | {'yes' if result.quantized else 'no'} | {len(result.png):,} "
            f"| {under} |"
        )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        RUNS, NOISE = 1, NOISE[:1]
    main()
