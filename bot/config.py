"""Typed, validated settings from a TOML file plus the environment.

Settings are checked completely at start so a typo stops the bot with one line naming the key,
instead of surfacing hours later as a strange failure. Secrets may come from the environment
(``DISCORD_TOKEN``, ``OPENAI_API_KEY``), which wins over the file, so the file can be committed or
baked into an image without them. Secrets are excluded from every ``repr`` and from every error
message (a wrong-typed key names its key, never its value).

The rules are the dataclasses' annotations, checked by pydantic; this module imports nothing of
the bot but its errors. The free-form tables (``[provider.models.*]``, ``[prices]``) are checked
by the code that understands them, when bot.app builds the model and price tables at start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    with_config,
)

from bot.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.toml")
CONFIG_ENV = "IMAGEBOT_CONFIG"
TOKEN_ENV = "DISCORD_TOKEN"
API_KEY_ENV = "OPENAI_API_KEY"
DATABASE_URL_ENV = "DATABASE_URL"
ENV_PREFIX = "IMAGEBOT_"
#: What Kubernetes injects for a service (``<SERVICE>_PORT=tcp://10.0.0.11:8080``): never a setting.
_SERVICE_LINK = re.compile(r"(?:tcp|udp|sctp)://[^/\s]+:\d+")

log = logging.getLogger(__name__)

FitChoice = Literal["auto", "crop", "pad"]


def _ids(value: Any) -> Any:
    """Discord ids: positive whole numbers, or their digits as text (as Discord copies them)."""
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of ids")
    ids = []
    for item in value:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError("must be a list of ids")
        ids.append(item)
    return tuple(ids)


# The declarative rules: TOML already has types, so values are taken as they are (strict), never
# converted from text ("5" is no number); a key no section knows is an error (_STRICT_KEYS).
Whole = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # an integer is a number too
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Texts = tuple[Text, ...]
Ids = Annotated[tuple[int, ...], BeforeValidator(_ids)]
#: A free-form table handed on as it is (read-only): [prices], [provider.models.<name>].
Table = Annotated[Mapping[Text, Any], AfterValidator(MappingProxyType)]
_STRICT_KEYS = ConfigDict(extra="forbid")


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class DiscordSettings:
    token: Text = field(default="", repr=False)
    #: REST base; REST proxies (and the tests) point it elsewhere.
    api_base_url: Text = "https://discord.com/api/v10"
    #: Gateway override, e.g. a self-hosted gateway proxy. "" = ask Discord.
    gateway_url: Text = ""
    #: Sync commands to this guild only (instant, for development). 0 = sync globally.
    dev_guild_id: Annotated[Whole, Field(ge=0)] = 0
    #: Reacting to a result with this emoji varies its first image (1️⃣-🔟 pick the image).
    vary_emoji: Text = "🔄"
    #: Sync slash commands at every start. Off: only `python -m bot sync` does it.
    sync_commands: Flag = True


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class ProviderSettings:
    base_url: Text = "https://api.openai.com/v1"
    api_key: Text = field(default="", repr=False)
    model: Text = "gpt-image-2"
    images_per_minute: Annotated[Whole, Field(ge=1, le=100_000)] = 50
    #: Total time for one HTTP request, including reading the body.
    timeout_seconds: Annotated[Number, Field(ge=1, le=3600)] = 120.0
    connect_timeout_seconds: Annotated[Number, Field(ge=0.1, le=600)] = 10.0
    #: Longest silence between two reads of a response.
    read_timeout_seconds: Annotated[Number, Field(ge=0.1, le=3600)] = 90.0
    #: Largest answer body read, decoded (JSON with base64 images, or one downloaded image).
    max_response_mb: Annotated[Number, Field(ge=1, le=4096)] = 512.0
    #: Hosts ("name" or "name:port") that image URLs may point to although not public.
    allowed_hosts: Texts = ()
    #: Extra attempts after a 429, a 5xx, a timeout or a connection error.
    max_retries: Annotated[Whole, Field(ge=0, le=10)] = 3
    #: A retry-after longer than this is not waited for: the request fails as rate limited.
    max_retry_wait_seconds: Annotated[Number, Field(ge=0, le=3600)] = 60.0
    #: Salt for the hashed member id sent as ``user``. "" = the installation's own random salt,
    #: made at the first start and kept in the database.
    user_salt: Text = field(default="", repr=False)
    #: Operator additions and overrides of the model capability table (raw TOML tables).
    models: Annotated[Mapping[Text, Table], AfterValidator(MappingProxyType)] = field(
        default_factory=dict
    )


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class ImagesSettings:
    #: Largest upload accepted, checked before and while downloading.
    max_upload_mb: Annotated[Number, Field(ge=0.1, le=500)] = 25.0
    #: Largest decoded image (width x height), checked before decoding: stops decompression bombs.
    max_pixels: Annotated[Whole, Field(ge=1_000_000, le=500_000_000)] = 50_000_000
    #: How non-square uploads become square: "crop" (centre), "pad", or "auto" (pad pictures
    #: to edit so nothing is lost, crop the rest so variations are not framed by bars).
    fit: FitChoice = "auto"
    #: Threads for Pillow work, off the event loop.
    workers: Annotated[Whole, Field(ge=1, le=64)] = 2


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class JobsSettings:
    #: Requests to the image API running at the same time.
    concurrency: Annotated[Whole, Field(ge=1, le=64)] = 4
    #: Jobs one member may have waiting at once, and one guild.
    max_queued_per_member: Annotated[Whole, Field(ge=1, le=1000)] = 5
    max_queued_per_guild: Annotated[Whole, Field(ge=1, le=100_000)] = 50
    #: Seconds the bot waits for running jobs on shutdown before leaving them for the restart.
    shutdown_grace_seconds: Annotated[Number, Field(ge=0, le=3600)] = 30.0
    #: Requests one member may start per minute (commands, buttons, reactions together).
    member_requests_per_minute: Annotated[Whole, Field(ge=1, le=10_000)] = 10


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class QuotaSettings:
    """The operator's rules. Guild admins choose their limits up to the ``max_`` ceilings."""

    images_per_day: Annotated[Whole, Field(ge=0)] = 100
    images_per_month: Annotated[Whole, Field(ge=0)] = 1000
    spend_per_month_usd: Annotated[Number, Field(ge=0)] = 10.0
    member_images_per_day: Annotated[Whole, Field(ge=0)] = 20
    max_images_per_day: Annotated[Whole, Field(ge=0)] = 1000
    max_images_per_month: Annotated[Whole, Field(ge=0)] = 10_000
    max_spend_per_month_usd: Annotated[Number, Field(ge=0)] = 100.0
    max_member_images_per_day: Annotated[Whole, Field(ge=0)] = 200
    #: Most images one request may ask for.
    max_n: Annotated[Whole, Field(ge=1, le=10)] = 4
    #: Models and sizes members may use; empty: all the configured model offers.
    allowed_models: Texts = ()
    allowed_sizes: Texts = ()
    #: Generation in direct messages, with its own per-user daily limit.
    dm_enabled: Flag = False
    dm_images_per_day: Annotated[Whole, Field(ge=0)] = 5
    #: The operator's hard ceilings over every server and DM together, per UTC month and day.
    #: A day cap of 0 means none; a month cap of 0 stops all generation.
    total_spend_per_month_usd: Annotated[Number, Field(ge=0)] = 100.0
    total_spend_per_day_usd: Annotated[Number, Field(ge=0)] = 0.0
    #: The only servers the bot works in; empty: every server it is added to.
    allowed_guilds: Ids = ()


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class DatabaseSettings:
    url: Text = field(default="sqlite+aiosqlite:///data/bot.db", repr=False)
    #: How long a SQLite write waits for another writer's lock before it fails.
    busy_timeout_seconds: Annotated[Number, Field(ge=0.01, le=600)] = 30.0


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class StorageSettings:
    """What the bot keeps on disk, and for how long."""

    #: Where made images wait while the database cannot record them (see bot.jobs.spool).
    spool_dir: Text = "data/spool"
    #: Days a finished job keeps its stored images (uploads as sent, undelivered results);
    #: the ledger row itself is kept.
    retention_days: Annotated[Whole, Field(ge=1, le=36_500)] = 30


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: "plain" lines for people, "json" (one object per line) for log collectors.
    format: Literal["plain", "json"] = "plain"


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class HttpSettings:
    """The operator's HTTP endpoint: /healthz and /metrics (Prometheus)."""

    enabled: Flag = False
    host: Text = "127.0.0.1"
    port: Annotated[Whole, Field(ge=1, le=65535)] = 8080


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class Settings:
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    provider: ProviderSettings = field(default_factory=ProviderSettings)
    images: ImagesSettings = field(default_factory=ImagesSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    #: Price overrides, see config.example.toml (raw TOML, validated by bot.quotas.prices).
    prices: Table = field(default_factory=dict)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    http: HttpSettings = field(default_factory=HttpSettings)


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
    try:
        settings = _SETTINGS.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc, raw)) from None
    settings = _apply_env(settings, env)
    _check_quotas(settings)
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


