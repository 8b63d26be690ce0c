"""The Docker image and the README's `docker run` line agree with the CLI and the config.

There is no Docker engine on CI machines; .ci/run lints the Dockerfile with hadolint, and these
tests check what the image would run, with which settings, against the real code.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from bot.cli import build_parser
from bot.config import load_settings
from bot.db.migrate import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def instruction(name: str) -> list[str]:
    """The arguments of the last ``name`` instruction of the final stage (exec form)."""
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[-1]
    matches = re.findall(rf"^{name} (\[.*\])$", final_stage, re.MULTILINE)
    assert matches, f"no exec-form {name} in the final stage"
    return list(json.loads(matches[-1]))


def image_env() -> dict[str, str]:
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[-1]
    block = re.search(r"^ENV (.*?)(?<!\\)$", final_stage, re.MULTILINE | re.DOTALL)
    assert block is not None
    pairs = shlex.split(block.group(1).replace("\\\n", " "))
    return dict(pair.split("=", 1) for pair in pairs)


def test_entrypoint_and_default_command_are_the_cli_run() -> None:
    entrypoint, command = instruction("ENTRYPOINT"), instruction("CMD")
    assert entrypoint == ["python", "-m", "bot"]
    args = build_parser().parse_args(command)
    assert args.command == "run"


def test_defaults_plus_environment_need_no_config_file(tmp_path: Path) -> None:
    env = image_env() | {"DISCORD_TOKEN": "t" * 60, "OPENAI_API_KEY": "sk-" + "k" * 40}
    settings = load_settings(None, env=env)  # tmp cwd-independent: no config.toml is read
    assert settings.database.url == "sqlite+aiosqlite:////data/bot.db"
    assert settings.http.enabled and settings.http.host == "0.0.0.0"
    healthcheck = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", DOCKERFILE)
    assert healthcheck is not None
    assert int(healthcheck.group(1)) == settings.http.port
    assert healthcheck.group(2) == "/healthz"
    assert f"EXPOSE {settings.http.port}" in DOCKERFILE
    assert 'VOLUME ["/data"]' in DOCKERFILE


def test_the_image_runs_as_a_non_root_user_with_the_migrations() -> None:
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and user[-1] not in {"root", "0"}
    assert "COPY migrations ./migrations" in DOCKERFILE and "COPY bot ./bot" in DOCKERFILE
    # In the image the package is /app/bot and the migrations /app/migrations, which is where
    # the code looks for them (next to the package).
    assert MIGRATIONS_DIR == ROOT / "migrations"
    assert DOCKERFILE.index("pip install") < DOCKERFILE.index("COPY bot")


def test_the_readme_docker_run_line_matches_the_image() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if line.strip().startswith("docker run ")]
    assert lines, "the README shows no docker run line"
    for line in lines:
        words = shlex.split(line)
        assert "-e" in words and "DISCORD_TOKEN" in words and "OPENAI_API_KEY" in words
        volume = words[words.index("-v") + 1]
        assert volume.endswith(":/data")
        image_at = next(
            i
            for i, word in enumerate(words[2:], 2)
            if not word.startswith("-") and words[i - 1] not in {"-e", "-v", "-p", "--name"}
        )
        command = words[image_at + 1 :] or instruction("CMD")
        args = build_parser().parse_args(command)
        assert args.command in {"run", "check", "sync"}


def test_no_file_names_the_old_environment_prefix() -> None:
    """``BOT_<SECTION>_<KEY>`` collided with platform variables (``BOT_HTTP_SERVICE_HOST``)."""
    old = re.compile(r"(?<![A-Z_])BOT_(?:CONFIG|DISCORD|PROVIDER|IMAGES|JOBS|QUOTAS|HTTP|LOGGING)")
    for name in ("README.md", "Dockerfile", "compose.yaml", "config.example.toml", "bot/cli.py"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert not old.search(text), f"{name} still names the BOT_ prefix"
    assert image_env()["IMAGEBOT_HTTP_ENABLED"] == "true"
