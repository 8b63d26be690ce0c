"""Typed, validated settings from a TOML file plus the environment.

Settings are checked completely at start so a typo stops the bot with one line naming the key,
instead of surfacing hours later as a strange failure. Secrets may come from the environment
(``DISCORD_TOKEN``, ``OPENAI_API_KEY``), which wins over the file, so the file can be committed or
baked into an image without them. Secrets are excluded from every ``repr`` and from every error
message (a wrong-typed key names its key, never its value).

This module imports nothing of the bot but its errors. The free-form tables
(``[provider.models.*]``, ``[prices]``) are checked by the code that understands them, when
bot.app builds the model and price tables at start (see bot.app.build_catalogues).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bot.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.toml")
CONFIG_ENV = "IMAGEBOT_CONFIG"
TOKEN_ENV = "DISCORD_TOKEN"
API_KEY_ENV = "OPENAI_API_KEY"
DATABASE_URL_ENV = "DATABASE_URL"
ENV_PREFIX = "IMAGEBOT_"
#: ``[backends.NAME]``: what NAME may be ("default" is ``[provider]``'s own name).
BACKEND_NAME = re.compile(r"[a-z0-9_-]{1,32}")
DEFAULT_BACKEND = "default"
#: A self-hosted server renders for tens of seconds per image: a longer default request time.
SD_TIMEOUT_SECONDS = 600.0
#: What Kubernetes injects for a service (``<SERVICE>_PORT=tcp://10.0.0.11:8080``): never a setting.
_SERVICE_LINK = re.compile(r"(?:tcp|udp|sctp)://[^/\s]+:\d+")

log = logging.getLogger(__name__)

FitChoice = Literal["auto", "crop", "pad"]


def _range(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class DiscordSettings:
    token: str = field(default="", repr=False)
    #: REST base; REST proxies (and the tests) point it elsewhere.
    api_base_url: str = "https://discord.com/api/v10"
    #: Gateway override, e.g. a self-hosted gateway proxy. "" = ask Discord.
    gateway_url: str = ""
    #: Sync commands to this guild only (instant, for development). 0 = sync globally.
    dev_guild_id: int = field(default=0, metadata=_range(0))
    #: Reacting to a result with this emoji varies its first image (1️⃣-🔟 pick the image).
    vary_emoji: str = "🔄"
    #: Sync slash commands at every start. Off: only `python -m bot sync` does it.
    sync_commands: bool = True


@dataclass(frozen=True)
class ProviderSettings:
    """One image backend: ``[provider]`` (named "default") or ``[backends.NAME]``."""

    #: What the server speaks: the OpenAI Images API, AUTOMATIC1111/Forge's /sdapi/v1, ComfyUI.
    type: Literal["openai", "automatic1111", "comfyui"] = "openai"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = field(default="", repr=False)
    #: OpenAI: the default model. AUTOMATIC1111/ComfyUI: the default checkpoint ("" = the one
    #: the server has loaded, or the workflow's).
    model: str = "gpt-image-2"
    #: AUTOMATIC1111 started with ``--api-auth user:password``.
    username: str = ""
    password: str = field(default="", repr=False)
    #: ComfyUI: a folder of API-format workflow files ("" = the ones shipped with the bot).
    workflows: str = ""
    #: Upscale on Stable Diffusion backends: AUTOMATIC1111's upscaler (one of its
    #: ``/sdapi/v1/upscalers``; "" = "R-ESRGAN 4x+") or ComfyUI's upscale model file ("" = the
    #: upscale workflow's own).
    upscaler: str = ""
    #: OpenAI GPT image models: streamed partial images shown while one is made (0 = none).
    partial_images: int = field(default=1, metadata=_range(0, 3))
    #: Jobs this backend runs at once (0 = the kind's default: 4 for OpenAI, 1 for SD servers).
    concurrency: int = field(default=0, metadata=_range(0, 64))
    #: Price of one image from a self-hosted backend, for the spend quotas (USD).
    price_per_image_usd: float = field(default=0.0, metadata=_range(0))
    #: Stable Diffusion backends: the operator's limits on what members may ask for.
    max_steps: int = field(default=50, metadata=_range(1, 500))
    max_guidance: float = field(default=20.0, metadata=_range(1, 100))
    #: Longest side of an image (sizes are any multiple of 8 up to it).
    max_side: int = field(default=2048, metadata=_range(64, 8192))
    #: ``[provider]`` only: the named backends tried next, in order, when this one is down.
    fallback: tuple[str, ...] = ()
    #: Who may use it: [] = every server; else the server ids the operator enabled it for.
    enabled_guilds: tuple[int, ...] = ()
    images_per_minute: int = field(default=50, metadata=_range(1, 100_000))
    #: Total time for one HTTP request, including reading the body.
    timeout_seconds: float = field(default=120.0, metadata=_range(1, 3600))
    connect_timeout_seconds: float = field(default=10.0, metadata=_range(0.1, 600))
    #: Longest silence between two reads of a response.
    read_timeout_seconds: float = field(default=90.0, metadata=_range(0.1, 3600))
    #: Largest answer body read, decoded (JSON with base64 images, or one downloaded image).
    max_response_mb: float = field(default=512.0, metadata=_range(1, 4096))
    #: Hosts ("name" or "name:port") that image URLs may point to although not public.
    allowed_hosts: tuple[str, ...] = ()
    #: Extra attempts after a 429, a 5xx, a timeout or a connection error.
    max_retries: int = field(default=3, metadata=_range(0, 10))
    #: A retry-after longer than this is not waited for: the request fails as rate limited.
    max_retry_wait_seconds: float = field(default=60.0, metadata=_range(0, 3600))
    #: Salt for the hashed member id sent as ``user``. "" = the installation's own random salt,
    #: made at the first start and kept in the database.
    user_salt: str = field(default="", repr=False)
    #: Operator additions and overrides of the model capability table (raw TOML tables).
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImagesSettings:
    #: Largest upload accepted, checked before and while downloading.
    max_upload_mb: float = field(default=25.0, metadata=_range(0.1, 500))
    #: Largest decoded image (width x height), checked before decoding: stops decompression bombs.
    max_pixels: int = field(default=50_000_000, metadata=_range(1_000_000, 500_000_000))
    #: How uploads are fitted to the size the model makes when their shapes differ: "crop"
    #: (centre), "pad", or "auto" (pad pictures to edit so nothing is lost, crop the rest so
    #: variations are not framed by bars).
    fit: FitChoice = "auto"
    #: Threads for Pillow work, off the event loop.
    workers: int = field(default=2, metadata=_range(1, 64))


@dataclass(frozen=True)
class JobsSettings:
    #: Requests to the image API running at the same time.
    concurrency: int = field(default=4, metadata=_range(1, 64))
    #: Jobs one member may have waiting at once, and one guild.
    max_queued_per_member: int = field(default=5, metadata=_range(1, 1000))
    max_queued_per_guild: int = field(default=50, metadata=_range(1, 100_000))
    #: Seconds the bot waits for running jobs on shutdown before leaving them for the restart.
    shutdown_grace_seconds: float = field(default=30.0, metadata=_range(0, 3600))
    #: Requests one member may start per minute (commands, buttons, reactions together).
    member_requests_per_minute: int = field(default=10, metadata=_range(1, 10_000))
    #: PostgreSQL (several processes): seconds a job stays claimed by a process that stopped
    #: renewing it (killed, machine lost) before another marks it interrupted.
    lease_seconds: float = field(default=60.0, metadata=_range(5, 3600))
    #: PostgreSQL: how often an idle worker looks for jobs if a wake-up (NOTIFY) was missed.
    poll_seconds: float = field(default=5.0, metadata=_range(0.1, 300))


@dataclass(frozen=True)
class QuotaSettings:
    """The operator's rules. Guild admins choose their limits up to the ``max_`` ceilings."""

    images_per_day: int = field(default=100, metadata=_range(0))
    images_per_month: int = field(default=1000, metadata=_range(0))
    spend_per_month_usd: float = field(default=10.0, metadata=_range(0))
    member_images_per_day: int = field(default=20, metadata=_range(0))
    max_images_per_day: int = field(default=1000, metadata=_range(0))
    max_images_per_month: int = field(default=10_000, metadata=_range(0))
    max_spend_per_month_usd: float = field(default=100.0, metadata=_range(0))
    max_member_images_per_day: int = field(default=200, metadata=_range(0))
    #: Most images one request may ask for.
    max_n: int = field(default=4, metadata=_range(1, 10))
    #: Models and sizes members may use; empty: all the configured model offers.
    allowed_models: tuple[str, ...] = ()
    allowed_sizes: tuple[str, ...] = ()
    #: The quality used when a member picks none ("": the first of ``allowed_qualities``, else
    #: the model's own default), and the qualities members may pick (empty: all the model offers).
    default_quality: str = ""
    allowed_qualities: tuple[str, ...] = ()
    #: Generation in direct messages, with its own per-user daily limit.
    dm_enabled: bool = False
    dm_images_per_day: int = field(default=5, metadata=_range(0))
    #: The operator's hard ceilings over every server and DM together, per UTC month and day.
    #: A day cap of 0 means none; a month cap of 0 stops all generation.
    total_spend_per_month_usd: float = field(default=100.0, metadata=_range(0))
    total_spend_per_day_usd: float = field(default=0.0, metadata=_range(0))
    #: The only servers the bot works in; empty: every server it is added to.
    allowed_guilds: tuple[int, ...] = ()


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(default="sqlite+aiosqlite:///data/bot.db", repr=False)
    #: How long a SQLite write waits for another writer's lock before it fails.
    busy_timeout_seconds: float = field(default=30.0, metadata=_range(0.01, 600))


