"""Buttons on results that keep working after a restart.

Each button is a ``DynamicItem``: its custom_id carries the job id (and image index), and the
handler reads everything else from the database, so no in-memory view has to survive. The
handlers live in :mod:`bot.discord.generate._buttons`; this module only renders and routes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.discord.i18n import Catalog
from bot.studio import PAN_ACTIONS, StudioAction, available_actions

if TYPE_CHECKING:
    from bot.discord.i18n import LocaleLike

PREFIX = "ib"
BUTTONS_PER_ROW = 5


class ResultActions(Protocol):
    """What the buttons ask for; implemented by bot.discord.generate._buttons.ResultButtons."""

    async def vary_result(
        self, interaction: discord.Interaction[Any], job_id: int, index: int
    ) -> None: ...

    async def redo(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def redo_same_seed(
        self, interaction: discord.Interaction[Any], job_id: int, seed: int
    ) -> None: ...

    async def open_remix(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def delete_result(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def retry(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def remix(
        self, interaction: discord.Interaction[Any], job_id: int, prompt: str
    ) -> None: ...

    async def studio(
        self,
        interaction: discord.Interaction[Any],
        job_id: int,
        action: StudioAction,
        index: int,
    ) -> None: ...

    async def show_params(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def post_kept(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...


def actions_of(interaction: discord.Interaction[Any]) -> ResultActions:
    """The handlers, from the client: a DynamicItem is made by discord.py from a custom_id,
    so nothing can be handed to it (the client's ``actions`` is set where it is built)."""
    actions: ResultActions = interaction.client.actions
    return actions


class VaryButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.compile(rf"{PREFIX}:vary:(?P<job>\d+):(?P<index>\d+)"),
):
    def __init__(self, job_id: int, index: int, label: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or f"V{index + 1}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:vary:{job_id}:{index}",
            )
        )
        self.job_id, self.index = job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VaryButton:
        return cls(int(match["job"]), int(match["index"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).vary_result(interaction, self.job_id, self.index)


class _JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"(?!)"):
    """A button that acts on a whole job; subclasses set ``action`` and the template."""

    action = ""
    style = discord.ButtonStyle.secondary

    def __init__(self, job_id: int, label: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or self.action,
                style=self.style,
                custom_id=f"{PREFIX}:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> _JobButton:
        return cls(int(match["job"]))


class RedoButton(_JobButton, template=re.compile(rf"{PREFIX}:redo:(?P<job>\d+)")):
    action = "redo"
    style = discord.ButtonStyle.primary

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).redo(interaction, self.job_id)


class SameSeedButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.compile(rf"{PREFIX}:reseed:(?P<job>\d+):(?P<seed>\d+)"),
):
    """Redo with the seed the result's first image was made with (its batch follows from it).

    The seed travels in the custom_id: delivered results keep no images, and a forged seed
    only asks for a seed the member could type into /imagine."""

    def __init__(self, job_id: int, seed: int, label: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or "same seed",
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:reseed:{job_id}:{seed}",
            )
        )
        self.job_id, self.seed = job_id, seed

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> SameSeedButton:
        return cls(int(match["job"]), int(match["seed"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).redo_same_seed(interaction, self.job_id, self.seed)


class RemixButton(_JobButton, template=re.compile(rf"{PREFIX}:remix:(?P<job>\d+)")):
    action = "remix"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).open_remix(interaction, self.job_id)


class DeleteButton(_JobButton, template=re.compile(rf"{PREFIX}:delete:(?P<job>\d+)")):
    action = "delete"
    style = discord.ButtonStyle.danger

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).delete_result(interaction, self.job_id)


class CancelButton(_JobButton, template=re.compile(rf"{PREFIX}:cancel:(?P<job>\d+)")):
    """On the private status message of a waiting job."""

    action = "cancel"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).cancel_job(interaction, self.job_id)


