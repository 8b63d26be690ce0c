"""``python -m bot check``: is everything an operator configured actually working?

Each check is independent and says what to fix; the command exits 0 only when all pass, so it
works as a deployment gate (``python -m bot check && systemctl restart imagebot``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from sqlalchemy.engine import make_url

from bot.config import DiscordSettings, Settings
from bot.db import create_engine
from bot.db.engine import sqlite_path
from bot.db.migrate import pending_revisions
from bot.errors import BotError
from bot.imaging import ImageWorker
from bot.logs import RedactSecrets
from bot.providers import ImagesClient, ModelSpec


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def check_database(settings: Settings) -> CheckResult:
    url = settings.database.url
    path = sqlite_path(url)
    if path is not None and not path.exists():
        # A first deploy: nothing to connect to yet, and `run` makes it. Not created here, so
        # a check leaves no empty file behind; only whether it can be made is asked.
        folder = next(parent for parent in path.absolute().parents if parent.exists())
        if not os.access(folder, os.W_OK | os.X_OK):
            return CheckResult(
                "database", False, f"{path} cannot be created: {folder} is read-only"
            )
        return CheckResult(
            "database",
            True,
            f"new database {path}: created and migrated when the bot starts",
        )
    try:
        engine = create_engine(url)
    except ModuleNotFoundError as exc:
        return CheckResult(
            "database", False, f"database.url needs the driver {exc.name!r}: install it"
        )
    except Exception as exc:  # unparsable; the URL itself is not shown: it may hold a password
        return CheckResult("database", False, f"database.url is not usable: {type(exc).__name__}")
    try:
        pending = await pending_revisions(engine)
    except Exception as exc:
        # The URL may hold a password, and drivers like to quote it back.
        reason = RedactSecrets([url, make_url(url).password or ""]).redact(str(exc))
        return CheckResult("database", False, f"unreachable: {type(exc).__name__}: {reason}")
    finally:
        await engine.dispose()
    if pending:
        # `run` applies them before anything else, so `check && run` is right on a first deploy.
        return CheckResult(
            "database",
            True,
            f"reachable; {len(pending)} migration(s) pending: applied when the bot starts "
            "(or now: `python -m bot db upgrade`)",
        )
    return CheckResult("database", True, "reachable and up to date")


async def check_provider(settings: Settings, models: Mapping[str, ModelSpec]) -> CheckResult:
    if not settings.provider.api_key:
        return CheckResult(
            "image API", False, "no API key: set OPENAI_API_KEY or [provider] api_key"
        )
    base_url = settings.provider.base_url
    async with aiohttp.ClientSession() as session, ImageWorker(1) as images:
        client = ImagesClient(
            session,
            settings.provider,
            models,
            verify=images.verify_results,
        )
        try:
            served = await client.served_models()
        except BotError as exc:
            detail = getattr(exc, "detail", "") or str(exc)
            return CheckResult("image API", False, f"{base_url} refused: {detail}")
    model = settings.provider.model
    if served is None:
        return CheckResult(
            "image API", True, f"{base_url} accepts the key (it lists no models: {model} unchecked)"
        )
    # Every request for a model the server does not serve fails: the key alone proves nothing.
    wanted = [model, *(name for name in settings.quotas.allowed_models if name != model)]
    missing = [name for name in wanted if name not in served]
    if missing:
        known = ", ".join(sorted(served & set(models))) or "none of the models the bot knows"
        return CheckResult(
            "image API",
            False,
            f"{base_url} accepts the key but does not serve {', '.join(missing)} "
            f"(set [provider] model or [quotas] allowed_models; it serves: {known})",
        )
    return CheckResult("image API", True, f"{base_url} accepts the key and serves {model}")


class BotIdentity(Protocol):
    """Who a token is, as the Discord layer finds out (bot.discord.identity.Identity)."""

    @property
    def bot_name(self) -> str: ...

    @property
    def bot_id(self) -> int: ...

    @property
    def public(self) -> bool: ...

    @property
    def invite_url(self) -> str: ...


#: Asks Discord who the configured token is; given by the caller, so ops stays below discord.
Identify = Callable[[DiscordSettings], Awaitable[BotIdentity]]


async def check_discord(
    settings: Settings, identify: Identify
) -> tuple[CheckResult, str | None, bool | None]:
    """The token's bot, the invite URL and whether the bot is public (None: token failed)."""
    if not settings.discord.token:
        return (
            CheckResult("Discord", False, "no bot token: set DISCORD_TOKEN or [discord] token"),
            None,
            None,
        )
    try:
        identity = await identify(settings.discord)
    except BotError as exc:
        return CheckResult("Discord", False, str(exc)), None, None
    return (
        CheckResult("Discord", True, f"token belongs to {identity.bot_name} ({identity.bot_id})"),
        identity.invite_url,
        identity.public,
    )


PRIVATE_HOWTO = (
    "for a private bot set [quotas] allowed_guilds = [your server ids] and turn off "
    "Public Bot (Developer Portal > Bot)"
)


def check_access(settings: Settings, public: bool | None) -> CheckResult:
    """Who can use the bot (and so spend the operator's money): a fact to know, not a failure."""
    allowed = settings.quotas.allowed_guilds
    if not allowed:
        who = "anyone may add it" if public is not False else "only you can add it"
        return CheckResult(
            "access", True, f"works in every server it is added to ({who}); {PRIVATE_HOWTO}"
        )
    detail = f"private: works only in {len(allowed)} server(s) from [quotas] allowed_guilds"
    if public:
        detail += (
            "; Discord still lets anyone add it (other servers get a refusal): turn off "
            "Public Bot (Developer Portal > Bot)"
        )
    return CheckResult("access", True, detail)


def check_caps(settings: Settings) -> CheckResult:
    """What the bot may spend, as the spend caps will enforce it: a fact to know, not a failure."""
    quotas = settings.quotas
    month, day = quotas.total_spend_per_month_usd, quotas.total_spend_per_day_usd
    total = f"${month:g} a month" if month else "nothing (total_spend_per_month_usd = 0)"
    daily = f"${day:g} a day" if day else "no daily cap"
    return CheckResult(
        "caps",
        True,
        f"each server ${quotas.spend_per_month_usd:g} a month (admins may raise it to "
        f"${quotas.max_spend_per_month_usd:g}); all servers and DMs together {total}, {daily}",
    )


async def run_checks(
    settings: Settings,
    config_source: str,
    models: Mapping[str, ModelSpec],
    identify: Identify,
    write: Callable[[str], object] = print,
) -> bool:
    results = [CheckResult("configuration", True, f"valid ({config_source})")]
    results.append(await check_database(settings))
    results.append(await check_provider(settings, models))
    discord_result, invite, public = await check_discord(settings, identify)
    results.append(discord_result)
    results.append(check_access(settings, public))
    results.append(check_caps(settings))
    for result in results:
        write(f"[{'ok' if result.ok else 'FAIL'}] {result.name}: {result.detail}")
    if invite:
        write(f"invite URL: {invite}")
    return all(result.ok for result in results)
