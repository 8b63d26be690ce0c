"""Interaction callbacks and the interaction webhook (follow-ups, @original).

Rules implemented (as Discord behaves):
- a callback must arrive within ``response_deadline`` (3 s) of the dispatch, else 404 10062;
  a second callback is 400 40060; an unknown or expired interaction is 404 10062;
- the webhook answers 404 10015 for a wrong application id or before the interaction was
  acknowledged, and 401 50027 for an unknown token or one older than 15 minutes;
- after a deferred reply (type 5) the first follow-up fills in the "thinking..." message (same id,
  ephemeral as the defer was); later follow-ups are new messages;
- ``?with_response=1`` answers 200 ``{"interaction": ..., "resource": ...}``, otherwise 204.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .checks import Body, Rejection
from .models import EPHEMERAL, LOADING, FakeUser, StoredMessage
from .rest import API, BODY, json_response, no_content
from .state import InteractionRecord

if TYPE_CHECKING:
    from .server import FakeDiscord

TOKEN_LIFETIME = 15 * 60
CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"
WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"
# Which callback types each interaction type accepts (2 command, 3 component, 4 autocomplete,
# 5 modal submit); 7 on a modal submit needs the message the modal came from (discord.py's plain
# defer() of a modal submit is a 6, which Discord accepts).
ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


class Webhooks:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.state = fake.state

    def install(self, app: web.Application) -> None:
        r = app.router
        r.add_post(API + CALLBACK, self.callback)
        r.add_post(API + WEBHOOK, self.followup)
        r.add_get(API + WEBHOOK + "/messages/{message_id}", self.get_message)
        r.add_patch(API + WEBHOOK + "/messages/{message_id}", self.edit_message)
        r.add_delete(API + WEBHOOK + "/messages/{message_id}", self.delete_message)

    # -- callback ---------------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        rec = self.state.interactions.get(_int(request.match_info["interaction_id"]))
        if rec is None or rec.token != request.match_info["interaction_token"] or rec.expired:
            raise Rejection(404, 10062, "Unknown interaction")
        deadline = self.fake.response_deadline
        sent = rec.dispatched_at
        if deadline is not None and sent is not None and time.monotonic() - sent > deadline:
            rec.late_callback = True
            raise Rejection(404, 10062, "Unknown interaction")
        if rec.response_type is not None:
            raise Rejection(400, 40060, "Interaction has already been acknowledged.")
        body = request[BODY]
        payload = body.json if isinstance(body.json, dict) else {}
        self.fake.checker.check(
            "POST",
            CALLBACK,
            body,
            kind="callback",
            upload_limit=rec.attachment_size_limit,
            creates_message=payload.get("type") == 4,
        )
        kind = payload.get("type")
        allowed = set(ALLOWED_CALLBACKS.get(rec.type, set()))
        if rec.source_message is None:  # a modal opened by a command: nothing to update
            allowed.discard(7)
        if kind not in allowed:
            where = f"POST {CALLBACK}: type"
            self.fake.spec_violations.append(f"{where}: {kind} is invalid for a type {rec.type}")
            errors = {"type": {"_errors": [{"code": "INTERACTION_CALLBACK_TYPE_INVALID"}]}}
            raise Rejection(400, 50035, "Invalid Form Body", errors)
        data = payload.get("data") or {}
        rec.response_type, rec.response_data = kind, copy.deepcopy(data)
        rec.responded_at = time.monotonic()
        await self._respond(rec, kind, data, body)
        self.state.pulse.fire()
        if self.fake.callback_gate is not None:
            await self.fake.callback_gate.wait()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        return json_response(self._callback_response(rec, kind))

    async def _respond(
        self, rec: InteractionRecord, kind: int, data: dict[str, Any], body: Body
    ) -> None:
        bot = self.state.bot_user
        if kind in (4, 5):
            msg_type = 0
            if rec.type == 2:
                msg_type = 20 if rec.payload["data"].get("type", 1) == 1 else 23
            payload = data if kind == 4 else {"flags": int(data.get("flags") or 0) & EPHEMERAL}
            files = body.files if kind == 4 else []
            rec.original = self.state.new_message(
                rec.channel,
                bot,
                payload,
                files,
                source="response",
                msg_type=msg_type,
                extra_flags=LOADING if kind == 5 else 0,
                interaction=rec,
            )
            await self.fake.message_event("MESSAGE_CREATE", rec.original)
        elif kind in (6, 7) and rec.source_message is not None:
            rec.original = rec.source_message
            if kind == 7:
                self.state.apply(rec.source_message, data, body.files)
                await self.fake.message_event("MESSAGE_UPDATE", rec.source_message)

    def _callback_response(self, rec: InteractionRecord, kind: int) -> dict[str, Any]:
        interaction: dict[str, Any] = {"id": str(rec.id), "type": rec.type}
        resource: dict[str, Any] = {"type": kind}
        msg = rec.original
        if msg is not None and kind in (4, 5, 7):
            interaction.update(
                response_message_id=str(msg.id),
                response_message_loading=kind == 5,
                response_message_ephemeral=msg.ephemeral,
            )
            resource["message"] = msg.to_json()
        return {"interaction": interaction, "resource": resource}

    # -- webhook ----------------------------------------------------------------------------

    def interaction_for(self, request: web.Request) -> InteractionRecord:
        if _int(request.match_info["webhook_id"]) != self.fake.application_id:
            raise Rejection(404, 10015, "Unknown Webhook")
        rec = self.state.by_token.get(request.match_info["webhook_token"])
        if rec is None or rec.expired or time.time() - rec.created_wall > TOKEN_LIFETIME:
            raise Rejection(401, 50027, "Invalid Webhook Token")
        return rec

    def message_for(self, request: web.Request, rec: InteractionRecord) -> StoredMessage:
        ref = request.match_info["message_id"]
        msg = rec.original if ref == "@original" else None
        if ref != "@original":
            msg = next((m for m in rec.messages if str(m.id) == ref), None)
        if msg is None or msg.deleted:
            raise Rejection(404, 10008, "Unknown Message")
        return msg

    async def followup(self, request: web.Request) -> web.Response:
        if _int(request.match_info["webhook_id"]) in self.fake.incoming_webhooks:
            return await self.execute(request)
        rec = self.interaction_for(request)
        if rec.response_type is None:
            raise Rejection(404, 10015, "Unknown Webhook")
        body = request[BODY]
        self.fake.checker.check(
            "POST",
            WEBHOOK,
            body,
            kind="message",
            upload_limit=rec.attachment_size_limit,
            creates_message=True,
        )
        gate = self.fake.followup_gate
        if gate is not None and body.files:
            await gate.wait()
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the sender died waiting: nothing posted
        payload = body.json if isinstance(body.json, dict) else {}
        original = rec.original
        if rec.response_type == 5 and original is not None and original.loading:
            edit = {k: v for k, v in payload.items() if k != "flags"}  # the defer decided those
            self.state.apply(original, edit, body.files)
            original.edited_timestamp = None  # shown as a new message, not as an edit
            msg = original
            await self.fake.message_event("MESSAGE_UPDATE", msg)
        else:
            bot = self.state.bot_user
            msg = self.state.new_message(
                rec.channel, bot, payload, body.files, source="followup", interaction=rec
            )
            await self.fake.message_event("MESSAGE_CREATE", msg)
        rec.followups.append(msg)
        self.state.pulse.fire()
        if request.query.get("wait") not in ("1", "true", "True"):
            return no_content()
        return json_response(msg.to_json())

    async def execute(self, request: web.Request) -> web.Response:
        """An incoming webhook executed (Execute Webhook): 401 50027 for a wrong token, a
        message in its channel, 200 with it on ``?wait=true`` else 204."""
        token, channel = self.fake.incoming_webhooks[_int(request.match_info["webhook_id"])]
        if request.match_info["webhook_token"] != token:
            raise Rejection(401, 50027, "Invalid Webhook Token")
        body = request[BODY]
        self.fake.checker.check("POST", WEBHOOK, body, kind="message", creates_message=True)
        payload = body.json if isinstance(body.json, dict) else {}
        if not (payload.get("content") or payload.get("embeds") or body.files):
            raise Rejection(400, 50006, "Cannot send an empty message")
        author = FakeUser(_int(request.match_info["webhook_id"]), "Spend alerts", bot=True)
        msg = self.state.new_message(channel, author, payload, body.files, source="webhook")
        await self.fake.message_event("MESSAGE_CREATE", msg)
        if request.query.get("wait") not in ("1", "true", "True"):
            return no_content()
        return json_response(msg.to_json())

    async def get_message(self, request: web.Request) -> web.Response:
        rec = self.interaction_for(request)
        return json_response(self.message_for(request, rec).to_json())

    async def edit_message(self, request: web.Request) -> web.Response:
        rec = self.interaction_for(request)
        msg = self.message_for(request, rec)
        body = request[BODY]
        ref = request.match_info["message_id"]
        spec = WEBHOOK + ("/messages/@original" if ref == "@original" else "/messages/{message_id}")
        self.fake.checker.check(
            "PATCH", spec, body, kind="message", upload_limit=rec.attachment_size_limit
        )
        self.state.apply(msg, body.json or {}, body.files)
        await self.fake.message_event("MESSAGE_UPDATE", msg)
        return json_response(msg.to_json())

    async def delete_message(self, request: web.Request) -> web.Response:
        rec = self.interaction_for(request)
        msg = self.message_for(request, rec)
        self.state.delete(msg)
        await self.fake.message_event("MESSAGE_DELETE", msg)
        return no_content()


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Rejection(404, 0, "404: Not Found") from None