_SETTINGS = TypeAdapter(Settings)

#: What an operator reads for each kind of problem pydantic reports.
_PROBLEMS = {
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
}


def _first_problem(error: ValidationError, raw: Mapping[str, Any]) -> str:
    """pydantic's first error as one line naming the key; a secret's value is never shown."""
    problem = error.errors(include_url=False)[0]
    path = [part for part in problem["loc"] if isinstance(part, str)]
    key = ".".join(path)
    owner: Any = Settings
    spec: dataclasses.Field[Any] | None = None
    for part in path:
        known = {f.name: f for f in dataclasses.fields(owner)} if _is_section(owner) else {}
        if part not in known:
            if problem["type"] == "unexpected_keyword_argument":
                return f"{key}: unknown key (known: {', '.join(known)})"
            break
        spec, owner = known[part], typing.get_type_hints(owner, include_extras=True)[part]
    value: Any = raw
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    secret = spec is not None and not spec.repr
    got = " (the value is secret: not shown)" if secret else f" (got {value!r})"
    hint = typing.get_args(owner)[0] if typing.get_origin(owner) is Annotated else owner
    if problem["type"] == "literal_error":
        allowed = ", ".join(repr(choice) for choice in typing.get_args(hint))
        return f"{key}: must be one of {allowed}{got}"
    if problem["type"] in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(owner)
        bounds = " and ".join(
            part
            for part in (
                f"at least {low:g}" if low is not None else "",
                f"at most {high:g}" if high is not None else "",
            )
            if part
        )
        return f"{key}: must be {bounds}{got}"
    if problem["type"] == "value_error":  # one of ours, e.g. _ids
        return f"{key}: {problem['ctx']['error']}{got}"
    if typing.get_origin(hint) is tuple and problem["type"] in ("string_type", "tuple_type"):
        return f"{key}: must be a list of strings{got}"
    if problem["type"] in ("dataclass_type", "dict_type", "mapping_type"):
        return f"{key}: must be a table"
    return f"{key}: {_PROBLEMS.get(problem['type'], problem['msg'])}{got}"


def _is_section(owner: Any) -> bool:
    return isinstance(owner, type) and dataclasses.is_dataclass(owner)


def _bounds(hint: Any) -> tuple[float | None, float | None]:
    """The ``Field(ge=..., le=...)`` limits of a key, both named in its error."""
    low = high = None
    for extra in getattr(hint, "__metadata__", ()):
        for rule in getattr(extra, "metadata", ()):
            low, high = getattr(rule, "ge", low), getattr(rule, "le", high)
    return low, high
