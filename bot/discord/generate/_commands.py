"""/imagine, /edit, /vary and the "Vary image" context menu.

The commands are built when the extension loads, from the configured model's capabilities:
members see only the options and choices that model supports (a ``quality`` option exists only
for models with qualities, ``count`` tops out at the model's ``max_n``), so most mistakes cannot
be typed at all. Commands a model cannot serve (dall-e-3 has no edits) are not registered.

The Stable Diffusion options (negative, seed, steps, guidance, sampler, checkpoint) exist only
when a configured backend takes them; their bounds are the loosest of those backends' limits,
and each request is checked against its own server's backend when it is submitted. Sizes
follow the server's backend too where backends differ (autocomplete instead of choices).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, locale_str

from bot.config import QuotaSettings
from bot.discord.generate._backends import (
    add_size_suggestions,
    add_suggestions,
    sizes_follow_server,
    typed_size,
)
from bot.discord.generate._submit import Actions
from bot.discord.i18n import Catalog, text
from bot.generation import BLEND, DEFAULT_BLEND_PROMPT, MAX_BLEND_IMAGES, FitChoice, ImageOrder
from bot.providers import ModelSpec, Operation, OptionChoices, option_choices
from bot.providers.checks import MAX_SEED, SDLimits

Callback = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Option:
    """One command option: its Python parameter and how Discord shows it."""

    name: str
    annotation: Any
    default: Any
    description: locale_str
    rename: locale_str
    choices: list[Choice[str]] | None = None


def _choices(values: tuple[str, ...], kind: str, catalog: Catalog) -> list[Choice[str]]:
    result = []
    for value in values[:25]:
        key = f"choice.{kind}.{value}"
        label = catalog.text(key) if catalog.template(key) is not None else value
        result.append(Choice(name=text(label, key), value=value))
    return result


def common_options(
    choices: OptionChoices, catalog: Catalog, *, server_sizes: bool = False
) -> list[Option]:
    """``server_sizes``: the size option is typed, with the sizes of the member's server's
    backend suggested (see ``_backends.sizes_follow_server``), not a list of ``choices``."""
    options = []
    if choices.max_n > 1:
        options.append(
            Option(
                "n",
                app_commands.Range[int, 1, choices.max_n] | None,
                None,
                text("How many images to make", "opt.n.description"),
                text("count", "opt.n.name"),
            )
        )
    if choices.sizes or server_sizes:
        listed = [Choice(name=s, value=s) for s in choices.sizes[:25]]
        options.append(
            Option(
                "size",
                str | None,
                None,
                text("Image size in pixels", "opt.size.description"),
                text("size", "opt.size.name"),
                None if server_sizes else listed,
            )
        )
    # A single quality or style is no choice: the option would only add noise to the command.
    if len(choices.qualities) > 1:
        options.append(
            Option(
                "quality",
                str | None,
                None,
                text("Image quality (higher costs more)", "opt.quality.description"),
                text("quality", "opt.quality.name"),
                _choices(choices.qualities, "quality", catalog),
            )
        )
    if len(choices.styles) > 1:
        options.append(
            Option(
                "style",
                str | None,
                None,
                text("Image style", "opt.style.description"),
                text("style", "opt.style.name"),
                _choices(choices.styles, "style", catalog),
            )
        )
    return options


#: Longest negative prompt a member may type (the servers take any length).
MAX_NEGATIVE_CHARS = 2000
#: Longest sampler and checkpoint names a member may type: what the job row keeps (its
#: ``sampler`` and ``checkpoint`` columns; PostgreSQL refuses a longer value, SQLite does not).
MAX_SAMPLER_CHARS = 64
MAX_CHECKPOINT_CHARS = 255


def sd_options(bounds: SDLimits, operation: Operation) -> list[Option]:
    """The Stable Diffusion options, within ``bounds``; a variation has no sampler or
    checkpoint to choose (the backend's own are used)."""
    options = [
        Option(
            "negative_prompt",
            app_commands.Range[str, 1, MAX_NEGATIVE_CHARS],
            "",
            text("What the image should not show", "opt.negative.description"),
            text("negative", "opt.negative.name"),
        ),
        Option(
            "seed",
            app_commands.Range[int, 0, MAX_SEED] | None,
            None,
            text("Start from this seed to make the same image again", "opt.seed.description"),
            text("seed", "opt.seed.name"),
        ),
        Option(
            "steps",
            app_commands.Range[int, 1, bounds.max_steps] | None,
            None,
            text("Sampling steps: more is slower and finer", "opt.steps.description"),
            text("steps", "opt.steps.name"),
        ),
        Option(
            "guidance",
            app_commands.Range[float, 1.0, float(bounds.max_guidance)] | None,
            None,
            text("How closely to follow the prompt (CFG scale)", "opt.guidance.description"),
            text("guidance", "opt.guidance.name"),
        ),
    ]
    if operation is not Operation.VARY:
        options += [
            Option(
                "sampler",
                app_commands.Range[str, 1, MAX_SAMPLER_CHARS] | None,
                None,
                text("The sampler the server uses", "opt.sampler.description"),
                text("sampler", "opt.sampler.name"),
            ),
            Option(
                "checkpoint",
                app_commands.Range[str, 1, MAX_CHECKPOINT_CHARS] | None,
                None,
                text("The model file the server loads", "opt.checkpoint.description"),
                text("checkpoint", "opt.checkpoint.name"),
            ),
        ]
    return options


def make_command(
    name: locale_str,
    description: locale_str,
    callback: Callback,
    options: list[Option],
) -> app_commands.Command[Any, ..., None]:
    """An app command whose parameters are ``options``, calling ``callback(interaction, **kw)``.

    discord.py reads a command's options from its callback's signature, so the signature is
    built from the model's capabilities instead of being written out once per model.
    """
    parameters = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    for option in sorted(options, key=lambda o: o.default is not inspect.Parameter.empty):
        parameters.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=option.default,
                annotation=option.annotation,
            )
        )

    async def command(interaction: discord.Interaction[Any], **values: Any) -> None:
        await callback(interaction, **values)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__name__ = command.__qualname__ = str(name.message)
    described = app_commands.describe(**{o.name: o.description for o in options})(command)
    renamed = app_commands.rename(**{o.name: o.rename for o in options})(described)
    with_choices = {o.name: o.choices for o in options if o.choices}
    final = app_commands.choices(**with_choices)(renamed) if with_choices else renamed
    built: app_commands.Command[Any, ..., None] = app_commands.Command(
        name=name,
        description=description,
        callback=final,
    )
    return built


