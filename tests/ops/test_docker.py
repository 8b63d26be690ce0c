"""The Docker image and the README's `docker run` line agree with the CLI and the config.

There is no Docker engine on CI machines; .ci/run lints the Dockerfile with hadolint, and these
tests check what the image would run, with which settings, against the real code.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bot.cli import build_parser
from bot.config import load_settings
from bot.db.migrate import MIGRATIONS_DIR
from bot.testing.postgres import REQUIRED_ENV

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
ENTRYPOINT_SCRIPT = ROOT / "docker" / "entrypoint.sh"
IMAGE_CONFIG = ROOT / "docker" / "config.toml"
SECRETS = {"DISCORD_TOKEN": "t" * 60, "OPENAI_API_KEY": "sk-" + "k" * 40}


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


def copies() -> dict[str, str]:
    """The final stage's ``COPY source destination`` lines (not ``--from``), destination first."""
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[-1]
    found = re.findall(r"^COPY (?:--chmod=\d+ )?(\S+) (\S+)$", final_stage, re.MULTILINE)
    return {destination: source for source, destination in found}


def test_entrypoint_and_default_command_are_the_cli_run() -> None:
    entrypoint, command = instruction("ENTRYPOINT"), instruction("CMD")
    assert entrypoint == ["imagebot-entrypoint"]
    assert copies()["/usr/local/bin/imagebot-entrypoint"] == "docker/entrypoint.sh"
    last_line = ENTRYPOINT_SCRIPT.read_text(encoding="utf-8").strip().splitlines()[-1]
    assert last_line == 'exec python -m bot "$@"'
    args = build_parser().parse_args(command)
    assert args.command == "run"


def test_the_images_config_file_plus_the_environment_run_the_bot() -> None:
    assert copies()["./config.toml"] == "docker/config.toml"  # /app/config.toml, the cwd
    assert re.search(r"^WORKDIR /app$", DOCKERFILE.rsplit("\nFROM ", 1)[-1], re.MULTILINE)
    settings = load_settings(str(IMAGE_CONFIG), env=image_env() | SECRETS)
    assert settings.database.url == "sqlite+aiosqlite:////data/bot.db"
    assert settings.storage.spool_dir.startswith("/data/")  # the only writable place
    assert settings.http.enabled and settings.http.host == "0.0.0.0"
    healthcheck = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", DOCKERFILE)
    assert healthcheck is not None
    assert int(healthcheck.group(1)) == settings.http.port
    assert healthcheck.group(2) == "/healthz"
    assert f"EXPOSE {settings.http.port}" in DOCKERFILE
    assert 'VOLUME ["/data"]' in DOCKERFILE


def test_a_mounted_config_file_wins_over_the_images_defaults(tmp_path: Path) -> None:
    """The operator's ``/app/config.toml`` replaces the image's: no ENV default overrides it."""
    mounted = tmp_path / "config.toml"
    mounted.write_text(
        '[database]\nurl = "sqlite+aiosqlite:////data/mine.db"\n'
        '[http]\nenabled = true\nhost = "0.0.0.0"\nport = 9000\n',
        encoding="utf-8",
    )
    settings = load_settings(str(mounted), env=image_env() | SECRETS)
    assert settings.database.url == "sqlite+aiosqlite:////data/mine.db"
    assert settings.http.port == 9000
    # What the operator sets in the environment still wins, as everywhere else.
    env = image_env() | SECRETS | {"IMAGEBOT_HTTP_PORT": "9100"}
    assert load_settings(str(mounted), env=env).http.port == 9100


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
    assert not [key for key in image_env() if key.startswith("IMAGEBOT_") or key == "DATABASE_URL"]


# --- the entry point script ------------------------------------------------------------------


@pytest.fixture
def stub_python() -> Iterator[Path]:
    """A directory (traversable by any user) whose ``python`` prints its arguments: what the
    script would exec, without needing the virtualenv to be readable by another user."""
    where = Path(tempfile.mkdtemp(prefix="imagebot-entrypoint-"))
    where.chmod(0o755)
    stub = where / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "exec: python $*"\n', encoding="utf-8")
    stub.chmod(0o755)
    yield where
    shutil.rmtree(where)


