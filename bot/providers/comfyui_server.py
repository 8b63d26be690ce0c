"""Talking to one ComfyUI server: HTTP with our rules, its queue, its lists, uploads.

What :class:`~bot.providers.comfyui.ComfyUIClient` needs from the server, apart from the
prompt's own websocket reading (:mod:`bot.providers.comfyui_watch`): bodies read through
``fetch`` (capped), errors classified (:mod:`bot.providers.comfyui_wire`), only a refused
connection retried, and the questions "is our prompt still queued?", "what does the history
say?", "take it off the queue, or interrupt it if, and only if, it is the one running".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import yarl

from bot.config import ProviderSettings
from bot.providers.comfyui_wire import choices, classify_error, json_answer, queue_ids
from bot.providers.errors import MalformedResponse, ProviderError, ProviderUnavailable
from bot.providers.fetch import HostPolicy
from bot.providers.selfhosted import exchange

log = logging.getLogger(__name__)

#: Polls of ``/queue`` after which a cancelled prompt never seen there is taken as never sent.
UNSEEN_POLLS = 4


class ComfyUIServer:
    """One ComfyUI server's HTTP API; safe to share between tasks."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ProviderSettings,
        *,
        name: str,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        poll_interval: float = 0.5,
    ) -> None:
        self.name = name
        self.base_url = settings.base_url.rstrip("/")
        self._session = session
        self._settings = settings
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._hosts = HostPolicy.from_settings(settings.base_url)
        self._max_response = int(settings.max_response_mb * 1024 * 1024)
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout_seconds,
            sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.read_timeout_seconds,
        )
        #: (class_type, input) -> (when fetched, the server's list).
        self._lists: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {}

    async def choices(
        self, class_type: str, input_name: str, *, max_age: float | None = None
    ) -> tuple[str, ...]:
        """A choice input's values from ``/object_info``, fetched again when older than
        ``max_age`` seconds (None: kept until a member's choice is not in it)."""
        key = (class_type, input_name)
        fetched, values = self._lists.get(key, (None, ()))
        now = time.monotonic()
        if fetched is None or (max_age is not None and now - fetched >= max_age):
            info = await self.call("GET", f"/object_info/{class_type}")
            values = choices(info, class_type, input_name)
            self._lists[key] = (now, values)
        return values

    async def upload(self, data: bytes) -> str:
        """``/upload/image`` under ``input/imagebot/``, named by content (the same picture twice
        is one file); the name LoadImage takes."""
        kind = "png" if data[:4] == b"\x89PNG" else "jpg" if data[:2] == b"\xff\xd8" else "webp"
        digest = await asyncio.to_thread(hashlib.sha256, data)  # megabytes: off the loop
        filename = f"{digest.hexdigest()[:32]}.{kind}"
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type=f"image/{kind}")
        form.add_field("type", "input")
        form.add_field("subfolder", "imagebot")
        form.add_field("overwrite", "true")
        answer = await self.call("POST", "/upload/image", data=form)
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise MalformedResponse(detail="/upload/image: answer has no name")
        subfolder = answer.get("subfolder") or ""
        return f"{subfolder}/{answer['name']}" if subfolder else answer["name"]

    async def open_socket(self, client_id: str) -> aiohttp.ClientWebSocketResponse | None:
        """Our prompt's websocket; None (and polling) when the server or a proxy refuses it."""
        url = yarl.URL(self.base_url + "/ws").with_query(clientId=client_id)
        url = url.with_scheme("wss" if url.scheme == "https" else "ws")
        try:
            return await self._session.ws_connect(
                url,
                heartbeat=30.0,
                max_msg_size=self._max_response,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "ComfyUI %s: no websocket (%s); no progress, polling /history", self.name, exc
            )
            return None

    async def queued(self, prompt_id: str) -> bool:
        running, pending = queue_ids(await self.call("GET", "/queue"))
        return prompt_id in running or prompt_id in pending

    async def history(self, prompt_id: str) -> Mapping[str, Any]:
        """The prompt's history entry, polled until ComfyUI has written it; an outage when the
        prompt is neither queued nor in the history (someone cleared ComfyUI's queue)."""
        while True:
            for _ in range(2):  # again after the queue: it may have finished in between
                answer = await self.call("GET", f"/history/{prompt_id}")
                entry = answer.get(prompt_id) if isinstance(answer, dict) else None
                if isinstance(entry, dict):
                    return entry
                if await self.queued(prompt_id):
                    break
            else:
                raise ProviderUnavailable(
                    detail=f"ComfyUI prompt {prompt_id} left the queue without a result "
                    "(deleted on the server?)"
                )
            await asyncio.sleep(self._poll_interval)

    async def download(self, file: Mapping[str, str]) -> bytes:
        query = yarl.URL("/view").with_query(file)
        _, raw = await self.request("GET", str(query), what="/view")
        return raw

    async def cancel(self, prompt_id: str) -> None:
        """Delete our prompt from the queue, or interrupt it if, and only if, it runs."""
        unseen = 0
        try:
            while unseen < UNSEEN_POLLS:
                running, pending = queue_ids(await self.call("GET", "/queue"))
                if prompt_id in pending:
                    await self.call("POST", "/queue", json_body={"delete": [prompt_id]})
                    log.info("ComfyUI %s: deleted our queued prompt %s", self.name, prompt_id)
                    continue  # it may have started in between: look again
                if prompt_id in running:
                    await self.call("POST", "/interrupt", json_body={"prompt_id": prompt_id})
                    log.info("ComfyUI %s: interrupted our prompt %s", self.name, prompt_id)
                    return
                answer = await self.call("GET", f"/history/{prompt_id}")
                if isinstance(answer, dict) and prompt_id in answer:
                    return  # finished already, or deleted
                unseen += 1  # not arrived yet (the POST may still be on its way), or never will
                await asyncio.sleep(self._poll_interval)
        except ProviderError as exc:
            log.warning(
                "ComfyUI %s: could not cancel prompt %s: %s", self.name, prompt_id, exc.detail
            )

    # --- HTTP ------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: aiohttp.FormData | None = None,
        graph: Mapping[str, Any] | None = None,
    ) -> Any:
        what = path.split("?", 1)[0]
        what = "/history" if what.startswith("/history/") else what
        what = "/object_info" if what.startswith("/object_info/") else what
        _, raw = await self.request(
            method, path, what=what, json_body=json_body, data=data, graph=graph
        )
        return json_answer(raw, what) if raw else None

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        data: aiohttp.FormData | None = None,
        graph: Mapping[str, Any] | None = None,
    ) -> tuple[int, bytes]:
        """One exchange; only a refused connection is tried again, since anything that reached
        the server may be running there."""
        return await exchange(
            self._session,
            method,
            self.base_url + path,
            what=what,
            server="ComfyUI",
            policy=self._hosts,
            limits=self._timeout,
            max_bytes=self._max_response,
            classify=lambda status, raw: classify_error(status, raw, what, graph),
            # An upload's form is read once: it cannot be sent again.
            retries=self._settings.max_retries if data is None else 0,
            sleep=self._sleep,
            random=lambda: 0.5,
            json_body=json_body,
            data=data,
        )
