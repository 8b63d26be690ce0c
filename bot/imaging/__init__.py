"""Uploads in, API-ready square PNGs out: safe decoding, squaring, masks, size limits.

Everything here is synchronous Pillow code that knows nothing of Discord, HTTP or asyncio,
except ``ImageWorker``, which runs it on a thread pool for async callers. Problems with an
upload raise ``ImageError`` subclasses whose messages a member can act on.
"""

from bot.imaging.decode import ACCEPTED_FORMATS, ACCEPTED_NAMES, ImageInfo, probe
from bot.imaging.errors import (
    DownloadTooLarge,
    EditNeedsMask,
    ImageAspectRatio,
    ImageCorrupt,
    ImageEmpty,
    ImageError,
    ImageFullyTransparent,
    ImageTooLarge,
    ImageTooManyPixels,
    MaskAreaLost,
    MaskError,
    MaskMarksEverything,
    MaskMarksNothing,
    MaskNotBlackAndWhite,
    MaskSizeMismatch,
    NotAnImage,
    UnsupportedImageFormat,
)
from bot.imaging.geometry import DEFAULT_EDIT_FIT, DEFAULT_FIT, FITS, Fit
from bot.imaging.limits import (
    DEFAULT_LIMITS,
    FALLBACK_SIDES,
    ImageLimits,
    SizeCappedBuffer,
    check_declared_size,
)
from bot.imaging.normalize import EditInputs, NormalizedImage, normalize_edit, normalize_image
from bot.imaging.results import MAX_RESULT_PIXELS, ResultImage, verify_result, verify_results
from bot.imaging.worker import ImageWorker

__all__ = [
    "ACCEPTED_FORMATS",
    "ACCEPTED_NAMES",
    "DEFAULT_EDIT_FIT",
    "DEFAULT_FIT",
    "DEFAULT_LIMITS",
    "FALLBACK_SIDES",
    "FITS",
    "MAX_RESULT_PIXELS",
    "DownloadTooLarge",
    "EditInputs",
    "EditNeedsMask",
    "Fit",
    "ImageAspectRatio",
    "ImageCorrupt",
    "ImageEmpty",
    "ImageError",
    "ImageFullyTransparent",
    "ImageInfo",
    "ImageLimits",
    "ImageTooLarge",
    "ImageTooManyPixels",
    "ImageWorker",
    "MaskAreaLost",
    "MaskError",
    "MaskMarksEverything",
    "MaskMarksNothing",
    "MaskNotBlackAndWhite",
    "MaskSizeMismatch",
    "NormalizedImage",
    "NotAnImage",
    "ResultImage",
    "SizeCappedBuffer",
    "UnsupportedImageFormat",
    "check_declared_size",
    "normalize_edit",
    "normalize_image",
    "probe",
    "verify_result",
    "verify_results",
]