def run_entrypoint(
    data_dir: Path, bin_dir: Path, *args: str, as_user: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "IMAGEBOT_DATA_DIR": str(data_dir)}
    command = ["sh", str(ENTRYPOINT_SCRIPT), *args]
    if as_user is not None:
        command = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"]
        command += ["sh", str(ENTRYPOINT_SCRIPT), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_a_writable_data_directory_starts_the_bot_and_leaves_nothing(stub_python: Path) -> None:
    data = stub_python / "data"
    data.mkdir()
    done = run_entrypoint(data, stub_python / "bin", "run")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "exec: python -m bot run", "")
    assert list(data.iterdir()) == []  # the write probe is removed


def test_a_data_path_that_is_no_directory_exits_2_with_the_fix(stub_python: Path) -> None:
    not_a_dir = stub_python / "data"
    not_a_dir.write_text("", encoding="utf-8")
    done = run_entrypoint(not_a_dir, stub_python / "bin", "run")
    assert done.returncode == 2 and done.stdout == ""  # the bot never started
    assert f"imagebot: {not_a_dir} is not a directory" in done.stderr
    assert "sudo chown" in done.stderr and "--user" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the script as the image's uid 10001",
)
def test_a_root_owned_mount_refuses_the_images_user_and_names_the_chown(
    stub_python: Path,
) -> None:
    """What Docker does with ``-v "$PWD/data:/data"`` when ./data does not exist yet."""
    data = stub_python / "data"
    data.mkdir(mode=0o755)  # owned by root, as Docker creates it
    done = run_entrypoint(data, stub_python / "bin", "run", as_user=10001)
    assert done.returncode == 2 and done.stdout == ""
    assert "(uid 10001)" in done.stderr
    assert "    sudo chown 10001 ./data" in done.stderr.splitlines()
    os.chown(data, 10001, 10001)  # the fix the message names
    done = run_entrypoint(data, stub_python / "bin", "run", as_user=10001)
    assert (done.returncode, done.stdout.strip()) == (0, "exec: python -m bot run")


# --- build context, compose, pinned versions --------------------------------------------------


def dockerignore() -> list[str]:
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_the_build_context_leaves_out_venvs_data_secrets_and_caches() -> None:
    patterns = dockerignore()
    for excluded in (".git", ".venv", "data", "config.toml", "**/__pycache__", ".mypy_cache"):
        assert excluded in patterns, excluded
    sources = [*copies().values(), "pyproject.toml", "constraints.txt"]
    for source in sources:
        if source.startswith("/"):
            continue
        parts = Path(source).parts
        hit = [
            p
            for p in patterns
            for i in range(len(parts))
            if fnmatch.fnmatch("/".join(parts[: i + 1]), p)
        ]
        assert not hit, f"{source} is copied but .dockerignore leaves it out ({hit})"
        assert (ROOT / source).exists(), source


def test_compose_keeps_postgres_in_its_own_volume_and_waits_for_its_health() -> None:
    compose = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert "- postgres-data:/var/lib/postgresql/data" in compose
    assert "./data/postgres" not in compose  # not inside the bot's bind mount
    assert re.search(r"^volumes:\n  postgres-data:", compose, re.MULTILINE)
    assert re.search(
        r"depends_on:\n\s+postgres:\n\s+condition: service_healthy\s.*\n\s+required: false",
        compose,
    )
    assert re.search(r"healthcheck:\n\s+test: \[\"CMD-SHELL\", \"pg_isready", compose)


def pins() -> dict[str, str]:
    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, re.MULTILINE)
    return {_normal(name): version for name, version in found}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_and_ci_install_the_pinned_versions_the_tests_ran_with() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = pins()
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]:
        assert _normal(Requirement(requirement).name) in pinned, requirement
    installed = {
        _normal(d.metadata["Name"]): d.version
        for d in distributions()
        if _normal(d.metadata["Name"]) not in {"imagebot", "pip", "setuptools", "wheel"}
    }
    differs = {n: (v, pinned.get(n)) for n, v in installed.items() if pinned.get(n) != v}
    assert differs == {}, "constraints.txt differs from the tested environment"
    assert "--constraint constraints.txt" in DOCKERFILE
    assert "['optional-dependencies']['postgres']" in DOCKERFILE  # asyncpg is in the image
    assert "COPY pyproject.toml constraints.txt ./" in DOCKERFILE
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet --constraint constraints.txt -e '.[test,postgres]'" in ci


def test_ci_runs_the_postgresql_tests_and_never_skips_them() -> None:
    """CI installs Debian's PostgreSQL when it is missing and makes a missing server an error:
    the database tests run on both engines there, never skipped."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "apt-get install -y -qq --no-install-recommends postgresql" in ci
    required = ci.index(f"export {REQUIRED_ENV}=1")
    assert required < ci.index(".venv/bin/python -m pytest")
