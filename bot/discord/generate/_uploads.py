"""Reading members' uploads from Discord's CDN without trusting them.

An attachment is refused before any byte is read when Discord already tells us it is not an
image or too large, and a download stops the moment it passes the limit (a declared size can be
missing or wrong). Decoding and every other check happen in bot.imaging.

A request's raw uploads are normalized as soon as they are read (:meth:`UploadReader.read_order`),
before the request waits for its quota reservation and its turn: a 12 MP phone photo is 4-5 MB
as a JPEG and ~30 MB while it is normalized, the PNG sent for it ~1.3 MB. At most
``MAX_ADMISSIONS`` requests hold raw uploads at once, so a burst of 20 such photos, which peaked
at 370 MB of resident memory when every raw upload waited for the reservation lock, now peaks at
about 220 MB, hardly more than a burst of 4 (bench/memory.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import aiohttp
import discord

from bot.discord.errors import AttachmentNotImage, NoImageInMessage, UploadUnavailable
from bot.generation import ImageOrder, ImageService, normalize_uploads
from bot.imaging import (
    ImageError,
    ImageLimits,
    ImageTooLarge,
    ImageWorker,
    SizeCappedBuffer,
    check_declared_size,
)
from bot.imaging.decode import open_image
from bot.imaging.normalize import open_mask

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
CHUNK = 64 * 1024


def looks_like_image(attachment: discord.Attachment) -> bool:
    """Discord's content type when it sent one, else the file name's extension."""
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip().lower().startswith("image/")
    return os.path.splitext(attachment.filename)[1].lower() in IMAGE_EXTENSIONS


def precheck(attachment: discord.Attachment, limit: int, subject: str = "image") -> None:
    """Refuse what can be refused from the attachment's metadata alone."""
    if not looks_like_image(attachment):
        raise AttachmentNotImage(filename=attachment.filename)
    try:
        check_declared_size(attachment.size, limit)
    except ImageError as exc:
        raise exc.about(subject) if subject != "image" else exc from None


def first_image(message: discord.Message) -> discord.Attachment:
    for attachment in message.attachments:
        if looks_like_image(attachment):
            return attachment
    raise NoImageInMessage()


async def download(
    http: aiohttp.ClientSession,
    url: str,
    *,
    declared: int | None,
    limit: int,
    subject: str = "image",
) -> bytes:
    """The file at ``url``, at most ``limit`` bytes, or a typed error a member can act on."""
    try:
        check_declared_size(declared, limit)
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as response:
            if response.status != 200:
                log.warning("download of an upload failed: HTTP %d", response.status)
                raise UploadUnavailable()
            check_declared_size(response.content_length, limit)
            buffer = SizeCappedBuffer(limit)
            async for chunk in response.content.iter_chunked(CHUNK):
                buffer.feed(chunk)
            return buffer.getvalue()
    except ImageTooLarge as exc:
        raise exc.about(subject) if subject != "image" else exc from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("download of an upload failed: %s", type(exc).__name__)
        raise UploadUnavailable() from None


def probe_uploads(files: dict[str, bytes], limits: ImageLimits) -> None:
    """The header checks of downloaded uploads, the mask's size included; nothing is decoded.

    Synchronous (Pillow): run it in the image worker. It runs before a job is queued, so a
    file that is not an image, or a mask of the wrong size, is told at once instead of after
    a wait in the queue. What needs the pixels (an opaque picture without a mask) is found later.
    """
    image = files.get("image")
    opened = open_image(image, limits) if image is not None else None
    for subject, data in files.items():
        if subject not in PRIMARY:  # a blend's other pictures
            open_image(data, limits)
    mask = files.get("mask")
    if mask is None:
        return
    if opened is not None:
        open_mask(mask, opened, limits)  # the same size rule as the edit itself
        return
    try:
        open_image(mask, limits, check_shape=False)
    except ImageError as exc:
        raise exc.about("mask") from None


#: Uploads downloaded at the same time: a burst of requests cannot fill the memory.
MAX_DOWNLOADS = 4
#: Requests whose raw uploads are being read or normalized at the same time (the rest wait,
#: already acknowledged, holding nothing): two normalizing in the image worker's two threads
#: while two more download.
MAX_ADMISSIONS = 4

#: An upload to read: (URL, the size Discord declared, "image" or "mask", or "image2"...
#: for a blend's other pictures, in their order).
UploadRef = tuple[str, int | None, str]
#: The subjects of an edit's picture and mask; any other is one of a blend's other pictures.
PRIMARY = frozenset({"image", "mask"})


class UploadReader:
    """Downloads members' uploads, a few at a time, checks their headers and normalizes them.

    One reader serves every way in (commands, buttons, reactions, requests resumed after a
    restart), so the bounds on concurrent downloads and admissions hold for all of them together.
    """

    def __init__(self, service: ImageService) -> None:
        self._service = service
        self._http = service.http
        self._images: ImageWorker = service.images
        self._gate = asyncio.Semaphore(MAX_DOWNLOADS)
        self._admissions = asyncio.Semaphore(MAX_ADMISSIONS)

    @property
    def limit(self) -> int:
        return self._images.limits.max_bytes

    async def read(self, url: str, declared: int | None, subject: str = "image") -> bytes:
        async with self._gate:
            return await download(
                self._http, url, declared=declared, limit=self.limit, subject=subject
            )

    async def read_all(self, uploads: list[UploadRef]) -> dict[str, bytes]:
        """Each upload's bytes by subject, their headers (and the mask's size) checked."""
        files = {subject: await self.read(url, size, subject) for url, size, subject in uploads}
        if files:
            await self._images.run(probe_uploads, files, self._images.limits)
        return files

    async def read_order(self, order: ImageOrder, uploads: list[UploadRef]) -> ImageOrder:
        """``order`` with its uploads read and normalized: the PNGs that will be sent for it.

        Without uploads the order is returned as it is (its image, if any, is a job's stored
        input, normalized already). Raises the ImageError a member can act on, now rather than
        after a wait in the queue.
        """
        if not uploads:
            return order
        async with self._admissions:
            files = await self.read_all(uploads)
            extra = tuple(data for subject, data in files.items() if subject not in PRIMARY)
            order = dataclasses.replace(
                order,
                image=files.get("image", order.image),
                mask=files.get("mask", order.mask),
                extra_images=extra or order.extra_images,
            )
            return await normalize_uploads(self._service, order)
