"""What members do: slash commands, context menus, button clicks, modal submits.

Each builder produces the INTERACTION_CREATE payload Discord would send for the action (checking
what Discord's own client enforces: registered command, required options, choices, min/max,
existing custom_id, enabled button) and returns an :class:`InteractionHandle` to watch the bot's
answer.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any, cast

from .handle import InteractionHandle
from .models import (
    FakeChannel,
    FakeMember,
    FakeRole,
    FakeUser,
    StoredAttachment,
    StoredMessage,
    walk_components,
)
from .payloads import ALL_PERMISSIONS, BOT_PERMISSIONS, DEFAULT_UPLOAD_LIMIT, snowflake
from .state import InteractionRecord

if TYPE_CHECKING:
    from .server import FakeDiscord
    from .state import State


class InteractionActions:
    """Mixed into FakeDiscord: the member-side actions."""

    if TYPE_CHECKING:  # provided by FakeDiscord
        state: State
        application_id: int
        commands: list[dict[str, Any]]
        guild_commands: dict[int, list[dict[str, Any]]]
        channel: FakeChannel
        user: FakeMember

        async def dispatch(self, event: str, data: Any) -> int: ...

        def add_attachment(self, data: bytes, filename: str) -> dict[str, Any]: ...

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        user: FakeMember | FakeUser | None = None,
        channel: FakeChannel | None = None,
        locale: str | None = None,
    ) -> InteractionHandle:
        """Run ``/name [subcommand] options...`` as ``user`` in ``channel`` (default: fake.user in
        fake.channel). Option values: str/int/float/bool, FakeUser/FakeMember, FakeChannel,
        FakeRole, an attachment dict from :meth:`add_attachment`, or raw ``bytes`` (uploaded)."""
        channel = channel or self.channel
        command = self._command(name, 1, channel, user)
        path = subcommand.split() if subcommand else []
        defs = self._subcommand_options(name, command, path)
        resolved: dict[str, dict[str, Any]] = {}
        opts = _nested(path, self._options(name, defs, options or {}, resolved, channel))
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1}
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._interact(2, data, user, channel, locale=locale)

    async def autocomplete(
        self,
        name: str,
        options: dict[str, Any],
        *,
        focused: str,
        subcommand: str | None = None,
        user: FakeMember | FakeUser | None = None,
        channel: FakeChannel | None = None,
        locale: str | None = None,
    ) -> InteractionHandle:
        """Type into the option ``focused`` of ``/name [subcommand]`` (``options`` as typed so
        far, unchecked, as Discord sends them): the bot answers with choices (callback 8, in
        ``response().data["choices"]``)."""
        channel = channel or self.channel
        command = self._command(name, 1, channel, user)
        path = subcommand.split() if subcommand else []
        by_name = {d["name"]: d for d in self._subcommand_options(name, command, path)}
        if not by_name.get(focused, {}).get("autocomplete"):
            raise LookupError(f"/{name} has no autocomplete option {focused!r}")
        typed = [
            {"name": key, "type": by_name[key]["type"], "value": value}
            | ({"focused": True} if key == focused else {})
            for key, value in options.items()
        ]
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": _nested(path, typed),
        }
        return await self._interact(4, data, user, channel, locale=locale)

    async def context_menu(
        self,
        name: str,
        target: StoredMessage | FakeMember | FakeUser,
        *,
        user: FakeMember | FakeUser | None = None,
        locale: str | None = None,
    ) -> InteractionHandle:
        """Run a message (target: a message) or user (target: a member/user) context menu."""
        if isinstance(target, StoredMessage):
            channel = self.state.channels[target.channel_id]
            command = self._command(name, 3, channel, user)
            resolved = {"messages": {str(target.id): target.to_json()}}
        else:
            channel = self.channel
            command = self._command(name, 2, channel, user)
            resolved = {}
            self._resolve_user(target, resolved, channel)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": command.get("type"),
            "target_id": str(target.id),
            "resolved": resolved,
        }
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._interact(2, data, user, channel, locale=locale)

    async def click(
        self,
        message: StoredMessage | int,
        custom_id: str,
        *,
        values: list[str] | None = None,
        user: FakeMember | FakeUser | None = None,
        locale: str | None = None,
        forged_custom_id: str | None = None,
    ) -> InteractionHandle:
        """Press the button (or choose ``values`` in the select) ``custom_id`` on ``message``.

        ``forged_custom_id`` is sent in place of the component's own custom_id: what a
        modified client may try (the bot must not trust the ids a custom_id carries)."""
        msg = self.state.find_message(message)
        found = [c for c in walk_components(msg.components) if c.get("custom_id") == custom_id]
        comp = found[0] if found else None
        if comp is None:
            raise LookupError(f"message {msg.id} has no component {custom_id!r}: {msg.custom_ids}")
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {
            "custom_id": forged_custom_id or custom_id,
            "component_type": comp["type"],
        }
        if comp.get("id") is not None:
            data["id"] = comp["id"]
        if comp["type"] in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
            low, high = comp.get("min_values", 1), comp.get("max_values", 1)
            options = {o["value"] for o in comp.get("options") or []}
            if not low <= len(data["values"]) <= high or (
                comp["type"] == 3 and not set(data["values"]) <= options
            ):
                raise ValueError(f"select {custom_id!r} takes {low}..{high} of {sorted(options)}")
        channel = self.state.channels[msg.channel_id]
        return await self._interact(3, data, user, channel, message=msg, locale=locale)

    async def submit_modal(
        self,
        modal_of: InteractionHandle,
        values: dict[str, Any],
        *,
        user: FakeMember | FakeUser | None = None,
        forged_custom_id: str | None = None,
    ) -> InteractionHandle:
        """Fill in and submit the modal the bot answered ``modal_of`` with (callback type 9).

        ``forged_custom_id`` is what a modified client can send instead of the modal's own
        custom_id: Discord passes it on unchecked."""
        modal = modal_of.modal
        if modal is None:
            raise ValueError(f"{modal_of!r} was not answered with a modal")
        remaining = dict(values)
        components = [_submitted(c, remaining) for c in modal.get("components") or []]
        if remaining:
            raise LookupError(f"modal {modal['custom_id']!r} has no inputs {sorted(remaining)}")
        data = {"custom_id": forged_custom_id or modal["custom_id"], "components": components}
        rec = modal_of.record
        who = user or self._member_or_user(rec.user, rec.channel)
        msg = rec.source_message
        return await self._interact(5, data, who, rec.channel, message=msg, locale=None)

    # -- helpers ----------------------------------------------------------------------------

    def _command(
        self,
        name: str,
        kind: int,
        channel: FakeChannel,
        user: FakeMember | FakeUser | None,
    ) -> dict[str, Any]:
        """The synced command, if ``user`` may see it here (Discord hides it otherwise)."""
        scoped = self.guild_commands.get(channel.guild.id, []) if channel.guild else []
        found = [
            c for c in [*scoped, *self.commands] if (c["name"], c.get("type", 1)) == (name, kind)
        ]
        if not found:
            known = [(c["name"], c.get("type", 1)) for c in [*scoped, *self.commands]]
            raise LookupError(f"no registered command {name!r} of type {kind} (synced: {known})")
        command = found[0]
        contexts = command.get("contexts")
        if channel.guild is None:
            if command.get("dm_permission") is False or (contexts and 1 not in contexts):
                raise PermissionError(f"command {name!r} is not available in DMs")
            return command
        if contexts and 0 not in contexts:
            raise PermissionError(f"command {name!r} is not available in servers")
        who = self._member_or_user(user, channel)
        required = command.get("default_member_permissions")
        if required is not None and isinstance(who, FakeMember):
            need, have = int(required), who.permissions_in(None)
            if have & need != need or (need == 0 and have != ALL_PERMISSIONS):
                raise PermissionError(
                    f"{who.name} may not use {name!r}: it needs permissions {need}, "
                    "and Discord does not offer it to them"
                )
        return command

    def _subcommand_options(
        self, name: str, command: dict[str, Any], path: list[str]
    ) -> list[dict[str, Any]]:
        """The option definitions of the (sub)command ``path`` names."""
        defs: list[dict[str, Any]] = command.get("options") or []
        for part in path:
            sub = next((o for o in defs if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"/{name} has no subcommand {part!r}")
            defs = sub.get("options") or []
        return defs

    def _member_or_user(
        self, who: FakeMember | FakeUser | None, channel: FakeChannel
    ) -> FakeMember | FakeUser:
        who = who or self.user
        if channel.guild is None:
            return who.user if isinstance(who, FakeMember) else who
        return who if isinstance(who, FakeMember) else channel.guild.members[who.id]

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        user: FakeMember | FakeUser | None,
        channel: FakeChannel,
        *,
        message: StoredMessage | None = None,
        locale: str | None = None,
    ) -> InteractionHandle:
        who = self._member_or_user(user, channel)
        plain = who.user if isinstance(who, FakeMember) else who
        guild = channel.guild
        rec = InteractionRecord(
            id=snowflake(),
            token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96),
            type=kind,
            payload={},
            channel=channel,
            user=plain,
            attachment_size_limit=guild.upload_limit if guild else DEFAULT_UPLOAD_LIMIT,
            source_message=message,
        )
        channel_json = channel.to_json()
        payload: dict[str, Any] = {
            "id": str(rec.id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "token": rec.token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel_json,
            "locale": locale or plain.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": rec.attachment_size_limit,
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
            "context": 0 if guild else 1,
        }
        if guild is not None and isinstance(who, FakeMember):
            bot = guild.members[self.state.bot_user.id]
            channel_json["permissions"] = str(who.permissions_in(channel))
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": guild.features},
                guild_locale=guild.locale,
                member=who.to_json(channel, with_permissions=True),
                app_permissions=str(bot.permissions_in(channel)),
            )
        else:
            payload.update(user=plain.to_json(), app_permissions=str(int(BOT_PERMISSIONS)))
        if message is not None:
            payload["message"] = message.to_json()
        rec.payload = payload
        self.state.interactions[rec.id] = rec
        self.state.by_token[rec.token] = rec
        rec.dispatched_at = time.monotonic()  # before sending: the answer may beat our return
        if await self.dispatch("INTERACTION_CREATE", payload) == 0:
            raise RuntimeError("no bot is connected to the fake gateway")
        return InteractionHandle(cast("FakeDiscord", self), rec)

    def _resolve_user(
        self,
        value: FakeMember | FakeUser,
        resolved: dict[str, dict[str, Any]],
        channel: FakeChannel,
    ) -> str:
        user = value.user if isinstance(value, FakeMember) else value
        resolved.setdefault("users", {})[str(user.id)] = user.to_json()
        member = channel.guild.members.get(user.id) if channel.guild else None
        if member is not None:
            data = member.to_json(channel, with_permissions=True)
            del data["user"]
            resolved.setdefault("members", {})[str(user.id)] = data
        return str(user.id)

    def _options(
        self,
        command: str,
        defs: list[dict[str, Any]],
        given: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: FakeChannel,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in defs}
        if unknown := sorted(set(given) - set(by_name)):
            raise LookupError(f"/{command} has no options {unknown} (it has {sorted(by_name)})")
        out = []
        for d in defs:
            if d["name"] not in given:
                if d.get("required"):
                    raise ValueError(f"/{command}: option {d['name']!r} is required")
                continue
            value = self._option_value(command, d, given[d["name"]], resolved, channel)
            out.append({"name": d["name"], "type": d["type"], "value": value})
        return out

    def _option_value(
        self,
        command: str,
        d: dict[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        channel: FakeChannel,
    ) -> Any:
        kind, where = d["type"], f"/{command} {d['name']}"
        if kind == 11:
            if isinstance(value, bytes):
                value = self.add_attachment(value, "upload.bin")
            att = value.to_json() if isinstance(value, StoredAttachment) else value
            resolved.setdefault("attachments", {})[str(att["id"])] = att
            return str(att["id"])
        if kind in (6, 9) and isinstance(value, FakeMember | FakeUser):
            return self._resolve_user(value, resolved, channel)
        if kind in (8, 9) and isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_json()
            return str(value.id)
        if kind == 7 and isinstance(value, FakeChannel):
            data = {**value.to_json(), "permissions": str(0)}
            resolved.setdefault("channels", {})[str(value.id)] = data
            return str(value.id)
        types: dict[int, type | tuple[type, ...]] = {3: str, 4: int, 5: bool, 10: (int, float)}
        expected = types.get(kind)
        is_bool_as_number = isinstance(value, bool) and kind in (4, 10)
        if expected is None or not isinstance(value, expected) or is_bool_as_number:
            raise TypeError(f"{where}: {value!r} does not fit option type {kind}")
        choices = [c["value"] for c in d.get("choices") or []]
        if choices and value not in choices:
            raise ValueError(f"{where}: {value!r} is not one of the choices {choices}")
        size = len(cast(str, value)) if kind == 3 else value
        low, high = ("min_length", "max_length") if kind == 3 else ("min_value", "max_value")
        if (d.get(low) is not None and size < d[low]) or (
            d.get(high) is not None and size > d[high]
        ):
            raise ValueError(f"{where}: {value!r} is outside {d.get(low)}..{d.get(high)}")
        return value


def _nested(path: list[str], options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``options`` inside the subcommand (and its group) ``path`` names, as Discord sends them."""
    for depth in range(len(path) - 1, -1, -1):
        kind = 1 if depth == len(path) - 1 else 2  # subcommand, then its group
        options = [{"name": path[depth], "type": kind, "options": options}]
    return options


def _submitted(comp: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The modal-submit shape of one modal component, consuming the values it takes."""
    kind = comp.get("type")
    out: dict[str, Any] = {"type": kind}
    if comp.get("id") is not None:
        out["id"] = comp["id"]
    if kind == 1:
        out["components"] = [_submitted(c, values) for c in comp.get("components") or []]
    elif kind == 18:
        out["component"] = _submitted(comp["component"], values)
    elif kind == 10:
        out["content"] = comp.get("content", "")
    elif "custom_id" in comp:
        custom_id = comp["custom_id"]
        out["custom_id"] = custom_id
        if kind == 4:
            value = str(values.pop(custom_id, comp.get("value") or ""))
            if comp.get("required", True) and not value:
                raise ValueError(f"modal input {custom_id!r} is required")
            low, high = comp.get("min_length") or 0, comp.get("max_length") or 4000
            if value and not low <= len(value) <= high:
                raise ValueError(f"modal input {custom_id!r}: length must be {low}..{high}")
            out["value"] = value
        elif kind == 23:
            out["value"] = bool(values.pop(custom_id, False))
        elif kind == 21:
            out["value"] = values.pop(custom_id, None)
        else:
            out["values"] = list(values.pop(custom_id, []))
    return out