@dataclass(frozen=True)
class StorageSettings:
    """What the bot keeps on disk, and for how long."""

    #: Where made images wait while the database cannot record them (see bot.jobs.spool).
    spool_dir: str = "data/spool"
    #: Days a finished job keeps its stored images (uploads as sent, undelivered results);
    #: the ledger row itself is kept.
    retention_days: int = field(default=30, metadata=_range(1, 36_500))


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: "plain" lines for people, "json" (one object per line) for log collectors.
    format: Literal["plain", "json"] = "plain"


@dataclass(frozen=True)
class HttpSettings:
    """The operator's HTTP endpoint: /healthz and /metrics (Prometheus)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_range(1, 65535))


@dataclass(frozen=True)
class ModerationSettings:
    """The operator's content rules, over every server (admins add their own on top)."""

    #: Terms refused in every prompt (``*`` wildcards), (as ``/moderation blocklist``).
    blocked_terms: tuple[str, ...] = ()
    #: Check prompts (and uploads, for models that take them) with the provider's free
    #: ``/moderations`` endpoint before the image request: "off" or "block" (refuse flagged).
    precheck: Literal["off", "block"] = "off"
    #: When the check itself fails: "open" (let the request through) or "closed" (refuse it).
    precheck_on_error: Literal["open", "closed"] = "open"
    precheck_model: str = "omni-moderation-latest"


