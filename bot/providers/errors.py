"""Typed failures of the image provider, each with the true cause.

Peer bots told members "the safety system rejected your prompt" when the real cause was an empty
billing account, and swallowed other errors entirely. Here every failure the provider can report
maps to one class: the Discord layer picks the member-facing text by ``key`` (translatable), the
queue decides by class whether a job may be retried later, and operators read ``detail`` in the
logs. Nothing in an error's message, args or detail may contain the API key: provider messages
are scrubbed before they are stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bot.errors import BotError
from bot.providers.retry import is_retryable_status, retry_delay_from_headers

_KEYLIKE = re.compile(r"\b(?:sk|rk|sess)-[A-Za-z0-9_\-*.]{3,}|\bBearer\s+\S+", re.IGNORECASE)
REDACTED = "[redacted]"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove the given secrets and anything shaped like an API key from provider text.

    OpenAI echoes part of a wrong key back ("Incorrect API key provided: sk-ab***yz"), and a
    compatible server may echo the whole header, so both exact and key-shaped text go.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _KEYLIKE.sub(REDACTED, text)


class ProviderError(BotError):
    """Any failure while talking to the image provider.

    ``status`` and ``code`` come from the HTTP answer when there was one; ``detail`` is the
    operator's view (status, code, provider message) for logs, never shown to members.
    """

    key = "provider.error"
    template = "The image service failed to make the image."

    def __init__(
        self,
        message: str | None = None,
        /,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        detail: str = "",
        **params: Any,
    ) -> None:
        super().__init__(message, **params)
        self.status = status
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.detail = detail or self.message
        #: The request may have reached the provider and been billed although no answer came
        #: back (a timeout or a dropped connection after it was sent).
        self.possibly_billed = False


class InvalidRequest(ProviderError):
    """The provider (or our own pre-check) refused the request as written; the member can fix it.

    The provider's own sentence is kept in ``reason`` because it usually says exactly what to
    change ("Invalid size ..."), which is more useful to a member than a generic message.
    """

    key = "provider.invalid_request"
    template = "The image service rejected the request: {reason}"


class UnsupportedOption(InvalidRequest):
    """A request option the chosen model does not offer, caught before anything is sent."""

    key = "provider.unsupported_option"
    template = '{model} does not support {option} "{value}"; choose one of: {allowed}.'


class SDOptionUnavailable(UnsupportedOption):
    """A Stable Diffusion option (negative, seed, steps...) for a backend that has none."""

    key = "provider.sd_option_unavailable"
    template = (
        "The {option} option works only on Stable Diffusion backends, and this server's "
        "({model}) is not one. Leave {option} out."
    )


class SDOptionOutOfRange(UnsupportedOption):
    """A Stable Diffusion option beyond the operator's limit (or the server's range)."""

    key = "provider.sd_option_out_of_range"
    template = "{option} can be from {low} to {high} here, not {value}."


class UnknownModel(UnsupportedOption):
    key = "provider.unknown_model"
    template = 'There is no model called "{model}"; choose one of: {allowed}.'


class UnsupportedOperation(UnsupportedOption):
    key = "provider.unsupported_operation"
    template = "{model} cannot {operation} images."


class UnsupportedSize(UnsupportedOption):
    key = "provider.unsupported_size"
    template = "{model} cannot make {size} images; sizes: {allowed}."


class TooManyImages(UnsupportedOption):
    key = "provider.too_many_images"
    template = "{model} makes between 1 and {max_n} images per request, not {n}."


class TooManyInputImages(UnsupportedOption):
    key = "provider.too_many_input_images"
    template = "{model} takes at most {limit} images in one request; you gave {count}."


class PromptTooLong(UnsupportedOption):
    key = "provider.prompt_too_long"
    template = "The prompt is {length} characters long; {model} accepts at most {limit}."


class InputImageRejected(UnsupportedOption):
    """An input image (or mask) that breaks the model's upload rules (format, bytes, shape)."""

    key = "provider.input_image_rejected"
    template = "The {what} cannot be sent to {model}: {rule}."


