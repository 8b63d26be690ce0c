"""REST API v10 and CDN of the fake: startup calls, command sync, channels, DMs, reactions.

Interaction callbacks and webhook follow-ups live in :mod:`.webhooks`. Every response is JSON with
``Content-Type: application/json`` exactly (discord.py parses JSON only then) and carries
``X-RateLimit-*`` headers. A middleware records each request, checks the bot token, and applies
failures injected with ``FakeDiscord.fail_next``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import ratelimits
from .checks import Body, Rejection, Upload, read_body
from .models import FakeChannel, StoredMessage
from .payloads import DEFAULT_UPLOAD_LIMIT, P, emoji_key, partial_emoji, snowflake
from .ratelimits import bucket_of

if TYPE_CHECKING:
    from .server import FakeDiscord

API = "/api/v10"
NO_AUTH = re.compile(r"^/(interactions/\d+/[^/]+/callback|webhooks/\d+/[^/]+)")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = web.RequestKey("body", Body)


@dataclass
class RequestRecord:
    """One request the bot made: ``json`` is the JSON body or the multipart ``payload_json``."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: list[Upload] = field(default_factory=list, repr=False)
    status: int = 0
    #: ``time.monotonic()`` when it arrived (its body not read yet).
    at: float = field(default_factory=time.monotonic)


@dataclass
class FailureRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: int
    message: str
    times: int
    retry_after: float = 0.05


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # body= (not text=): aiohttp would append "; charset=utf-8", and discord.py then sees text.
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)


def rate_limit_headers(method: str, route: str, remaining: int = 4) -> dict[str, str]:
    bucket = hashlib.md5(f"{method} {route}".encode()).hexdigest()[:16]
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket,
    }