@dataclass(frozen=True)
class AlertsSettings:
    """Where spend alerts go (50 %, 80 %, 100 % of the monthly cap; a server at its budget)."""

    #: A Discord webhook URL (secret: it lets anyone post).
    webhook_url: str = field(default="", repr=False)
    #: A channel the bot posts alerts in (0 = none).
    discord_channel_id: int = field(default=0, metadata=_range(0))


@dataclass(frozen=True)
class Settings:
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    provider: ProviderSettings = field(default_factory=ProviderSettings)
    #: Named extra backends (``[backends.NAME]``, the same keys as ``[provider]``).
    backends: Mapping[str, ProviderSettings] = field(default_factory=dict)
    images: ImagesSettings = field(default_factory=ImagesSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    #: Price overrides, see config.example.toml (raw TOML, validated by bot.quotas.prices).
    prices: Mapping[str, Any] = field(default_factory=dict)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    moderation: ModerationSettings = field(default_factory=ModerationSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)


def resolve_config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Where the config file is, and whether the user asked for that file explicitly."""
    if explicit:
        return Path(explicit), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the settings; raise ConfigError naming the first bad key."""
    env = os.environ if env is None else env
    file, explicit = resolve_config_path(path, env)
    raw: dict[str, Any] = {}
    if file.is_file():
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"{file}: config file not found")
    _apply_env_keys(raw, env)
    backends = raw.pop("backends", {})
    settings = _build(Settings, raw, "")
    settings = dataclasses.replace(
        settings,
        provider=_typed_defaults(settings.provider, raw.get("provider", {}), "provider."),
        backends=types.MappingProxyType(_build_backends(backends)),
    )
    settings = _apply_env(settings, env)
    _check_quotas(settings)
    _check_backends(settings)
    _check_moderation(settings)
    _check_database_url(settings.database.url, from_env=bool(env.get(DATABASE_URL_ENV)))
    return settings


