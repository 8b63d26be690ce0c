"""A member's own defaults (``/settings``): the one writer of ``member_settings``.

A member sets the backend, model, size, quality, image count, style and negative prompt their
requests use when they leave an option out, and whether their results are private (shown only
to them: bot.discord.generate's delivery); the defaults follow them to every server. They
never overrule anyone: a server's admins who chose the server's backend keep it, and the
operator's and the model's limits still hold. A default that does not hold where (or when) it
is used is left out of that request, and the member is told which (:class:`Ignored`), never
refused for it: the server's rules may change after the member chose.

:func:`with_defaults` is pure (the Discord layer gives it what it read); the database side is
:func:`load_defaults`, :func:`save_defaults` and :func:`reset_defaults`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.db.models import MemberSettings, utcnow
from bot.errors import BotError
from bot.generation import ImageOrder, check_order
from bot.providers import Operation
from bot.providers.registry import BackendSet
from bot.quotas.admission import check_rules

#: The defaults a member can set, in the order they are shown and applied (the backend first:
#: the others are checked on the backend the order runs on).
FIELDS = ("backend", "model", "size", "quality", "n", "style", "negative_prompt")
#: Everything a member can set and reset: the order's defaults, then "private results" (not an
#: option of the order: where its result goes).
SETTINGS = (*FIELDS, "private")


@dataclass(frozen=True)
class MemberDefaults:
    """What a member chose; None: no preference (the server's and the model's defaults)."""

    backend: str | None = None
    model: str | None = None
    size: str | None = None
    quality: str | None = None
    n: int | None = None
    style: str | None = None
    negative_prompt: str | None = None
    #: Results only the member sees (an ephemeral follow-up, else a DM), unless a request says
    #: otherwise (its ``private`` option).
    private: bool = False

    def chosen(self) -> dict[str, str | int]:
        """The defaults set, by name, in :data:`FIELDS` order."""
        values = {name: getattr(self, name) for name in FIELDS}
        return {name: value for name, value in values.items() if value not in (None, "")}


@dataclass(frozen=True)
class Ignored:
    """A default left out of a request: which one, and its value."""

    name: str
    value: str


async def load_defaults(sessions: Sessions, user_id: int) -> MemberDefaults:
    """The member's defaults (all None when they set none)."""
    async with sessions() as session:
        row = await session.get(MemberSettings, user_id)
    if row is None:
        return MemberDefaults()
    return MemberDefaults(
        **{name: getattr(row, name) for name in FIELDS}, private=bool(row.private)
    )


async def save_defaults(
    sessions: Sessions, user_id: int, changes: Mapping[str, str | int | bool | None]
) -> MemberDefaults:
    """Store ``changes`` (a name of :data:`SETTINGS` to its new value) over the member's other
    defaults; the defaults as they now are. ``private`` None is off (the column has no None)."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise ValueError(f"not a member default: {sorted(unknown)}")
    async with sessions() as session, session.begin():
        row = await session.get(MemberSettings, user_id)
        if row is None:
            row = MemberSettings(user_id=user_id, private=False)
            session.add(row)
        for name, value in changes.items():
            setattr(row, name, bool(value) if name == "private" else value)
        row.updated_at = utcnow()
    return await load_defaults(sessions, user_id)


async def reset_defaults(sessions: Sessions, user_id: int) -> None:
    """Forget every default of the member."""
    async with sessions() as session, session.begin():
        row = await session.get(MemberSettings, user_id)
        if row is not None:
            await session.delete(row)


#: Checks an order as submitting it would (the model's, the operator's and the server's rules);
#: raises the BotError that request would be refused with.
OrderCheck = Callable[[ImageOrder], object]


def order_check(backends: BackendSet, quotas: QuotaSettings) -> OrderCheck:
    """The checks a request meets before it is stored: its backend's model (sizes, qualities,
    styles, counts, Stable Diffusion options) and the operator's rules (``[quotas]``)."""

    def check(order: ImageOrder) -> None:
        spec = check_order(backends, order)
        check_rules(quotas, order, spec.name)

    return check


def with_defaults(
    order: ImageOrder,
    defaults: MemberDefaults,
    typed: Collection[str],
    *,
    backends: BackendSet,
    guild_id: int | None,
    server_backend: str | None,
    check: OrderCheck,
) -> tuple[ImageOrder, list[Ignored]]:
    """``order`` with the member's defaults for the options they did not type (``typed``),
    each kept only if the order still passes ``check`` with it; and the defaults left out.

    ``order`` is on the backend it runs on without the defaults (the server's);
    ``server_backend`` is the one the server's admins chose (None: they chose none), which a
    member's default backend does not overrule. When ``order`` is refused as it is (an option
    the member typed), no default is tried: the request's own error is what they need to read.
    """
    ignored: list[Ignored] = []
    chosen = defaults.chosen()
    if not chosen or not _passes(check, order):
        return order, ignored
    for name, value in chosen.items():
        if name in typed or not _applies(name, order, backends):
            continue
        if name == "backend":
            allowed = server_backend is None and value in backends.enabled_for(guild_id)
            candidate = dataclasses.replace(order, backend=str(value)) if allowed else None
        elif name == "model":
            backend = backends.for_job(order.backend)
            allowed = value in backend.models
            candidate = dataclasses.replace(order, model=str(value)) if allowed else None
        else:
            change: dict[str, Any] = {name: value}
            candidate = dataclasses.replace(order, **change)
        if candidate is not None and _passes(check, candidate):
            order = candidate
        else:
            ignored.append(Ignored(name, str(value)))
    return order, ignored


def _applies(name: str, order: ImageOrder, backends: BackendSet) -> bool:
    """Whether a default means anything for this kind of request: a style only for new
    images, a negative prompt only on a Stable Diffusion backend (elsewhere it is left out
    quietly: it was never meant for those)."""
    if name == "style":
        return order.operation is Operation.GENERATE
    if name == "negative_prompt":
        return backends.for_job(order.backend).features.sd_options
    return True


def _passes(check: OrderCheck, order: ImageOrder) -> bool:
    try:
        check(order)
    except BotError:
        return False
    return True
