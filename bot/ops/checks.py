"""``python -m bot check``: is everything an operator configured actually working?

Each check is independent and says what to fix; the command exits 0 only when all pass, so it
works as a deployment gate (``python -m bot check && systemctl restart imagebot``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.config import DEFAULT_BACKEND, DiscordSettings, ProviderSettings, Settings
from bot.db import create_engine, create_sessionmaker
from bot.db.engine import sqlite_path
from bot.db.migrate import pending_revisions
from bot.db.models import Job, JobStatus, Process
from bot.errors import BotError
from bot.imaging import ImageWorker
from bot.imaging.backend_masks import white_repaints
from bot.jobs.leases import database_now, live_processes
from bot.jobs.processes import is_shared
from bot.logs import RedactSecrets
from bot.providers.backend import Backend
from bot.providers.moderation import ModerationClient, moderation_backend
from bot.providers.registry import BackendSet, build_backends


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    #: Worth the operator's attention, but no failure: ``check`` still exits 0.
    warning: bool = False


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


async def check_processes(settings: Settings) -> list[CheckResult]:
    """PostgreSQL: the bot processes alive (a heartbeat within two leases), and a warning when
    jobs wait while none of them runs jobs. Nothing on SQLite: its queue is in the one process.
    Run after :func:`check_database` passed; nothing while migrations are pending."""
    if make_url(settings.database.url).get_backend_name() != "postgresql":
        return []  # no engine made: it would create a new SQLite file's folder
    engine = create_engine(settings.database.url)
    try:
        if not is_shared(engine) or await pending_revisions(engine):
            return []
        sessions = create_sessionmaker(engine)
        lease = timedelta(seconds=settings.jobs.lease_seconds)
        alive = await live_processes(sessions, 2 * lease)
        now = await database_now(sessions)
        async with sessions() as session:
            counted = await session.execute(
                select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED)
            )
            queued = int(counted.scalar_one())
    except Exception as exc:  # reachable a moment ago; the message may quote the URL
        return [CheckResult("processes", False, f"could not be read: {type(exc).__name__}")]
    finally:
        await engine.dispose()
    window = f"a heartbeat in the last {2 * lease.total_seconds():g} s"
    if alive:
        listed = ", ".join(
            _described(process, (now - process.heartbeat_at).total_seconds()) for process in alive
        )
        results = [CheckResult("processes", True, f"{len(alive)} alive ({window}): {listed}")]
    else:
        results = [CheckResult("processes", True, f"none alive ({window})")]
    if queued and not any(process.role in ("both", "worker") for process in alive):
        results.append(
            CheckResult(
                "jobs",
                True,
                f"{queued} job(s) queued and no live process runs jobs: start "
                "`python -m bot worker` (or `python -m bot run` without --no-worker)",
                warning=True,
            )
        )
    return results


def _described(process: Process, age: float) -> str:
    shards = f" shards {process.shards}" if process.shards else ""
    return (
        f"{process.role}{shards} on {process.host} pid {process.pid} "
        f"(heartbeat {max(age, 0.0):.0f} s ago)"
    )


async def check_backends(settings: Settings) -> list[CheckResult]:
    """One line per configured backend: its URL and credentials work, and it has what the
    settings name (OpenAI: the models; AUTOMATIC1111: the checkpoint). Costs no image."""
    results = []
    async with aiohttp.ClientSession() as session, ImageWorker(1) as images:

        async def convert_mask(mask: bytes) -> bytes:  # never called: no image is made
            return await images.run(white_repaints, mask)

        backends = build_backends(
            settings, session, verify=images.verify_results, convert_mask=convert_mask
        )
        try:
            for backend in backends:
                results.append(await _check_backend(backend, backends.settings[backend.name]))
            if settings.moderation.precheck == "block":
                results.append(await _check_precheck(backends, settings.moderation.precheck_model))
        finally:
            await backends.aclose()
    return results


async def _check_backend(backend: Backend, settings: ProviderSettings) -> CheckResult:
    if backend.name == DEFAULT_BACKEND and settings.type == "openai":
        name = "image API"  # the line operators' scripts know from before there were several
    else:
        name = f"backend {backend.name} ({settings.type})"
    if settings.type == "openai" and not settings.api_key and _is_openai(settings.base_url):
        where = "[provider]" if backend.name == DEFAULT_BACKEND else f"[backends.{backend.name}]"
        return CheckResult(name, False, f"no API key: set OPENAI_API_KEY or {where} api_key")
    try:
        detail = await backend.check_access()
    except BotError as exc:
        reason = getattr(exc, "detail", "") or str(exc)
        return CheckResult(name, False, f"{settings.base_url} refused: {reason}")
    return CheckResult(name, True, f"{settings.base_url} {detail}")


async def _check_precheck(backends: BackendSet, model: str) -> CheckResult:
    """The moderation pre-check's endpoint answers (a compatible server may have none: then
    every job is let through or refused by ``precheck_on_error``). Free, like the check."""
    name = "moderation pre-check"
    backend = moderation_backend(backends)
    if backend is None:  # the settings refuse this already; said plainly all the same
        return CheckResult(name, False, "no OpenAI-type backend to ask /moderations")
    where = backends.settings[backend.name].base_url
    try:
        await ModerationClient(backend, model).check("a lighthouse at dusk")
    except BotError as exc:
        reason = getattr(exc, "detail", "") or str(exc)
        return CheckResult(name, False, f"{where}/moderations refused: {reason}")
    return CheckResult(name, True, f"{where}/moderations answers ({model}, backend {backend.name})")


def _is_openai(base_url: str) -> bool:
    return base_url == ProviderSettings().base_url


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
    identify: Identify,
    write: Callable[[str], object] = print,
) -> bool:
    results = [CheckResult("configuration", True, f"valid ({config_source})")]
    database = await check_database(settings)
    results.append(database)
    if database.ok:
        results.extend(await check_processes(settings))
    results.extend(await check_backends(settings))
    discord_result, invite, public = await check_discord(settings, identify)
    results.append(discord_result)
    results.append(check_access(settings, public))
    results.append(check_caps(settings))
    for result in results:
        mark = "FAIL" if not result.ok else "WARN" if result.warning else "ok"
        write(f"[{mark}] {result.name}: {result.detail}")
    if invite:
        write(f"invite URL: {invite}")
    return all(result.ok for result in results)