def _apply_env_keys(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """``IMAGEBOT_<SECTION>_<KEY>`` sets any plain key, e.g. ``IMAGEBOT_HTTP_PORT=9090``.

    Containers are configured through the environment; values are read as TOML when they parse
    (numbers, true/false, lists) and as text otherwise, then validated like the file's. Platforms
    inject variables of their own (Kubernetes: ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_PORT`` and
    more for every service), so a name that is no setting, or a value shaped like a service link,
    is ignored with one warning line instead of stopping the bot; the file's keys stay strict.
    """
    hints = typing.get_type_hints(Settings)
    ignored: list[str] = []
    for name, text in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        section_type = hints.get(section)
        known = (
            isinstance(section_type, type)
            and dataclasses.is_dataclass(section_type)
            and key in {f.name for f in dataclasses.fields(section_type)}
        )
        if not known or _SERVICE_LINK.fullmatch(text.strip()):
            ignored.append(name)
            continue
        try:
            value: Any = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table")
        table[key] = value
    if ignored:
        log.warning(
            "ignored environment variables that name no setting (or hold a service link): %s",
            ", ".join(ignored),
        )


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    discord, provider, database = settings.discord, settings.provider, settings.database
    if env.get(TOKEN_ENV):
        discord = dataclasses.replace(discord, token=env[TOKEN_ENV])
    if env.get(API_KEY_ENV):
        provider = dataclasses.replace(provider, api_key=env[API_KEY_ENV])
    if env.get(DATABASE_URL_ENV):
        database = dataclasses.replace(database, url=env[DATABASE_URL_ENV])
    return dataclasses.replace(settings, discord=discord, provider=provider, database=database)


def _check_quotas(settings: Settings) -> None:
    quotas = settings.quotas
    for name in (
        "images_per_day",
        "images_per_month",
        "spend_per_month_usd",
        "member_images_per_day",
    ):
        if getattr(quotas, name) > getattr(quotas, f"max_{name}"):
            raise ConfigError(f"quotas.{name}: the default is above quotas.max_{name}")
    allowed = quotas.allowed_qualities
    if quotas.default_quality and allowed and quotas.default_quality not in allowed:
        raise ConfigError("quotas.default_quality: not one of quotas.allowed_qualities")


def _check_base_url(url: str, key: str = "provider.base_url") -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{key}: must be an http(s) URL such as https://api.openai.com/v1 (got {url!r})"
        )


def _build_backends(raw: Any) -> dict[str, ProviderSettings]:
    """``[backends.NAME]`` tables: the keys of ``[provider]``, each checked the same way."""
    if not isinstance(raw, dict):
        raise ConfigError("backends: must be a table of [backends.NAME] tables")
    backends = {}
    for name, table in raw.items():
        if name == DEFAULT_BACKEND or not BACKEND_NAME.fullmatch(name):
            raise ConfigError(
                f"backends.{name}: a backend's name is 1-32 of a-z, 0-9, _ and - "
                f'(and not "{DEFAULT_BACKEND}", the name of [provider])'
            )
        where = f"backends.{name}."
        backends[name] = _typed_defaults(_build(ProviderSettings, table, where), table, where)
    return backends


def _typed_defaults(
    settings: ProviderSettings, raw: Mapping[str, Any], prefix: str
) -> ProviderSettings:
    """A self-hosted server's defaults where the operator gave none: no model (the server's
    loaded checkpoint or the workflow's) and a longer request time."""
    if settings.type == "openai":
        return settings
    changes: dict[str, Any] = {}
    if "model" not in raw:
        changes["model"] = ""
    if "timeout_seconds" not in raw:
        changes["timeout_seconds"] = SD_TIMEOUT_SECONDS
    if "read_timeout_seconds" not in raw:
        # The answer comes only when the images are made: the silence is the whole render.
        changes["read_timeout_seconds"] = SD_TIMEOUT_SECONDS
    return dataclasses.replace(settings, **changes)


#: Where each self-hosted kind listens by default, for the message that asks for base_url.
_KIND_URLS = {"automatic1111": "http://127.0.0.1:7860", "comfyui": "http://127.0.0.1:8188"}


def _check_backends(settings: Settings) -> None:
    """Each backend's URL, and the fallback chain: names that exist, no loop, [provider] only."""
    everyone = {DEFAULT_BACKEND: settings.provider, **settings.backends}
    openai_url = ProviderSettings().base_url
    for name, backend in everyone.items():
        prefix = "provider" if name == DEFAULT_BACKEND else f"backends.{name}"
        _check_base_url(backend.base_url, f"{prefix}.base_url")
        if backend.type != "openai" and backend.base_url == openai_url:
            raise ConfigError(
                f"{prefix}.base_url: a {backend.type} backend needs its server's address, "
                f"e.g. {_KIND_URLS[backend.type]} (it is still the OpenAI default)"
            )
        if name != DEFAULT_BACKEND and backend.fallback:
            raise ConfigError(f"{prefix}.fallback: only [provider] has a fallback list")
    if settings.provider.enabled_guilds:
        raise ConfigError(
            "provider.enabled_guilds: [provider] serves every server (the others fall back to "
            "it); limit the servers with [quotas] allowed_guilds, the other backends with theirs"
        )
    seen: set[str] = set()
    for name in settings.provider.fallback:
        if name == DEFAULT_BACKEND:
            raise ConfigError("provider.fallback: 'default' is [provider] itself (a loop)")
        if name not in settings.backends:
            known = ", ".join(settings.backends) or "none: add a [backends.NAME] table"
            raise ConfigError(f"provider.fallback: no backend {name!r} (configured: {known})")
        if name in seen:
            raise ConfigError(f"provider.fallback: {name!r} is listed twice")
        seen.add(name)


