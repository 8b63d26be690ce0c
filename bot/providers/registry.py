"""Every configured backend, built once at start: ``[provider]`` ("default") and each
``[backends.NAME]``, behind the one :class:`~bot.providers.backend.Backend` interface.

The rest of the bot asks a :class:`BackendSet` for a backend by the name a job carries and never
learns which kind it got. Which backend a server may use is the operator's ``enabled_guilds``;
which one it does use is its admins' choice (``guild_settings.backend``), read by the jobs layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from bot.config import DEFAULT_BACKEND, ProviderSettings, Settings
from bot.errors import ConfigError
from bot.providers.automatic1111 import Automatic1111Client
from bot.providers.backend import Backend
from bot.providers.capabilities import ModelSpec, build_model_table
from bot.providers.client import ImagesClient, OnRateLimited
from bot.providers.comfyui import ComfyUIClient
from bot.providers.comfyui_mapping import load_workflows

log = logging.getLogger(__name__)

VerifyImages = Callable[[list[bytes]], Awaitable[Sequence[tuple[str, int, int]]]]
#: Our mask PNG (transparent = repaint) -> a Stable Diffusion server's (white = repaint).
ConvertMask = Callable[[bytes], Awaitable[bytes]]
Observe = Callable[[str, float, str | None], None]

#: Jobs a backend runs at once when its ``concurrency`` is 0: a GPU server runs one at a time.
DEFAULT_CONCURRENCY = {"openai": 4, "automatic1111": 1, "comfyui": 1}


@dataclass(frozen=True)
class BackendSet:
    """The configured backends by name, "default" first, with the operator's settings of each."""

    backends: Mapping[str, Backend]
    settings: Mapping[str, ProviderSettings]

    @property
    def default(self) -> Backend:
        return self.backends[DEFAULT_BACKEND]

    def get(self, name: str) -> Backend:
        """The backend called ``name``; KeyError when none is configured so."""
        return self.backends[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self.backends)

    def __iter__(self) -> Iterator[Backend]:
        return iter(self.backends.values())

    def enabled_for(self, guild_id: int | None) -> list[str]:
        """The backends a server may use: "default" always, the others where the operator
        enabled them for it (``enabled_guilds``; empty: every server; a DM is no server)."""
        return [
            name
            for name, settings in self.settings.items()
            if name == DEFAULT_BACKEND
            or not settings.enabled_guilds
            or (guild_id is not None and guild_id in settings.enabled_guilds)
        ]

    def for_job(self, name: str | None) -> Backend:
        """The backend a job names; "default" for None, or for a name no longer configured."""
        if name is None:
            return self.default
        backend = self.backends.get(name)
        if backend is None:
            log.warning("backend %r is not configured any more: using the default", name)
            return self.default
        return backend

    def fallbacks(self, name: str) -> list[Backend]:
        """The backends tried after ``name`` when it is down (``[provider] fallback``)."""
        if name != DEFAULT_BACKEND:
            return []
        return [self.backends[other] for other in self.settings[DEFAULT_BACKEND].fallback]

    def concurrency(self, name: str) -> int:
        """Jobs the backend ``name`` runs at once (its ``concurrency``, else its kind's)."""
        settings = self.settings[name]
        return settings.concurrency or DEFAULT_CONCURRENCY[settings.type]

    async def aclose(self) -> None:
        await asyncio.gather(*(backend.aclose() for backend in self))


def configured(settings: Settings) -> dict[str, ProviderSettings]:
    """Every backend's settings by name, "default" (``[provider]``) first."""
    return {DEFAULT_BACKEND: settings.provider, **settings.backends}


def check_backends(settings: Settings) -> None:
    """What :func:`build_backends` would refuse, without building anything (at start, before
    any command runs, so a bad ``[backends.NAME]`` stops the start like any other key)."""
    for name, backend in configured(settings).items():
        where = "provider" if name == DEFAULT_BACKEND else f"backends.{name}"
        if backend.type == "openai":
            _model_table(backend, where)
        elif backend.type == "comfyui":
            load_workflows(backend.workflows)  # ConfigError naming the file and the node


def build_backends(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    verify: VerifyImages,
    convert_mask: ConvertMask,
    user_salt: str = "",
    observe: Observe | None = None,
    on_rate_limited: OnRateLimited | None = None,
) -> BackendSet:
    """One Backend per configured backend; ConfigError names the key that cannot work.

    ``on_rate_limited`` hears the OpenAI backends' 429s with a ``retry-after`` (a self-hosted
    server has no such limit: it runs what reaches it, one at a time)."""
    everyone = configured(settings)
    backends: dict[str, Backend] = {}
    for name, backend in everyone.items():
        where = "provider" if name == DEFAULT_BACKEND else f"backends.{name}"
        backends[name] = _build(
            name,
            backend,
            where,
            session,
            verify=verify,
            convert_mask=convert_mask,
            user_salt=user_salt,
            observe=observe,
            on_rate_limited=on_rate_limited,
            allowed_models=settings.quotas.allowed_models,
        )
    return BackendSet(backends, everyone)


def _build(
    name: str,
    settings: ProviderSettings,
    where: str,
    session: aiohttp.ClientSession,
    *,
    verify: VerifyImages,
    convert_mask: ConvertMask,
    user_salt: str,
    observe: Observe | None,
    on_rate_limited: OnRateLimited | None = None,
    allowed_models: Sequence[str] = (),
) -> Backend:
    if settings.type in {"automatic1111", "comfyui"}:
        client = Automatic1111Client if settings.type == "automatic1111" else ComfyUIClient
        return client(
            session,
            settings,
            name=name,
            verify=verify,
            convert_mask=convert_mask,
            observe=observe,
        )
    return ImagesClient(
        session,
        settings,
        _model_table(settings, where),
        name=name,
        verify=verify,
        observe=observe,
        on_rate_limited=on_rate_limited,
        user_salt=user_salt,
        check_models=allowed_models if name == DEFAULT_BACKEND else (),
    )


def _model_table(settings: ProviderSettings, where: str) -> dict[str, ModelSpec]:
    """An OpenAI backend's models: the built-in table with its ``models`` overrides."""
    models = build_model_table(settings.models)
    if settings.model not in models:
        known = ", ".join(sorted(models))
        raise ConfigError(
            f"{where}.model: unknown model {settings.model!r} "
            f'(known: {known}; add it under [{where}.models."{settings.model}"])'
        )
    return models
