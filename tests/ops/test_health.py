"""/healthz and /metrics as an operator's monitoring sees them, with the bot running for real."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import aiohttp

from bot.app import open_bot, operator_endpoint
from bot.config import DatabaseSettings, HttpSettings
from bot.ops.metrics import Metrics
from bot.testing.discord import FakeDiscord
from bot.testing.harness import make_settings
from bot.testing.openai_api import FakeImagesAPI


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


async def test_health_and_metrics_follow_what_the_bot_does(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    tmp_path: Path,
) -> None:
    database = tmp_path / "db" / "bot.db"
    settings = dataclasses.replace(
        make_settings(tmp_path, fake_discord, fake_images_api),
        http=HttpSettings(enabled=True, host="127.0.0.1", port=0),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"),
    )
    metrics = Metrics()
    async with (
        open_bot(settings, metrics=metrics, guild_ready_timeout=0.05) as bot,
        fake_discord.running(bot),
        operator_endpoint(settings, metrics, bot) as server,
        aiohttp.ClientSession() as http,
    ):
        assert server is not None
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
            body = await response.json()
        assert body == {
            "status": "ok",
            "checks": {"gateway": "ok", "database": "ok", "dispatcher": "ok"},
        }

        sources = ("channel", "followup", "response")
        await fake_discord.slash("imagine", {"prompt": "a red fox", "count": 2})
        await fake_discord.wait_for_message(lambda m: bool(m.attachments), sources=sources)
        fake_images_api.safety_next()
        await fake_discord.slash("imagine", {"prompt": "something else"})
        await fake_discord.wait_for_message(lambda m: "safety" in m.content, sources=sources)
        # A compatible server inventing codes must not invent metric labels.
        fake_images_api.fail_next(400, code="weird_code_7f3a", message="No.")
        await fake_discord.slash("imagine", {"prompt": "a third thing"})
        await fake_discord.wait_for_message(lambda m: "rejected" in m.content, sources=sources)
        fake_images_api.fail_next(503, times=1)
        await fake_discord.slash("imagine", {"prompt": "a fourth thing"})
        await fake_discord.wait_for_message(
            lambda m: "not responding" in m.content, sources=sources
        )
        await bot.runner.wait_idle()

        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        assert metric(text, "imagebot_jobs_total", outcome="succeeded") == 1
        assert metric(text, "imagebot_jobs_total", outcome="failed") == 3
        assert metric(text, "imagebot_images_delivered_total") == 2
        assert metric(text, "imagebot_spend_usd_total") == 0.04  # 2 x dall-e-2 1024, all servers
        assert str(fake_discord.guild.id) not in text and "guild" not in text
        assert metric(text, "imagebot_provider_errors_total", code="content_policy_violation") == 1
        assert metric(text, "imagebot_provider_errors_total", code="other") == 1
        assert "weird_code_7f3a" not in text
        assert metric(text, "imagebot_provider_request_seconds_count", operation="generations") == 4
        assert metric(text, "imagebot_queue_depth") == 0
        assert metric(text, "imagebot_job_run_seconds_count") == 4

        await bot.runner.close()
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["status"] == "unhealthy"
        assert body["checks"]["dispatcher"] == "the job dispatcher is not running"
        assert body["checks"]["database"] == "ok"

        # The database goes away: the reason is short and names no path, URL or SQL.
        await bot.storage.engine.dispose()
        shutil.rmtree(database.parent)
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 503
            body = await response.json()
        reason = body["checks"]["database"]
        assert reason == "failed (OperationalError)"
        assert str(tmp_path) not in json.dumps(body) and "SELECT" not in json.dumps(body)