#: Why ``precheck = "block"`` cannot start without an OpenAI-type backend (config and app).
PRECHECK_NEEDS_OPENAI = (
    'moderation.precheck: "block" needs an OpenAI-type backend for the /moderations check '
    '([provider] or a [backends.NAME] with type = "openai"; none is configured)'
)


def _check_moderation(settings: Settings) -> None:
    """The pre-check asks an OpenAI-type backend's ``/moderations``: "block" needs one."""
    if settings.moderation.precheck != "block":
        return
    everyone = [settings.provider, *settings.backends.values()]
    if not any(backend.type == "openai" for backend in everyone):
        raise ConfigError(PRECHECK_NEEDS_OPENAI)


#: The async drivers the bot is built and tested with, and how to get each.
_ASYNC_URLS = "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST/DB"
_DRIVER_INSTALL = {"asyncpg": "install the postgres extra: pip install 'imagebot[postgres]'"}


def _check_database_url(url: str, *, from_env: bool) -> None:
    """A URL the engine cannot use is one line naming the fix, before any command starts.

    The URL itself is never shown: it may hold a password. Only its driver name is.
    """
    key = f"database.url (from {DATABASE_URL_ENV})" if from_env else "database.url"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"{key}: unknown database kind {parsed.drivername!r}; use {_ASYNC_URLS}"
        ) from None
    except ArgumentError:
        raise ConfigError(f"{key}: not a database URL; use {_ASYNC_URLS}") from None
    if not getattr(dialect, "is_async", False):
        if parsed.get_backend_name() == "sqlite":
            fix = "use sqlite+aiosqlite:///PATH"
        elif parsed.get_backend_name() == "postgresql":
            fix = "use postgresql+asyncpg://USER:PASSWORD@HOST/DB"
        else:
            fix = f"use {_ASYNC_URLS}"
        raise ConfigError(
            f"{key}: {fix} (the bot needs an async driver; {parsed.drivername!r} is not one)"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or parsed.get_driver_name()).partition(".")[0]
        fix = _DRIVER_INSTALL.get(module, f"install the driver: pip install {module}")
        raise ConfigError(f"{key}: {fix} (the module {module!r} is missing)") from None


def _build(cls: type[Any], raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config file"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{key}.")
        else:
            # A secret's value never appears in an error: the message may end up in a log.
            secret = not fields[name].repr
            values[name] = _coerce(key, hint, value, fields[name].metadata, secret=secret)
    return cls(**values)


def _is_id(value: Any) -> bool:
    """A Discord id: a positive whole number, or its digits as text (as Discord copies it)."""
    if isinstance(value, str):
        return value.isdigit()
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _coerce(
    key: str, hint: Any, value: Any, metadata: Mapping[str, Any], *, secret: bool = False
) -> Any:
    got = " (the value is secret: not shown)" if secret else f" (got {value!r})"
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{key}: must be one of {allowed}{got}")
        return value
    if origin in (Mapping, dict) or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a table")
        return types.MappingProxyType(value)
    if origin is tuple and typing.get_args(hint)[0] is int:
        if not isinstance(value, list) or not all(_is_id(v) for v in value):
            raise ConfigError(f"{key}: must be a list of ids{got}")
        return tuple(int(v) for v in value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings{got}")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false{got}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string{got}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be a whole number{got}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number{got}")
        value = float(value)
    else:  # pragma: no cover - a new field type without a coercion rule is a programming error
        raise TypeError(f"no coercion for {key}: {hint!r}")
    low, high = metadata.get("range", (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(
            part
            for part in (
                f"at least {low:g}" if low is not None else "",
                f"at most {high:g}" if high is not None else "",
            )
            if part
        )
        raise ConfigError(f"{key}: must be {bounds}{got}")
    return value
