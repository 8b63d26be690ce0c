"""Image API clients behind one small interface, plus the model capability table.

Only this package knows about HTTP image APIs. Callers build a :class:`ImagesClient` from an
``aiohttp.ClientSession`` they own, the provider settings and :func:`build_model_table`, then call
``generate``/``edit``/``vary`` and handle :class:`ProviderError` subclasses by their ``key``.
"""

from bot.providers.capabilities import (
    DEFAULT_MODELS,
    FreeSizeRule,
    InputRule,
    ModelSpec,
    build_model_table,
    parse_size,
)
from bot.providers.checks import OptionChoices, check_request, option_choices
from bot.providers.client import ImagesClient
from bot.providers.errors import (
    InputImageRejected,
    InvalidRequest,
    MalformedResponse,
    OperatorProblem,
    PromptTooLong,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SafetyRejected,
    TooManyImages,
    TooManyInputImages,
    UnknownModel,
    UnsupportedOperation,
    UnsupportedOption,
    UnsupportedSize,
)
from bot.providers.streaming import PARTIAL_IMAGE_TOKENS, streamed_partials
from bot.providers.types import (
    EditRequest,
    GeneratedImage,
    GenerateRequest,
    ImageRequest,
    ImageResult,
    ImageUsage,
    Operation,
    VaryRequest,
)

__all__ = [
    "DEFAULT_MODELS",
    "PARTIAL_IMAGE_TOKENS",
    "EditRequest",
    "FreeSizeRule",
    "GenerateRequest",
    "GeneratedImage",
    "ImageRequest",
    "ImageResult",
    "ImageUsage",
    "ImagesClient",
    "InputImageRejected",
    "InputRule",
    "InvalidRequest",
    "MalformedResponse",
    "ModelSpec",
    "Operation",
    "OperatorProblem",
    "OptionChoices",
    "PromptTooLong",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "SafetyRejected",
    "TooManyImages",
    "TooManyInputImages",
    "UnknownModel",
    "UnsupportedOperation",
    "UnsupportedOption",
    "UnsupportedSize",
    "VaryRequest",
    "build_model_table",
    "check_request",
    "option_choices",
    "parse_size",
    "streamed_partials",
]