#: ``private``: this one result shown only to its requester (True) or posted as usual (False),
#: whatever the member's own default (``/settings set private``); left out, that default.
PRIVATE_OPTION = Option(
    "private",
    bool | None,
    None,
    text(
        "True: only you see the result; False: posted as usual (default: your /settings)",
        "opt.private.description",
    ),
    text("private", "opt.private.name"),
)


def _attachment_option(name: str, description: locale_str, required: bool) -> Option:
    return Option(
        name,
        discord.Attachment if required else discord.Attachment | None,
        inspect.Parameter.empty if required else None,
        description,
        text(name, f"opt.{name}.name"),
    )


def build_commands(
    catalog: Catalog,
    actions: Actions,
    spec: ModelSpec,
    quotas: QuotaSettings,
    default_fit: FitChoice,
    sd: SDLimits | None = None,
) -> list[app_commands.Command[Any, ..., None]]:
    """The commands ``spec`` can serve; with the SD options (within ``sd``) when given.

    Orders name no model: each runs on its server's backend with that backend's own."""

    def extra(operation: Operation) -> list[Option]:
        return sd_options(sd, operation) if sd is not None else []

    server_sizes = sizes_follow_server(actions.backends)

    def common(choices: OptionChoices) -> list[Option]:
        return common_options(choices, catalog, server_sizes=server_sizes)

    prompt_option = Option(
        "prompt",
        app_commands.Range[str, 1, 4000],
        inspect.Parameter.empty,
        text("What the image should show", "opt.prompt.description"),
        text("prompt", "opt.prompt.name"),
    )
    commands = []
    if spec.supports(Operation.GENERATE):
        choices = _capped(option_choices(spec, Operation.GENERATE), quotas)

        async def imagine(
            interaction: discord.Interaction[Any],
            prompt: str,
            private: bool | None = None,
            **kw: Any,
        ) -> None:
            order = ImageOrder(Operation.GENERATE, prompt=prompt, **_typed(kw))
            await actions.imagine(interaction, order, _given(kw), private)

        commands.append(
            make_command(
                text("imagine", "cmd.imagine.name"),
                text("Make images from a prompt", "cmd.imagine.description"),
                imagine,
                [prompt_option, *common(choices), PRIVATE_OPTION, *extra(Operation.GENERATE)],
            )
        )
    if spec.supports(Operation.EDIT):
        choices = _capped(option_choices(spec, Operation.EDIT), quotas)

        async def edit(
            interaction: discord.Interaction[Any],
            image: discord.Attachment,
            prompt: str,
            mask: discord.Attachment | None = None,
            fit: str | None = None,
            private: bool | None = None,
            **kw: Any,
        ) -> None:
            order = ImageOrder(
                Operation.EDIT, prompt=prompt, fit=_fit(fit, default_fit), **_typed(kw)
            )
            await actions.edit(interaction, order, image, mask, _given(kw), private)

        commands.append(
            make_command(
                text("edit", "cmd.edit.name"),
                text("Repaint part of an image to match a prompt", "cmd.edit.description"),
                edit,
                [
                    _attachment_option(
                        "image",
                        text(
                            "The image; its transparent area is repainted unless you add a mask",
                            "opt.edit_image.description",
                        ),
                        True,
                    ),
                    replace(
                        prompt_option,
                        description=text(
                            "The whole new image, not only the part to repaint",
                            "opt.edit_prompt.description",
                        ),
                    ),
                    _attachment_option(
                        "mask",
                        text(
                            "Optional: white or transparent marks the area to repaint",
                            "opt.mask.description",
                        ),
                        False,
                    ),
                    _fit_option(catalog),
                    *[o for o in common(choices) if o.name != "style"],
                    PRIVATE_OPTION,
                    *extra(Operation.EDIT),
                ],
            )
        )
    if spec.supports(Operation.EDIT):
        commands.append(_blend_command(actions, common(choices)))
    if spec.supports(Operation.VARY):
        choices = _capped(option_choices(spec, Operation.VARY), quotas)

        async def vary(
            interaction: discord.Interaction[Any],
            image: discord.Attachment,
            fit: str | None = None,
            private: bool | None = None,
            **kw: Any,
        ) -> None:
            order = ImageOrder(Operation.VARY, fit=_fit(fit, default_fit), **_typed(kw))
            await actions.vary(interaction, order, image, _given(kw), private)

        commands.append(
            make_command(
                text("vary", "cmd.vary.name"),
                text("Make variations of an image", "cmd.vary.description"),
                vary,
                [
                    _attachment_option(
                        "image",
                        text(
                            "The image (PNG, JPEG, WebP, GIF, BMP or TIFF)", "opt.image.description"
                        ),
                        True,
                    ),
                    _fit_option(catalog),
                    *common(choices),
                    PRIVATE_OPTION,
                    *extra(Operation.VARY),
                ],
            )
        )
    for command in commands:
        if sd is not None:
            add_suggestions(command, actions.servers)
        if server_sizes:
            add_size_suggestions(command, actions.servers)
    return commands


