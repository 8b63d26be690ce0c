"""The compose files: the one-process default, and the scaled-out set on PostgreSQL.

No Docker engine runs here (see test_docker.py): the files are read as Compose reads them (YAML
with its anchors and merge keys, ``${NAME:?message}`` from the environment), and what each
service would run is checked against the real command line, config loader and Dockerfile.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.cli import build_parser
from bot.config import JobsSettings, load_settings
from tests.ops.test_docker import DOCKERFILE, IMAGE_CONFIG, ROOT, SECRETS, image_env

SCALE = "compose.scale.yaml"
GATEWAYS = ["gateway-0", "gateway-1"]
WORKERS = ["worker-1", "worker-2"]
ENVIRONMENT = {"POSTGRES_PASSWORD": "pg-" + "p" * 20, **SECRETS}


def compose(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:?message}`` (required) and ``${NAME:-default}``."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if kind == ":?":
            assert name in env, f"{name} is required: {rest}"
            return env[name]
        return env.get(name, rest if kind == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", one, value)


def processes() -> dict[str, dict[str, Any]]:
    services = compose(SCALE)["services"]
    return {name: service for name, service in services.items() if name in GATEWAYS + WORKERS}


def image_healthcheck() -> list[str]:
    match = re.search(r"^HEALTHCHECK .*?\n\s+CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    assert match is not None
    return list(json.loads(match.group(1)))


def test_the_default_stays_one_process_on_sqlite_with_postgres_as_a_profile() -> None:
    services = compose("compose.yaml")["services"]
    assert sorted(services) == ["bot", "postgres"]
    assert "profiles" not in services["bot"] and "command" not in services["bot"]  # `run`
    assert services["postgres"]["profiles"] == ["postgres"]
    assert "DATABASE_URL" not in services["bot"]["environment"]  # SQLite in ./data


def test_scaled_out_two_gateway_shards_and_two_workers_share_one_postgres() -> None:
    services = compose(SCALE)["services"]
    running = sorted(name for name, service in services.items() if "profiles" not in service)
    assert running == sorted([*GATEWAYS, *WORKERS, "postgres"])
    for shard, name in enumerate(GATEWAYS):
        command = processes()[name]["command"]
        assert command == ["run", "--shard-count", "2", "--shard-ids", str(shard), "--no-worker"]
    for name in WORKERS:
        assert processes()[name]["command"] == ["worker"]
    urls = {
        interpolate(p["environment"]["DATABASE_URL"], ENVIRONMENT) for p in processes().values()
    }
    assert len(urls) == 1  # one database for every process
    url = make_url(urls.pop())
    postgres = services["postgres"]["environment"]
    assert (url.drivername, url.host) == ("postgresql+asyncpg", "postgres")
    assert (url.username, url.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert url.password == interpolate(postgres["POSTGRES_PASSWORD"], ENVIRONMENT)


def test_every_process_waits_for_postgres_and_has_the_images_health_check() -> None:
    settings = load_settings(str(IMAGE_CONFIG), env=image_env() | SECRETS)
    for name, service in processes().items():
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}, name
        assert service["healthcheck"]["test"] == ["CMD", *image_healthcheck()], name
        assert f"127.0.0.1:{settings.http.port}/healthz" in service["healthcheck"]["test"][-1]
    postgres = compose(SCALE)["services"]["postgres"]
    assert postgres["healthcheck"]["test"][:2] == [
        "CMD-SHELL",
        "pg_isready -U imagebot -d imagebot",
    ]


def test_secrets_come_from_the_environment_and_are_required() -> None:
    text = (ROOT / SCALE).read_text(encoding="utf-8")
    for service in processes().values():
        environment = service["environment"]
        assert environment["DISCORD_TOKEN"] == "${DISCORD_TOKEN:?set DISCORD_TOKEN}"
        assert environment["OPENAI_API_KEY"] == "${OPENAI_API_KEY:?set OPENAI_API_KEY}"
        assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"]
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD is required"):
        interpolate(processes()["worker-1"]["environment"]["DATABASE_URL"], SECRETS)
    assert "sk-" not in text and "imagebot:imagebot@" not in text


def test_each_process_keeps_its_own_data_volume_and_port() -> None:
    declared = compose(SCALE)["volumes"]
    mounts = [service["volumes"] for service in processes().values()]
    assert all(len(mount) == 1 and mount[0].endswith(":/data") for mount in mounts)
    names = [mount[0].split(":")[0] for mount in mounts]
    assert len(set(names)) == len(names) and set(names) <= set(declared)  # spools never shared
    ports = [service["ports"][0] for service in processes().values()]
    assert all(port.startswith("127.0.0.1:") and port.endswith(":8080") for port in ports)
    assert len({port.split(":")[1] for port in ports}) == len(ports)
    # PostgreSQL's data is the volume the default file's postgres profile uses.
    postgres_volume = compose(SCALE)["services"]["postgres"]["volumes"][0]
    assert postgres_volume == compose("compose.yaml")["services"]["postgres"]["volumes"][0]


def test_a_stopped_worker_gets_its_jobs_grace_before_docker_kills_it() -> None:
    grace = JobsSettings().shutdown_grace_seconds
    for name in WORKERS:
        stop = processes()[name]["stop_grace_period"]
        assert stop.endswith("s") and float(stop[:-1]) > grace, name


def test_the_sqlite_copy_service_runs_db_copy_from_the_one_process_database() -> None:
    service = compose(SCALE)["services"]["copy-sqlite"]
    assert service["profiles"] == ["copy"]  # only by hand: `run --rm copy-sqlite`
    args = build_parser().parse_args(service["command"])
    assert (args.command, args.db_command) == ("db", "copy")
    settings = load_settings(str(IMAGE_CONFIG), env=image_env() | SECRETS)
    assert args.source == settings.database.url  # the image's SQLite file in /data
    assert service["volumes"] == ["./data:/data"]  # compose.yaml's bot's ./data
    assert args.to == service["environment"]["DATABASE_URL"]
    assert args.to == processes()["worker-1"]["environment"]["DATABASE_URL"]
    assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_the_scaled_out_commands_are_the_clis() -> None:
    """Two gateways for shards 0 and 1 of 2 that run no jobs, and workers: every shard served
    once, and the process roles the CLI makes of the commands."""
    parser = build_parser()
    shards, workers = [], 0
    for name, service in processes().items():
        args = parser.parse_args(service["command"])
        assert args.command in {"run", "worker"}, name
        if args.command == "worker":
            workers += 1
            continue
        assert args.no_worker, name  # the workers run the jobs
        assert args.shard_count == 2, name
        shards.append(args.shard_ids)
    assert sorted(shards) == ["0", "1"]
    assert workers == 2


def test_the_readme_names_the_scale_file_and_its_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"docker compose -f {SCALE} up -d" in readme
    assert f"docker compose -f {SCALE} run --rm copy-sqlite" in readme
    assert Path(ROOT / SCALE).is_file()
