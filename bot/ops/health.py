"""The operator's HTTP endpoint: ``/healthz`` for probes and ``/metrics`` for Prometheus.

Off by default and bound to 127.0.0.1: spend is nobody else's business. ``/healthz`` answers 200
only when every probe passes (gateway connected, database reachable, dispatcher alive) and 503
with the failing probes' short reasons otherwise, so a container orchestrator restarts a bot
that is up but useless. Reasons never carry exception text (it can hold a database URL with its
password, file paths, SQL): the exception goes to the log, the probe answers with its class.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from bot.config import HttpSettings
from bot.ops.metrics import Metrics

log = logging.getLogger(__name__)

#: A probe returns None when healthy, else a short reason.
Probe = Callable[[], Awaitable[str | None]]
PROBE_TIMEOUT = 3.0


class HealthServer:
    def __init__(
        self,
        settings: HttpSettings,
        metrics: Metrics,
        probes: Mapping[str, Probe],
        *,
        before_metrics: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._probes = dict(probes)
        self._before_metrics = before_metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._settings.port
        log.info("health and metrics on http://%s:%s", self._settings.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def check(self) -> dict[str, str]:
        """Every probe's verdict: "ok" or the reason it failed."""
        results: dict[str, str] = {}
        for name, probe in self._probes.items():
            try:
                reason = await asyncio.wait_for(probe(), PROBE_TIMEOUT)
            except TimeoutError:
                reason = f"no answer within {PROBE_TIMEOUT:g} s"
            except Exception as exc:
                log.warning("health probe %s failed", name, exc_info=True)
                reason = f"failed ({type(exc).__name__})"
            results[name] = reason or "ok"
        return results

    async def _healthz(self, request: web.Request) -> web.Response:
        results = await self.check()
        healthy = all(value == "ok" for value in results.values())
        body = {"status": "ok" if healthy else "unhealthy", "checks": results}
        return web.Response(
            text=json.dumps(body),
            status=200 if healthy else 503,
            content_type="application/json",
        )

    async def _metrics_page(self, request: web.Request) -> web.Response:
        if self._before_metrics is not None:
            self._before_metrics()
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = self._metrics.content_type
        return response