def _blend_command(actions: Actions, common: list[Option]) -> app_commands.Command[Any, ..., None]:
    """``/blend image1 image2 [image3 … image5] [prompt]``: one edit of several pictures.

    Registered wherever edits are; a server whose backend takes one picture per edit (dall-e-2,
    the Stable Diffusion servers) is answered at once that it cannot blend (``check_order``)."""

    async def blend(
        interaction: discord.Interaction[Any],
        image1: discord.Attachment,
        image2: discord.Attachment,
        prompt: str | None = None,
        private: bool | None = None,
        **kw: Any,
    ) -> None:
        more = [kw.pop(f"image{index}", None) for index in range(3, MAX_BLEND_IMAGES + 1)]
        images = [image1, image2, *(image for image in more if image is not None)]
        order = ImageOrder(
            Operation.EDIT,
            prompt=(prompt or "").strip() or DEFAULT_BLEND_PROMPT,
            action=BLEND,
            **_typed(kw),
        )
        await actions.blend(interaction, order, images, private)

    pictures = [
        _attachment_option(
            f"image{index}",
            text(
                "A picture to blend" if index < 3 else "Optional: another picture to blend",
                "opt.blend_image.description" if index < 3 else "opt.blend_more.description",
            ),
            index < 3,
        )
        for index in range(1, MAX_BLEND_IMAGES + 1)
    ]
    prompt = Option(
        "prompt",
        app_commands.Range[str, 1, 4000] | None,
        None,
        text(
            "Optional: how to blend them (default: into one picture)",
            "opt.blend_prompt.description",
        ),
        text("prompt", "opt.prompt.name"),
    )
    # Sized like an edit, without its fit or style; no Stable Diffusion options: only GPT
    # image models blend.
    sized = [o for o in common if o.name != "style"]
    return make_command(
        text("blend", "cmd.blend.name"),
        text("Blend two to five images into one", "cmd.blend.description"),
        blend,
        [*pictures, prompt, *sized, PRIVATE_OPTION],
    )