class SafetyRejected(ProviderError):
    """The provider's safety system refused the prompt or image; rewording may help."""

    key = "provider.safety_rejected"
    template = (
        "The image service's safety system rejected this request (the prompt or the image). "
        "Try describing it differently."
    )


class OperatorProblem(ProviderError):
    """Only the operator can fix this: wrong key, no billing, missing model, wrong base URL."""

    key = "provider.operator_problem"
    template = "The image service is not available right now; the bot's operator has been told."
    operator_problem = True


class UnknownUpscaler(InvalidRequest):
    """The operator's ``provider.upscaler`` is not one the server has (or only resizes).

    Said to the member as it is (no secret in it: the key and the server's list), so an
    upscale that cannot work is not passed off as an outage; the client logs it as an error
    for the operator too, and ``check`` refuses it when the operator set the key."""

    key = "provider.unknown_upscaler"
    template = (
        'Upscaling is not set up right here: the server has no upscaler "{upscaler}" '
        "(the operator's provider.upscaler); it has: {allowed}."
    )


class RateLimited(ProviderError):
    """Still rate limited after the allowed retries, or told to wait longer than we may."""

    key = "provider.rate_limited"
    template = "The image service is busy right now; please try again in a little while."


class ProviderUnavailable(ProviderError):
    """Server errors, timeouts and connection failures that outlasted the retries."""

    key = "provider.unavailable"
    template = "The image service is not responding right now; please try again later."


class MalformedResponse(ProviderError):
    """The answer was not a usable image: not JSON, no data, bad base64, not an image, dead URL."""

    key = "provider.malformed_response"
    template = "The image service sent back something that is not a usable image."


# --- mapping HTTP answers to these classes -----------------------------------------------------

#: Codes and types that only the operator can fix, whatever the HTTP status.
OPERATOR_CODES = frozenset(
    {
        "invalid_api_key",
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "model_not_found",
        "account_deactivated",
        "access_terminated",
        "invalid_organization",
        "organization_verification_required",
        "unsupported_country_region_territory",
    }
)
OPERATOR_TYPES = frozenset({"insufficient_quota", "authentication_error", "permission_error"})
SAFETY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
_SAFETY_WORDING = re.compile(r"safety|content polic|moderation", re.IGNORECASE)


def _error_fields(body: bytes) -> tuple[str, str, str | None, str | None]:
    """message, type, code, param from ``{"error": {...}}``; empty values when absent."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "", "", None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # some compatible servers send {"error": "text"}
        return error, "", None, None
    if not isinstance(error, dict):
        return "", "", None, None

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) and value else None

    return text("message") or "", text("type") or "", text("code"), text("param")


def classify_error(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> ProviderError:
    """The exception for a non-2xx answer; retry-after hints are attached for the retry loop.

    Billing and auth are checked first, so an empty account is never reported as a safety
    rejection or a rate limit (OpenAI answers ``insufficient_quota`` with 429).
    """
    message, kind, code, param = _error_fields(body)
    message = scrub(message, secrets)
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f" ({kind})" if kind else "")
    detail += f": {message}" if message else " without an error message"
    common: dict[str, Any] = {"status": status, "code": code, "param": param, "detail": detail}
    if code in OPERATOR_CODES or kind in OPERATOR_TYPES or status in {401, 403, 404}:
        return OperatorProblem(**common)
    if 300 <= status < 400:
        common["detail"] = f"HTTP {status} redirect: check provider.base_url"
        return OperatorProblem(**common)
    hint = retry_delay_from_headers(headers)
    if status == 429:
        return RateLimited(retry_after=hint, **common)
    if is_retryable_status(status):
        return ProviderUnavailable(retry_after=hint, **common)
    safety_type = kind in {"image_generation_user_error", "invalid_request_error", ""}
    if code in SAFETY_CODES or (safety_type and _SAFETY_WORDING.search(message)):
        return SafetyRejected(**common)
    return InvalidRequest(reason=message or f"HTTP {status}.", **common)