class RetryButton(_JobButton, template=re.compile(rf"{PREFIX}:retry:(?P<job>\d+)")):
    """On the notice of a job the bot was running when it stopped."""

    action = "retry"
    style = discord.ButtonStyle.primary

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).retry(interaction, self.job_id)


class PostButton(_JobButton, template=re.compile(rf"{PREFIX}:post:(?P<job>\d+)")):
    """On the notice of a result whose posting was interrupted (bot.jobs.orphans)."""

    action = "post"
    style = discord.ButtonStyle.primary

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).post_kept(interaction, self.job_id)


class StudioButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.compile(rf"{PREFIX}:act:(?P<action>[a-z0-9_]+):(?P<job>\d+):(?P<index>\d+)"),
):
    """A creative action (bot.studio) on image ``index`` of a result: U1…Un, Vary (Subtle),
    Zoom Out, pan, Make Square. An unknown action in a forged custom_id matches nothing."""

    def __init__(
        self,
        job_id: int,
        action: StudioAction,
        index: int,
        label: str | None = None,
        emoji: str | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:act:{action.value}:{job_id}:{index}",
            )
        )
        self.job_id, self.action, self.index = job_id, action, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> StudioButton:
        action = StudioAction(match["action"])  # ValueError: discord.py ignores the click
        return cls(int(match["job"]), action, int(match["index"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).studio(interaction, self.job_id, self.action, self.index)


class ParamsButton(_JobButton, template=re.compile(rf"{PREFIX}:params:(?P<job>\d+)")):
    """ℹ️: everything needed to make the result again, privately."""

    action = "params"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await actions_of(interaction).show_params(interaction, self.job_id)


#: The Remix modal: its custom_id carries the job, its one text input is the new prompt.
REMIX_MODAL = re.compile(rf"{PREFIX}:remix-modal:(?P<job>\d+)")
REMIX_PROMPT = "prompt"


def remix_modal_id(job_id: int) -> str:
    return f"{PREFIX}:remix-modal:{job_id}"


async def route_modal(interaction: discord.Interaction[Any]) -> None:
    """The ``on_interaction`` listener for Remix modal submissions.

    Modals are not kept in memory (discord.py forgets them after their timeout and on a restart,
    leaving the member with "This interaction failed"); the custom_id says everything needed.
    """
    if interaction.type is not discord.InteractionType.modal_submit:
        return
    data: Any = interaction.data or {}
    match = REMIX_MODAL.fullmatch(str(data.get("custom_id", "")))
    if match is None:
        return
    prompt = submitted_value(data.get("components") or [], REMIX_PROMPT) or ""
    await actions_of(interaction).remix(interaction, int(match["job"]), prompt)


def submitted_value(components: list[Any], custom_id: str) -> str | None:
    """The value of the text input ``custom_id`` in a modal submission (rows or labels)."""
    for component in components:
        if component.get("custom_id") == custom_id and "value" in component:
            return str(component["value"])
        nested = list(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            nested.append(component["component"])
        found = submitted_value(nested, custom_id)
        if found is not None:
            return found
    return None


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    VaryButton,
    RedoButton,
    RemixButton,
    DeleteButton,
    CancelButton,
    RetryButton,
    SameSeedButton,
    StudioButton,
    ParamsButton,
    PostButton,
)

#: The buttons of a single-image result, in their rows: label key (or None) and emoji.
_SINGLE_ROWS: tuple[tuple[tuple[StudioAction, str | None, str | None], ...], ...] = (
    (
        (StudioAction.VARY_SUBTLE, "button.vary_subtle", None),
        (StudioAction.VARY_STRONG, "button.vary_strong", None),
        (StudioAction.ZOOM_2, "button.zoom_2", None),
        (StudioAction.ZOOM_1_5, "button.zoom_1_5", None),
        (StudioAction.SQUARE, "button.square", None),
    ),
    tuple(
        (action, None, emoji)
        for action, emoji in zip(PAN_ACTIONS, ("⬅️", "➡️", "⬆️", "⬇️"), strict=True)
    ),
)


def result_view(
    job_id: int,
    indexes: list[int],
    catalog: Catalog,
    locale: LocaleLike,
    *,
    with_actions: bool,
    vary: bool = True,
    remix: bool = True,
    same_seed: int | None = None,
    single: bool = False,
    square: bool = True,
    params: bool = False,
) -> discord.ui.View:
    """The buttons under a result (or one message of a split result).

    Several images: Vary and Upscale for each (V1…Vn, U1…Un). One image (``single``: an
    upscale, or n = 1): Vary (Subtle)/(Strong), Zoom Out, Make Square (when not ``square``) and
    the four pans. Then, on the first message, Redo, Remix, Params and Delete. Only the studio
    actions that exist (:func:`bot.studio.available_actions`) get buttons; a single image
    without the subtle/strong variations keeps its V1. ``remix`` is False for variations: they
    have no prompt to change. ``same_seed``: the seed of the first image, where the backend has
    seeds: a "Redo (same seed)" button after Redo."""
    view = discord.ui.View(timeout=None)
    offered = available_actions()
    row = 0
    if single and vary and len(indexes) == 1:
        row = _add_single_rows(view, job_id, indexes[0], catalog, locale, offered, square)
    elif vary:
        row = _add_per_image(
            view,
            indexes,
            lambda i, label: VaryButton(job_id, i, label),
            catalog.text,
            "button.vary",
            locale,
            row,
        )
        if StudioAction.UPSCALE in offered:
            row = _add_per_image(
                view,
                indexes,
                lambda i, label: StudioButton(job_id, StudioAction.UPSCALE, i, label),
                catalog.text,
                "button.upscale",
                locale,
                row,
            )
    if with_actions:
        actions: list[tuple[type[_JobButton], str]] = [
            (RedoButton, "button.redo"),
            (RemixButton, "button.remix"),
            (ParamsButton, "button.params"),
            (DeleteButton, "button.delete"),
        ]
        for kind, key in actions:
            if (kind is RemixButton and not remix) or (kind is ParamsButton and not params):
                continue
            action = kind(job_id, catalog.text(key, locale))
            action.item.row = row
            view.add_item(action)
            if kind is RedoButton and same_seed is not None:
                again = SameSeedButton(job_id, same_seed, catalog.text("button.same_seed", locale))
                again.item.row = row
                view.add_item(again)
    return view


def _add_per_image(
    view: discord.ui.View,
    indexes: list[int],
    make: Any,
    text: Any,
    key: str,
    locale: LocaleLike,
    row: int,
) -> int:
    """One button per image, five to a row, from ``row``; returns the next free row."""
    for position, index in enumerate(indexes):
        button = make(index, text(key, locale, index=index + 1))
        button.item.row = row + position // BUTTONS_PER_ROW
        view.add_item(button)
    return row + (len(indexes) + BUTTONS_PER_ROW - 1) // BUTTONS_PER_ROW


def _add_single_rows(
    view: discord.ui.View,
    job_id: int,
    index: int,
    catalog: Catalog,
    locale: LocaleLike,
    offered: frozenset[StudioAction],
    square: bool,
) -> int:
    """The studio rows of a single-image result; returns the next free row."""
    row = 0
    if not {StudioAction.VARY_SUBTLE, StudioAction.VARY_STRONG} & offered:
        button = VaryButton(job_id, index, catalog.text("button.vary", locale, index=index + 1))
        button.item.row = row
        view.add_item(button)
    for line in _SINGLE_ROWS:
        shown = [
            (action, key, emoji)
            for action, key, emoji in line
            if action in offered and not (action is StudioAction.SQUARE and square)
        ]
        for action, key, emoji in shown:
            label = catalog.text(key, locale) if key else None
            item = StudioButton(job_id, action, index, label, emoji)
            item.item.row = row
            view.add_item(item)
        if shown or (row == 0 and view.children):
            row += 1
    return row