def _fit_option(catalog: Catalog) -> Option:
    return Option(
        "fit",
        str | None,
        None,
        text("How an image is fitted to the size the model makes", "opt.fit.description"),
        text("fit", "opt.fit.name"),
        _choices(("crop", "pad"), "fit", catalog),
    )


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """The options as typed, with a typed size in the form the backends know ("1024x1024");
    a count left out is the order's default (one image, or the member's own default)."""
    values = {name: value for name, value in values.items() if name != "n" or value is not None}
    size = values.get("size")
    return values if size is None else {**values, "size": typed_size(size)}


def _given(values: dict[str, Any]) -> frozenset[str]:
    """The options the member typed: the others take their own defaults (``/settings``)."""
    return frozenset(name for name, value in values.items() if value not in (None, ""))


def _fit(value: str | None, default: FitChoice) -> Any:
    return value or default


def _capped(choices: OptionChoices, quotas: QuotaSettings) -> OptionChoices:
    """The operator's rules narrow what the model offers: max n, allowed sizes and qualities."""
    sizes = choices.sizes
    if quotas.allowed_sizes:
        sizes = tuple(s for s in sizes if s in quotas.allowed_sizes) or sizes
    qualities = choices.qualities
    if quotas.allowed_qualities:
        qualities = tuple(q for q in qualities if q in quotas.allowed_qualities) or qualities
    return replace(
        choices, max_n=min(choices.max_n, quotas.max_n), sizes=sizes, qualities=qualities
    )


def build_context_menu(actions: Actions) -> app_commands.ContextMenu:
    async def vary_image(interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await actions.vary_message(interaction, message)

    menu = app_commands.ContextMenu(name=text("Vary image", "ctx.vary.name"), callback=vary_image)
    return menu


def add_commands(
    tree: app_commands.CommandTree[Any],
    catalog: Catalog,
    actions: Actions,
    quotas: QuotaSettings,
    default_fit: FitChoice,
    sd: SDLimits | None = None,
) -> None:
    spec = actions.backends.default.spec_for(None)
    commands: list[app_commands.Command[Any, ..., None] | app_commands.ContextMenu]
    commands = list(build_commands(catalog, actions, spec, quotas, default_fit, sd))
    if spec.supports(Operation.VARY):
        commands.append(build_context_menu(actions))
    for command in commands:
        # Servers only, unless the operator enabled generation in direct messages.
        if not quotas.dm_enabled:
            command = app_commands.guild_only()(command)
        tree.add_command(command)
