"""/settings show|set|reset: a member's own defaults, for every option they leave out.

Everyone may use /settings (members set their own defaults); the server's admins' part
(``server-backend``) is added by :mod:`bot.discord.admin` and checks Manage Server when it runs,
since Discord cannot hide one subcommand of a group. A default is checked when it is set, on the
backend it will run on here, so a typo is answered at once; it is checked again at every request
(:func:`bot.quotas.member_defaults.with_defaults`), where one that no longer holds is left out
with a note. Answers are private.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.discord.errors import NoDefaultGiven
from bot.discord.i18n import Catalog, text
from bot.discord.tree import send_private
from bot.generation import ImageOrder
from bot.jobs.backends import BackendChoice
from bot.providers import Operation
from bot.providers.registry import BackendSet
from bot.quotas.backends import BackendNotEnabled
from bot.quotas.kept_defaults import KeptDefaults
from bot.quotas.member_defaults import (
    SETTINGS,
    MemberDefaults,
    load_defaults,
    order_check,
    reset_defaults,
    save_defaults,
)

SettingsPart = app_commands.Group | app_commands.Command[Any, ..., Any]

#: What each default is called where it is shown (a key each).
LABELS = {
    "backend": "backend",
    "model": "model",
    "size": "size",
    "quality": "quality",
    "n": "count",
    "style": "style",
    "negative_prompt": "negative prompt",
    "private": "private results",
}
#: The prompt the defaults are checked with when they are set (a prompt is never a default).
CHECK_PROMPT = "a picture"


def label(catalog: Catalog, locale: Any, name: str) -> str:
    return catalog.text(f"choice.member_default.{name}", locale)


class SettingsGroup(app_commands.Group):
    """/settings show | set | reset, plus the parts other features bring."""

    def __init__(
        self,
        catalog: Catalog,
        sessions: Sessions,
        quotas: QuotaSettings,
        backends: BackendSet,
        choice: BackendChoice,
        kept: KeptDefaults,
        parts: Any = (),
    ) -> None:
        super().__init__(
            name=text("settings", "cmd.settings.name"),
            description=text(
                "See and change your own defaults (and this server's backend)",
                "cmd.settings.description",
            ),
        )
        self.catalog, self.sessions, self.quotas = catalog, sessions, quotas
        self.backends, self.choice = backends, choice
        #: What requests read: told at once of a change made here.
        self.kept = kept
        self.check = order_check(backends, quotas)
        for part in parts:
            self.add_command(part)

    def _shown(self, defaults: MemberDefaults, locale: Any) -> list[str]:
        chosen: dict[str, Any] = dict(defaults.chosen())
        if defaults.private:
            chosen["private"] = self.catalog.text("settings.member.private_on", locale)
        if not chosen:
            return [self.catalog.text("settings.member.none", locale)]
        lines = [self.catalog.text("settings.member.heading", locale)]
        for name, value in chosen.items():
            lines.append(f"- {label(self.catalog, locale, name)}: {value}")
        return lines

    @app_commands.command(
        name=text("show", "cmd.settings.show.name"),
        description=text("See your own defaults", "cmd.settings.show.description"),
    )
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        defaults = await load_defaults(self.sessions, interaction.user.id)
        await send_private(interaction, "\n".join(self._shown(defaults, interaction.locale)))

    @app_commands.command(
        name=text("set", "cmd.settings.set.name"),
        description=text(
            "Choose your own defaults for the options you leave out",
            "cmd.settings.set.description",
        ),
    )
    @app_commands.rename(
        backend=text("backend", "opt.default_backend.name"),
        model=text("model", "opt.default_model.name"),
        size=text("size", "opt.size.name"),
        quality=text("quality", "opt.quality.name"),
        count=text("count", "opt.n.name"),
        style=text("style", "opt.style.name"),
        negative=text("negative", "opt.negative.name"),
        private=text("private", "opt.private.name"),
    )
    @app_commands.describe(
        backend=text(
            "Your backend, among those this server may use", "opt.default_backend.description"
        ),
        model=text("Your model on that backend", "opt.default_model.description"),
        size=text("Your image size, such as 1024x1024", "opt.default_size.description"),
        quality=text("Your image quality", "opt.default_quality.description"),
        count=text("How many images you get at once", "opt.default_n.description"),
        style=text("Your image style", "opt.default_style.description"),
        negative=text(
            "What your images should not show (Stable Diffusion only)",
            "opt.default_negative.description",
        ),
        private=text(
            "True: your results are shown only to you (a private reply, else a DM)",
            "opt.default_private.description",
        ),
    )
    async def set_defaults(
        self,
        interaction: discord.Interaction[Any],
        backend: Range[str, 1, 64] | None = None,
        model: Range[str, 1, 64] | None = None,
        size: Range[str, 1, 16] | None = None,
        quality: Range[str, 1, 16] | None = None,
        count: Range[int, 1, 10] | None = None,
        style: Range[str, 1, 16] | None = None,
        negative: Range[str, 1, 2000] | None = None,
        private: bool | None = None,
    ) -> None:
        given: dict[str, str | int | bool | None] = {
            "backend": backend,
            "model": model,
            "size": size.strip().lower().replace(" ", "") if size else None,
            "quality": quality,
            "n": count,
            "style": style,
            "negative_prompt": negative,
            "private": private,
        }
        changes = {name: value for name, value in given.items() if value is not None}
        if not changes:
            raise NoDefaultGiven()
        current = await load_defaults(self.sessions, interaction.user.id)
        # Where results go is no option of the order: nothing to check it against.
        order_changes = {name: value for name, value in changes.items() if name != "private"}
        if order_changes:
            await self._check(interaction.guild_id, current, order_changes)
        saved = await save_defaults(self.sessions, interaction.user.id, changes)
        self.kept.forget(interaction.user.id)
        locale = interaction.locale
        lines = [self.catalog.text("settings.member.saved", locale), *self._shown(saved, locale)]
        await send_private(interaction, "\n".join(lines))

    async def _check(
        self, guild_id: int | None, current: MemberDefaults, changes: Mapping[str, str | int]
    ) -> None:
        """Refuse defaults that would not hold here now, with the error a request would get."""
        backend = changes.get("backend")
        enabled = self.backends.enabled_for(guild_id)
        if backend is not None and backend not in enabled:
            raise BackendNotEnabled(name=str(backend)[:64], allowed=", ".join(enabled))
        if backend is None:
            backend = current.backend if current.backend in enabled else None
        if backend is None:
            backend = await self.choice.for_guild(guild_id)
        values = {**current.chosen(), **changes}
        model = values.get("model")
        if "model" not in changes and model not in self.backends.get(str(backend)).models:
            model = None  # the old model of another backend: not what is being set
        options: dict[str, Any] = {
            name: changes[name]
            for name in ("size", "quality", "n", "style", "negative_prompt")
            if name in changes
        }
        order = ImageOrder(
            Operation.GENERATE,
            prompt=CHECK_PROMPT,
            backend=str(backend),
            model=str(model) if model is not None else None,
            **options,
        )
        self.check(order)

    @app_commands.command(
        name=text("reset", "cmd.settings.reset.name"),
        description=text("Forget your defaults: all, or one", "cmd.settings.reset.description"),
    )
    @app_commands.rename(setting=text("setting", "opt.default_setting.name"))
    @app_commands.describe(
        setting=text(
            "Only this one (leave it out to forget them all)", "opt.default_setting.description"
        )
    )
    @app_commands.choices(
        setting=[
            Choice(name=text(LABELS[name], f"choice.member_default.{name}"), value=name)
            for name in SETTINGS
        ]
    )
    async def reset(
        self, interaction: discord.Interaction[Any], setting: str | None = None
    ) -> None:
        locale, user_id = interaction.locale, interaction.user.id
        if setting is None or setting not in SETTINGS:
            await reset_defaults(self.sessions, user_id)
            self.kept.forget(user_id)
            await send_private(interaction, self.catalog.text("settings.member.reset_all", locale))
            return
        saved = await save_defaults(self.sessions, user_id, {setting: None})
        self.kept.forget(user_id)
        done = self.catalog.text(
            "settings.member.reset_one", locale, setting=label(self.catalog, locale, setting)
        )
        await send_private(interaction, "\n".join([done, *self._shown(saved, locale)]))

    @set_defaults.autocomplete("backend")
    async def backend_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice[str]]:
        typed = current.strip().lower()
        return [
            Choice(name=f"{name} ({self.backends.settings[name].type})", value=name)
            for name in self.backends.enabled_for(interaction.guild_id)
            if typed in name.lower()
        ][:25]

    @set_defaults.autocomplete("model")
    async def model_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice[str]]:
        typed = current.strip().lower()
        names: dict[str, None] = {}
        for backend in self.backends.enabled_for(interaction.guild_id):
            names.update(dict.fromkeys(self.backends.get(backend).models))
        return [Choice(name=name, value=name) for name in names if typed in name.lower()][:25]
