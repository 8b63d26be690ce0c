"""The composition root: every long-lived dependency is opened here and passed down.

Nothing else creates HTTP sessions, engines or thread pools, so tests can build the same graph
against fakes, and shutdown closes everything in one place (reverse order of opening).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.config import PRECHECK_NEEDS_OPENAI, Settings
from bot.db import Sessions, create_engine, create_sessionmaker, installation, upgrade_database
from bot.db.engine import Storage, create_transactions, enable_incremental_vacuum
from bot.errors import ConfigError
from bot.generation import ImageService
from bot.imaging import ImageLimits, ImageWorker
from bot.imaging.backend_masks import white_repaints
from bot.jobs.processes import ProcessInfo
from bot.moderation.blocklist import operator_terms
from bot.moderation.precheck import Precheck
from bot.ops.health import HealthServer
from bot.ops.metrics import Metrics
from bot.ops.observe import count_spend_cap_refusals
from bot.providers import ModelSpec, build_model_table
from bot.providers.client import OnRateLimited
from bot.providers.fetch import READ_BUFFER
from bot.providers.moderation import ModerationClient, moderation_backend
from bot.providers.registry import build_backends, check_backends, configured
from bot.quotas import PriceTable, price_table

if TYPE_CHECKING:
    from bot.discord.bot import ImageBot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalogues:
    """The model and price tables: built from the settings once, at start, and passed down."""

    models: Mapping[str, ModelSpec]
    prices: PriceTable


def build_catalogues(settings: Settings) -> Catalogues:
    """The operator's model and price overrides applied; ConfigError names a bad key, so a bad
    override stops the start like any other key (bot.cli builds them before any command)."""
    models = build_model_table(settings.provider.models)
    if settings.provider.type == "openai" and settings.provider.model not in models:
        known = ", ".join(sorted(models))
        raise ConfigError(
            f"provider.model: unknown model {settings.provider.model!r} "
            f'(known: {known}; add it under [provider.models."{settings.provider.model}"])'
        )
    if settings.provider.type == "openai":
        _check_allowed_sizes(settings, models)
    check_backends(settings)
    operator_terms(settings.moderation.blocked_terms)
    self_hosted = {
        name: backend.price_per_image_usd
        for name, backend in configured(settings).items()
        if backend.type != "openai"
    }
    return Catalogues(models, price_table(settings.prices, self_hosted))


def _check_allowed_sizes(settings: Settings, models: Mapping[str, ModelSpec]) -> None:
    """A size no model members may use allows would be offered, and refused by every model."""
    allowed_models = settings.quotas.allowed_models
    usable = [spec for name, spec in models.items() if not allowed_models or name in allowed_models]
    for size in settings.quotas.allowed_sizes:
        if not any(spec.allows_size(size) for spec in usable):
            spec = models[settings.provider.model]
            raise ConfigError(
                f"quotas.allowed_sizes: no configured model allows {size!r} "
                f"({spec.name} allows {spec.describe_sizes()})"
            )


def process_info(
    settings: Settings,
    *,
    role: str = "both",
    shard_count: int | None = None,
    shard_ids: str | None = None,
) -> ProcessInfo:
    """This process's role and shards, from the command line (``run --shard-count N
    --shard-ids 0,1 [--no-worker]``, ``worker``); ConfigError names what to change.

    A gateway without jobs, a worker, and a gateway for some of the shards all leave work to
    other processes, which only a shared queue (PostgreSQL) lets them do.
    """
    ids: tuple[int, ...] | None = None
    if shard_ids is not None:
        if shard_count is None:
            raise ConfigError("--shard-ids needs --shard-count (how many shards there are in all)")
        ids = _shard_ids(shard_ids, shard_count)
    if shard_count is not None and shard_count < 1:
        raise ConfigError(f"--shard-count must be 1 or more (got {shard_count})")
    some_shards = ids is not None and shard_count is not None and len(ids) < shard_count
    if (role != "both" or some_shards) and make_url(settings.database.url).get_backend_name() != (
        "postgresql"
    ):
        what = {
            "gateway": "run --no-worker (a gateway that leaves the jobs to workers)",
            "worker": "worker (a process that runs the jobs other processes queue)",
        }.get(role, "run for some of the shards (the other shards' processes)")
        raise ConfigError(
            f"{what} needs PostgreSQL, where several processes share one queue: set [database] "
            'url = "postgresql+asyncpg://..." (on SQLite, `run` alone serves every shard and job)'
        )
    return ProcessInfo(role=role, shard_ids=ids, shard_count=shard_count)


def _shard_ids(text: str, count: int) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--shard-ids must be shard numbers separated by commas, like 0,1 (got {text!r})"
        ) from None
    outside = [i for i in ids if not 0 <= i < count]
    if outside:
        raise ConfigError(
            f"--shard-ids: shard {outside[0]} is not one of the {count} shards "
            f"(--shard-count {count}: 0 to {count - 1})"
        )
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--shard-ids names a shard twice ({text})")
    return tuple(sorted(ids))


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=int(settings.images.max_upload_mb * 1024 * 1024),
        max_pixels=settings.images.max_pixels,
    )


class RateLimitRelay:
    """Passes a provider's 429 ``retry-after`` on to whoever keeps the rate limits.

    The backends are built before the job runner that keeps the limits, so they are given
    this, and :attr:`pause` is set once the runner exists: on SQLite its lanes' limiters (one
    process), on PostgreSQL the shared limiter (every process). Telling them can fail like any
    database write; the request that drew the 429 still waits as the provider asked.
    """

    def __init__(self) -> None:
        self.pause: OnRateLimited | None = None

    async def __call__(self, backend: str, seconds: float) -> None:
        if self.pause is None:
            return
        try:
            await self.pause(backend, seconds)
        except Exception:
            log.warning(
                "could not hold back %r for %.1f s after a 429", backend, seconds, exc_info=True
            )


@asynccontextmanager
async def open_engine(
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    user_salt: str = "",
    catalogues: Catalogues | None = None,
    on_rate_limited: OnRateLimited | None = None,
) -> AsyncIterator[ImageService]:
    """The image engine alone: what the one-shot commands need (no Discord, no database).

    ``user_salt`` is the installation's salt; without it (and without ``provider.user_salt``)
    requests carry no ``user``, which is right for the one-shot commands: there is no member.
    ``catalogues`` are built from ``settings`` when not given (tests, benchmarks).
    ``on_rate_limited`` hears the provider's 429s that say how long to wait (a
    :class:`RateLimitRelay`).
    """
    catalogues = catalogues or build_catalogues(settings)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(read_bufsize=READ_BUFFER))
        images = await stack.enter_async_context(
            ImageWorker(settings.images.workers, limits=image_limits(settings))
        )
        observe = None
        if metrics is not None:
            latency, count_error = metrics.provider_latency, metrics.provider_error

            def observe(path: str, seconds: float, error: str | None) -> None:
                latency.labels(operation=path.rsplit("/", 1)[-1]).observe(seconds)
                if error is not None:
                    count_error(error)

        async def convert_mask(mask: bytes) -> bytes:
            return await images.run(white_repaints, mask)

        backends = build_backends(
            settings,
            http,
            verify=images.verify_results,
            convert_mask=convert_mask,
            user_salt=user_salt,
            observe=observe,
            on_rate_limited=on_rate_limited,
        )
        stack.push_async_callback(backends.aclose)
        yield ImageService(settings, http, images, backends)


def build_precheck(settings: Settings, engine: ImageService, sessions: Sessions) -> Precheck | None:
    """The moderation pre-check on the OpenAI-type backend (``[provider]`` when it is one, else
    the first such ``[backends.NAME]``), None when ``[moderation] precheck`` is off."""
    moderation = settings.moderation
    if moderation.precheck == "off":
        return None
    backend = moderation_backend(engine.backends)
    if backend is None:
        raise ConfigError(PRECHECK_NEEDS_OPENAI)
    log.info(
        "moderation pre-check on: %s on backend %s (on error: %s)",
        moderation.precheck_model,
        backend.name,
        moderation.precheck_on_error,
    )
    return Precheck(moderation, ModerationClient(backend, moderation.precheck_model), sessions)


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    """The database, migrated to the latest schema before anyone uses it."""
    engine = create_engine(
        settings.database.url, busy_timeout=settings.database.busy_timeout_seconds
    )
    try:
        await upgrade_database(engine)
        if await enable_incremental_vacuum(engine):
            log.info("database converted to incremental vacuum (once): pruned space is given back")
        sessions = create_sessionmaker(engine)
        transactions = create_transactions(
            sessions, settings.database.url, busy_timeout=settings.database.busy_timeout_seconds
        )
        try:
            yield Storage(engine, sessions, transactions)
        finally:
            await transactions.aclose()
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_bot(
    settings: Settings,
    *,
    catalogues: Catalogues | None = None,
    sync_commands: bool | None = None,
    start_jobs: bool = True,
    metrics: Metrics | None = None,
    process: ProcessInfo | None = None,
    **bot_options: Any,
) -> AsyncIterator[ImageBot]:
    """The Discord bot with everything it needs; closed (jobs stopped) on exit.

    ``process``: this process's role and shards (default: the one-process bot, role "both");
    a gateway-only process admits and queues jobs but runs none."""
    from bot.discord.bot import bot_class, point_discord_at, shard_options
    from bot.discord.i18n import Catalog
    from bot.jobs import JobRunner

    if sync_commands is None:
        sync_commands = settings.discord.sync_commands
    catalogues = catalogues or build_catalogues(settings)
    rate_limited = RateLimitRelay()
    process = process or ProcessInfo()

    async with (
        open_storage(settings) as storage,
        open_engine(
            settings,
            metrics,
            user_salt=await installation.user_salt(storage.sessions),
            catalogues=catalogues,
            on_rate_limited=rate_limited,
        ) as engine,
    ):
        runner = JobRunner(
            engine,
            storage.sessions,
            settings,
            prices=catalogues.prices,
            process=process,
            content_check=build_precheck(settings, engine, storage.sessions),
            transactions=storage.transactions,
        )
        rate_limited.pause = runner.rate_limited
        if metrics is not None:
            runner.spend_caps.on_refusal = count_spend_cap_refusals(metrics)
        point_discord_at(settings.discord)
        bot = bot_class(process)(
            settings,
            engine=engine,
            storage=storage,
            runner=runner,
            catalog=Catalog.load(),
            sync_commands=sync_commands,
            start_jobs=start_jobs,
            metrics=metrics,
            process=process,
            **shard_options(process),
            **bot_options,
        )
        try:
            async with bot:
                yield bot
        finally:
            await runner.close()


#: Signals that mean "stop now, cleanly": ``docker stop``/systemd send SIGTERM, Ctrl-C SIGINT.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_discord_bot(
    settings: Settings,
    catalogues: Catalogues | None = None,
    *,
    stop: asyncio.Event | None = None,
    started: Callable[[ImageBot], None] | None = None,
    process: ProcessInfo | None = None,
) -> None:
    """Run until Discord ends the session for good or the process is asked to stop.

    A stop signal cancels running jobs, closes the gateway connection and closes the database
    before returning, so the process exits 0 within moments instead of being killed mid-write.
    ``stop`` (set: stop as a signal would) and ``started`` (given the bot before it logs in) let
    ``python -m bot demo`` run this very path in its own process and end it when it is done.
    ``process``: a gateway for some shards, or a worker, which logs in over REST only.
    """
    from bot.discord.bot import login_errors

    stop = stop or asyncio.Event()
    metrics = Metrics()
    process = process or ProcessInfo()
    if process.role != "both":
        shards = "" if process.shard_count is None else f", shards {process.shard_ids or 'all'}"
        log.info("process %s: role %s%s", process.id, process.role, shards)
    with _stop_on_signals(stop):
        async with (
            open_bot(settings, catalogues=catalogues, metrics=metrics, process=process) as bot,
            operator_endpoint(settings, metrics, bot),
        ):
            if started is not None:
                started(bot)
            if stop.is_set():
                return
            with login_errors(settings):
                await _run_until_stopped(
                    bot, settings.discord.token, stop, settings.jobs.shutdown_grace_seconds
                )


@asynccontextmanager
async def operator_endpoint(
    settings: Settings, metrics: Metrics, bot: ImageBot
) -> AsyncIterator[HealthServer | None]:
    """/healthz and /metrics while the bot runs, when ``[http] enabled``."""
    if not settings.http.enabled:
        yield None
        return
    storage, runner = bot.storage, bot.runner

    async def database() -> str | None:
        async with storage.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None

    async def gateway() -> str | None:
        return bot.gateway_problem()

    async def jobs() -> str | None:
        return None if runner.alive else "the job dispatcher is not running"

    def gauges() -> None:
        metrics.queue_depth.set(runner.queue_depth)
        metrics.running.set(len(runner.running))

    # A gateway-only process runs no dispatcher; a worker's "gateway" is its REST login.
    checks = {"gateway": gateway, "database": database, "dispatcher": jobs}
    if not bot.process.runs_jobs:
        del checks["dispatcher"]
    server = HealthServer(settings.http, metrics, checks, before_metrics=gauges)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _run_until_stopped(bot: ImageBot, token: str, stop: asyncio.Event, grace: float) -> None:
    connect = bot.start(token) if bot.process.runs_gateway else bot.run_without_gateway(token)
    running = asyncio.create_task(connect, name="discord")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            await running  # ended by itself: LoginFailure and other errors surface here
            return
        log.info(
            "stop requested: taking no new requests; running jobs get up to %g s to finish "
            "(jobs.shutdown_grace_seconds), then the Discord connection closes; queued jobs "
            "stay for the next start",
            grace,
        )
        # Jobs first: one cut off mid-delivery by a closed connection would log a traceback;
        # a cancelled one stays in the database for the next start to pick up.
        await bot.runner.close(grace)
        await bot.close()
        with contextlib.suppress(Exception):  # whatever start() was doing was cut short on purpose
            await running
    finally:
        stopping.cancel()
        if not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for number in STOP_SIGNALS:
        try:
            loop.add_signal_handler(number, _request_stop, stop, number)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # Windows, or not the main thread: the default handling stays
        installed.append(number)
    try:
        yield
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


def _request_stop(stop: asyncio.Event, number: signal.Signals) -> None:
    if not stop.is_set():
        log.info("received %s; stopping", number.name)
    stop.set()


async def sync_commands(settings: Settings, catalogues: Catalogues | None = None) -> None:
    """Log in (setup_hook builds the commands), sync them even when the last sync registered
    the same ones (the operator asked: say, after removing them in the Developer Portal), and
    leave without connecting."""
    from bot.discord.bot import login_errors

    async with open_bot(
        settings, catalogues=catalogues, sync_commands=False, start_jobs=False
    ) as bot:
        with login_errors(settings):
            await bot.login(settings.discord.token)
            await bot.sync_application_commands(force=True)