class Rest:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.state = fake.state

    def install(self, app: web.Application) -> None:
        r = app.router
        r.add_get(API + "/users/@me", self.get_me)
        r.add_get(API + "/users/{user_id}", self.get_user)
        r.add_post(API + "/users/@me/channels", self.create_dm)
        r.add_get(API + "/oauth2/applications/@me", self.get_app)
        r.add_get(API + "/gateway", self.get_gateway)
        r.add_get(API + "/gateway/bot", self.get_gateway)
        for prefix in ("/applications/{app_id}", "/applications/{app_id}/guilds/{guild_id}"):
            r.add_get(API + prefix + "/commands", self.get_commands)
            r.add_put(API + prefix + "/commands", self.put_commands)
        r.add_get(API + "/guilds/{guild_id}/members/{user_id}", self.get_member)
        r.add_get(API + "/channels/{channel_id}", self.get_channel)
        r.add_get(API + "/channels/{channel_id}/messages", self.list_messages)
        r.add_post(API + "/channels/{channel_id}/messages", self.post_message)
        msg = API + "/channels/{channel_id}/messages/{message_id}"
        r.add_get(msg, self.get_message)
        r.add_patch(msg, self.edit_message)
        r.add_delete(msg, self.delete_message)
        r.add_put(msg + "/reactions/{emoji}/@me", self.add_reaction)
        r.add_delete(msg + "/reactions/{emoji}/@me", self.remove_reaction)
        r.add_get("/{host:cdn|media}/{folder:.+}/{att_id:\\d+}/{filename}", self.cdn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API):
            return await handler(request)
        path = request.path[len(API) :]
        record = RequestRecord(request.method, path, dict(request.query))
        self.fake.requests.append(record)
        route = request.match_info.route.resource
        template = route.canonical[len(API) :] if route is not None else path
        try:
            body = await read_body(request)
            record.json, record.files = body.json, body.files
            request[BODY] = body
            self._check_auth(request, path)
            injected = self._injected(request.method, path)
            limited, limit_headers = (
                (None, None) if injected is not None else self._limited(request, path, template)
            )
            if injected is not None:
                response: web.StreamResponse = injected
            elif limited is not None:
                response = limited
            elif route is None:
                self.fake.unhandled_requests.append(record)
                response = json_response({"message": "404: Not Found", "code": 0}, 404)
            else:
                response = await handler(request)
        except Rejection as exc:
            response = json_response(exc.body(), exc.status)
            limit_headers = None
        record.status = response.status
        if limit_headers is not None and "X-RateLimit-Bucket" not in response.headers:
            response.headers.update(limit_headers)
        if "X-RateLimit-Bucket" not in response.headers:
            response.headers.update(rate_limit_headers(request.method, template))
        self.state.pulse.fire()
        return response

    def _check_auth(self, request: web.Request, path: str) -> None:
        if NO_AUTH.match(path):
            return
        if request.headers.get("Authorization") != f"Bot {self.fake.token}":
            raise Rejection(401, 0, "401: Unauthorized")

    def _limited(
        self, request: web.Request, path: str, template: str
    ) -> tuple[web.Response | None, dict[str, str] | None]:
        """A 429 when the route's bucket is spent (see :mod:`.ratelimits`); else the headers
        telling where the bucket stands. (None, None) on a route without a limit."""
        limit = next((r for r in self.fake.route_limits if r.matches(request.method, path)), None)
        if limit is None:
            return None, None
        bucket = bucket_of(request.method, template, dict(request.match_info))
        allowed, remaining, reset_after = limit.take(bucket)
        if allowed:
            return None, ratelimits.limit_headers(limit, bucket, remaining, reset_after)
        body, headers = ratelimits.rate_limited(limit, bucket, reset_after)
        return json_response(body, 429, headers), None

    def _injected(self, method: str, path: str) -> web.Response | None:
        for rule in self.fake.failure_rules:
            if rule.method in (method, "*") and rule.pattern.search(path):
                rule.times -= 1
                if rule.times <= 0:
                    self.fake.failure_rules.remove(rule)
                body: dict[str, Any] = {"message": rule.message, "code": rule.code}
                headers: dict[str, str] = {}
                if rule.status == 429:
                    body.update(retry_after=rule.retry_after, **{"global": False})
                    headers = {"Via": "1.1 google", "Retry-After": str(rule.retry_after)}
                    headers.update(rate_limit_headers(method, path, remaining=0))
                    headers["X-RateLimit-Reset-After"] = f"{rule.retry_after:.3f}"
                return json_response(body, rule.status, headers)
        return None

    # -- identity ---------------------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        me = self.state.bot_user.to_json()
        return json_response({**me, "verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.state.users.get(_int(request.match_info["user_id"]))
        if user is None:
            raise Rejection(404, 10013, "Unknown User")
        return json_response(user.to_json())

    async def get_app(self, request: web.Request) -> web.Response:
        fake = self.fake
        return json_response(
            {
                "id": str(fake.application_id),
                "name": fake.state.bot_user.name,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": fake.bot_public,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": fake.application_flags,
                "owner": fake.owner.to_json(),
                "team": None,
                "bot": fake.state.bot_user.to_json(),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(fake.state.guilds),
                "integration_types_config": {"0": {}},
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {"url": self.fake.gateway_url}
        if request.path.endswith("/bot"):
            fake = self.fake
            limit = {
                "total": fake.session_start_total,
                "remaining": max(fake.session_start_total - fake.gateway.identify_count, 0),
                "reset_after": 86_400_000,  # milliseconds until the daily limit resets
                "max_concurrency": fake.max_concurrency,
            }
            data.update(shards=fake.shard_count, session_start_limit=limit)
        return json_response(data)

    # -- application commands ---------------------------------------------------------------

    def _app(self, request: web.Request) -> None:
        if _int(request.match_info["app_id"]) != self.fake.application_id:
            raise Rejection(403, 20012, "You are not authorized to perform this action")

    def _command_list(self, request: web.Request) -> tuple[list[dict[str, Any]], int | None]:
        self._app(request)
        if "guild_id" not in request.match_info:
            return self.fake.commands, None
        guild_id = _int(request.match_info["guild_id"])
        if guild_id not in self.state.guilds:
            raise Rejection(403, 50001, "Missing Access")
        return self.fake.guild_commands.setdefault(guild_id, []), guild_id

    async def get_commands(self, request: web.Request) -> web.Response:
        commands, _ = self._command_list(request)
        return json_response(commands)

    async def put_commands(self, request: web.Request) -> web.Response:
        commands, guild_id = self._command_list(request)
        body = request[BODY]
        spec = "/applications/{application_id}" + ("/guilds/{guild_id}" if guild_id else "")
        self.fake.checker.check("PUT", spec + "/commands", body)
        old = {(c["name"], c.get("type", 1)): c for c in commands}
        new = []
        for cmd in body.json or []:
            kind = cmd.get("type", 1)
            previous = old.get((cmd["name"], kind))
            stored = {
                "type": kind,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
                "id": previous["id"] if previous else str(snowflake()),
                "application_id": str(self.fake.application_id),
                "version": str(snowflake()),
            }
            if stored["default_member_permissions"] is not None:  # Discord answers a string
                stored["default_member_permissions"] = str(stored["default_member_permissions"])
            if guild_id is not None:
                stored["guild_id"] = str(guild_id)
            new.append(stored)
        commands[:] = new
        return json_response(new)

    # -- guilds, channels, DMs --------------------------------------------------------------

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self.state.guilds.get(_int(request.match_info["guild_id"]))
        if guild is None:
            raise Rejection(404, 10004, "Unknown Guild")
        member = guild.members.get(_int(request.match_info["user_id"]))
        if member is None:
            raise Rejection(404, 10007, "Unknown Member")
        return json_response(member.to_json())

    def channel(self, request: web.Request) -> FakeChannel:
        channel = self.state.channels.get(_int(request.match_info["channel_id"]))
        if channel is None:
            raise Rejection(404, 10003, "Unknown Channel")
        return channel

    def require(self, channel: FakeChannel, *needed: int) -> None:
        if channel.guild is None:
            return
        bot = channel.guild.members[self.state.bot_user.id]
        perms = channel.guild.permissions_for(bot, channel)
        if not perms & P.VIEW_CHANNEL:
            raise Rejection(403, 50001, "Missing Access")
        if any(not perms & p for p in needed):
            raise Rejection(403, 50013, "Missing Permissions")

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel)
        return json_response(channel.to_json())

    async def create_dm(self, request: web.Request) -> web.Response:
        body = request[BODY]
        self.fake.checker.check("POST", "/users/@me/channels", body)
        user = self.state.users.get(_int(str((body.json or {}).get("recipient_id"))))
        if user is None:
            raise Rejection(400, 50035, "Invalid Form Body", {"recipient_id": "Unknown User"})
        return json_response(self.fake.dm_channel(user).to_json())

    # -- messages ---------------------------------------------------------------------------

    def message(self, request: web.Request, channel: FakeChannel) -> StoredMessage:
        msg = self.state.live_message(_int(request.match_info["message_id"]))
        if msg is None or msg.channel_id != channel.id or msg.ephemeral:
            raise Rejection(404, 10008, "Unknown Message")
        return msg

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, P.READ_MESSAGE_HISTORY)
        q = request.query
        limit = max(1, min(100, int(q.get("limit", "50"))))
        found = [
            m
            for m in self.state.messages.values()
            if m.channel_id == channel.id and not m.deleted and not m.ephemeral
        ]
        if "before" in q:
            found = [m for m in found if m.id < int(q["before"])]
        if "after" in q:
            found = [m for m in found if m.id > int(q["after"])][:limit]
        if "around" in q:
            found.sort(key=lambda m: abs(m.id - int(q["around"])))
            found = sorted(found[:limit], key=lambda m: m.id)
        newest_first = sorted(found, key=lambda m: m.id, reverse=True)[:limit]
        return json_response([m.to_json() for m in newest_first])

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, P.READ_MESSAGE_HISTORY)
        return json_response(self.message(request, channel).to_json())

    async def post_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        body = request[BODY]
        payload = body.json if isinstance(body.json, dict) else {}
        needed = [P.SEND_MESSAGES]
        if body.files:
            needed.append(P.ATTACH_FILES)
        if payload.get("embeds"):
            needed.append(P.EMBED_LINKS)
        self.require(channel, *needed)
        if channel.recipient is not None and not channel.recipient.accepts_dms:
            raise Rejection(403, 50007, "Cannot send messages to this user")
        limit = channel.guild.upload_limit if channel.guild else DEFAULT_UPLOAD_LIMIT
        self.fake.checker.check(
            "POST",
            "/channels/{channel_id}/messages",
            body,
            kind="message",
            upload_limit=limit,
            creates_message=True,
        )
        ref = payload.get("message_reference")
        if ref and self.state.live_message(_int(str(ref.get("message_id")))) is None:
            errors = {"message_reference": {"_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN"}]}}
            raise Rejection(400, 50035, "Invalid Form Body", errors)
        payload = {**payload, "flags": int(payload.get("flags") or 0) & ~(1 << 6)}
        msg = self.state.new_message(
            channel, self.state.bot_user, payload, body.files, source="channel"
        )
        await self.fake.message_event("MESSAGE_CREATE", msg)
        return json_response(msg.to_json())

    async def edit_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel)
        msg = self.message(request, channel)
        if msg.author["id"] != str(self.state.bot_user.id):
            raise Rejection(403, 50005, "Cannot edit a message authored by another user")
        body = request[BODY]
        limit = channel.guild.upload_limit if channel.guild else DEFAULT_UPLOAD_LIMIT
        spec = "/channels/{channel_id}/messages/{message_id}"
        self.fake.checker.check("PATCH", spec, body, kind="message", upload_limit=limit)
        self.state.apply(msg, body.json or {}, body.files)
        await self.fake.message_event("MESSAGE_UPDATE", msg)
        return json_response(msg.to_json())

    async def delete_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        msg = self.message(request, channel)
        if msg.author["id"] != str(self.state.bot_user.id):
            self.require(channel, P.MANAGE_MESSAGES)
        self.state.delete(msg)
        await self.fake.message_event("MESSAGE_DELETE", msg)
        return no_content()

    # -- reactions --------------------------------------------------------------------------

    async def add_reaction(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        msg = self.message(request, channel)
        emoji = partial_emoji(request.match_info["emoji"])
        if emoji["id"] is None and str(emoji["name"]).isascii():
            raise Rejection(400, 10014, "Unknown Emoji")
        existing = emoji_key(emoji) in msg.reactions
        self.require(channel, P.READ_MESSAGE_HISTORY, *(() if existing else (P.ADD_REACTIONS,)))
        await self.fake.reaction_event(msg, emoji, self.state.bot_user, add=True)
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        msg = self.message(request, channel)
        self.require(channel, P.READ_MESSAGE_HISTORY)
        emoji = partial_emoji(request.match_info["emoji"])
        await self.fake.reaction_event(msg, emoji, self.state.bot_user, add=False)
        return no_content()

    # -- CDN --------------------------------------------------------------------------------

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        fake.cdn_requests.append(request.path)
        fake.cdn_in_flight += 1
        fake.cdn_max_in_flight = max(fake.cdn_max_in_flight, fake.cdn_in_flight)
        try:
            if fake.cdn_gate is not None:
                await fake.cdn_gate.wait()
            if fake.cdn_delay:
                await asyncio.sleep(fake.cdn_delay)
        finally:
            fake.cdn_in_flight -= 1
        att = self.state.blobs.get(int(request.match_info["att_id"]))
        if att is None or att.filename != request.match_info["filename"]:
            return web.Response(status=404, text="404: Not Found")
        return web.Response(body=att.data, content_type=att.content_type.split(";")[0])


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Rejection(404, 0, "404: Not Found") from None
