from __future__ import annotations

import asyncio
import threading

import pytest

from bot.imaging import ImageError, ImageLimits, ImageTooManyPixels, ImageWorker
from tests.imaging.samples import decode_png, encode, photo


async def test_work_runs_off_the_event_loop_thread() -> None:
    async with ImageWorker(max_workers=2) as worker:
        loop_thread = threading.get_ident()
        ran_on = await worker.run(threading.get_ident)
    assert ran_on != loop_thread


async def test_normalize_through_the_worker() -> None:
    picture = photo((300, 200)).convert("RGBA")
    picture.paste((0, 0, 0, 0), (0, 0, 100, 100))
    async with ImageWorker() as worker:
        result = await worker.normalize_image(encode(picture), side=256)
        edit = await worker.normalize_edit(encode(picture), None, side=256)
        info = await worker.probe(encode(picture))
    assert decode_png(result.png).size == (256, 256)
    assert decode_png(edit.mask_png).size == (256, 256)
    assert info == ("PNG", 300, 200)


async def test_errors_reach_the_caller_as_image_errors() -> None:
    async with ImageWorker(limits=ImageLimits(max_pixels=50_000)) as worker:
        with pytest.raises(ImageTooManyPixels):
            await worker.normalize_image(encode(photo((300, 200))), side=256)
        with pytest.raises(ImageError):
            await worker.normalize_edit(b"nope", None, side=256)
        # A call can bring its own limits.
        await worker.probe(encode(photo((300, 200))), limits=ImageLimits())


async def test_the_event_loop_keeps_running_while_images_are_processed() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with ImageWorker() as worker:
        task = asyncio.create_task(ticker())
        await worker.normalize_image(encode(photo((2000, 1500)), "JPEG"), side=1024)
        task.cancel()
    assert ticks > 1


async def test_closed_worker_refuses_new_work() -> None:
    worker = ImageWorker()
    await worker.aclose()
    with pytest.raises(RuntimeError):
        await worker.run(int)


def test_sync_context_manager_for_the_entry_point() -> None:
    with ImageWorker(max_workers=1) as worker:
        assert worker.limits == ImageLimits()
    with pytest.raises(ValueError):
        ImageWorker(max_workers=0)
