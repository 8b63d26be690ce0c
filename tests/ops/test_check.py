"""`python -m bot check`: the operator's checklist, run as the operator runs it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import discord

from bot.discord.identity import BOT_PERMISSIONS
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import run_cli


def config(tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[discord]\napi_base_url = "{fake.api_base}"\n'
        f'[provider]\nbase_url = "{api.base_url}"\nmodel = "dall-e-2"\nmax_retries = 0\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n',
        encoding="utf-8",
    )
    return str(path)


def append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)


def result_line(out: str, name: str) -> str:
    """The one line the check ``name`` printed, [ok] or [FAIL]."""
    (line,) = [line for line in out.splitlines() if line.split("] ", 1)[-1].startswith(name + ":")]
    return line


async def test_everything_passes_and_the_invite_url_is_printed(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, _, err = await run_cli("db", "upgrade", "--config", cfg, env=env)
    assert code == 0, err
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    lines = out.splitlines()
    assert sum(line.startswith("[ok]") for line in lines) == 6, out
    invite = next(line for line in lines if line.startswith("invite URL: ")).split(": ", 1)[1]
    query = parse_qs(urlparse(invite).query)
    assert query["client_id"] == [str(fake_discord.application_id)]
    assert query["scope"][0].split() == ["bot", "applications.commands"]
    permissions = discord.Permissions(int(query["permissions"][0]))
    assert permissions == BOT_PERMISSIONS
    assert not permissions.administrator and not permissions.mention_everyone
    for secret in (fake_discord.token, fake_images_api.api_key):
        assert secret not in out + err


async def test_each_problem_is_named_with_its_fix(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": "wrong-token", "OPENAI_API_KEY": "sk-wrong-key-000000000000"}
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 1
    assert "[FAIL] image API:" in out and "401" in out
    assert "[FAIL] Discord:" in out and "Reset Token" in out
    assert "invite URL" not in out
    assert "sk-wrong-key-000000000000" not in out + err and "wrong-token" not in out + err
    assert "Traceback" not in err


async def test_a_first_deploy_passes_so_check_and_run_works(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """No database yet, or one not migrated: `run` migrates it, so neither is a failure."""
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    database = result_line(out, "database")
    assert database.startswith("[ok] database: new database") and "when the bot starts" in database
    assert not (tmp_path / "bot.db").exists()  # the check leaves nothing behind
    sqlite3.connect(tmp_path / "bot.db").close()  # an empty file: no migration applied yet
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    database = result_line(out, "database")
    assert database.startswith("[ok] database: reachable;"), database
    assert "migration(s) pending: applied when the bot starts" in database


async def test_a_model_the_server_does_not_serve_fails(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """Measured: check said OK for such a model, and then every request failed."""
    del fake_images_api.models["dall-e-2"]  # the configured model
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 1, out + err
    line = result_line(out, "image API")
    assert line.startswith("[FAIL] image API:") and "does not serve dall-e-2" in line, out
    assert "it serves: dall-e-3, gpt-image-1" in line, out
    env["IMAGEBOT_PROVIDER_MODEL"] = "dall-e-3"
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    assert "[ok] image API:" in out and "serves dall-e-3" in out


async def test_the_checklist_is_all_it_prints(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """No library lines (discord.py's intents warning, Alembic's INFO lines) around the results."""
    cfg = config(tmp_path, fake_discord, fake_images_api)
    sqlite3.connect(tmp_path / "bot.db").close()  # Alembic has a database to look at
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    assert err == ""
    lines = out.splitlines()
    assert all(line.startswith(("[ok] ", "[FAIL] ", "invite URL: ")) for line in lines), out


async def test_the_checklist_states_the_spend_caps(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    caps = result_line(out, "caps")
    assert caps == (
        "[ok] caps: each server $10 a month (admins may raise it to $100); "
        "all servers and DMs together $100 a month, no daily cap"
    )
    env |= {
        "IMAGEBOT_QUOTAS_SPEND_PER_MONTH_USD": "2.5",
        "IMAGEBOT_QUOTAS_TOTAL_SPEND_PER_MONTH_USD": "40",
        "IMAGEBOT_QUOTAS_TOTAL_SPEND_PER_DAY_USD": "3",
    }
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    caps = result_line(out, "caps")
    assert "each server $2.5 a month" in caps and "together $40 a month, $3 a day" in caps


async def test_the_checklist_says_who_can_use_the_bot_and_how_to_make_it_private(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, _, err = await run_cli("db", "upgrade", "--config", cfg, env=env)
    assert code == 0, err
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    access = result_line(out, "access")
    assert access.startswith("[ok]") and "anyone may add it" in access
    assert "[quotas] allowed_guilds" in access and "turn off Public Bot" in access
    env["IMAGEBOT_QUOTAS_ALLOWED_GUILDS"] = "[123456789012345678]"
    fake_discord.bot_public = False
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    access = result_line(out, "access")
    assert access.startswith("[ok] access: private: works only in 1 server(s)"), out + err
    assert "Public Bot" not in access  # already off


async def test_a_database_that_cannot_be_opened_fails(tmp_path: Path) -> None:
    base = {"DISCORD_TOKEN": "", "OPENAI_API_KEY": ""}
    (tmp_path / "bot.db").mkdir()  # a folder where the database file should be
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    code, out, err = await run_cli("check", env=base | {"DATABASE_URL": url}, cwd=tmp_path)
    assert code == 1, out + err
    assert "[FAIL] database: unreachable: OperationalError" in out, out + err
    assert "Traceback" not in err


async def test_every_backend_is_checked_on_its_own_line(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    async with (
        FakeAutomatic1111(auth=("bot", "pw-SECRET")) as gpu,
        FakeAutomatic1111(auth=("bot", "other")) as locked,
    ):
        cfg = config(tmp_path, fake_discord, fake_images_api)
        append(
            cfg,
            f'[backends.gpu]\ntype = "automatic1111"\nbase_url = "{gpu.base_url}"\n'
            'username = "bot"\npassword = "pw-SECRET"\n'
            f'[backends.locked]\ntype = "automatic1111"\nbase_url = "{locked.base_url}"\n'
            'username = "bot"\npassword = "pw-SECRET"\n'
            '[backends.gone]\ntype = "automatic1111"\nbase_url = "http://127.0.0.1:9"\n'
            "max_retries = 0\n",
        )
        env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
        code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 1, out + err
    assert result_line(out, "image API").startswith("[ok] image API:")
    assert result_line(out, "backend gpu (automatic1111)") == (
        f"[ok] backend gpu (automatic1111): {gpu.base_url} 2 checkpoints"
    )
    locked_line = result_line(out, "backend locked (automatic1111)")
    assert locked_line.startswith("[FAIL]") and "--api-auth" in locked_line
    gone = result_line(out, "backend gone (automatic1111)")
    assert gone.startswith("[FAIL] backend gone (automatic1111): http://127.0.0.1:9 refused:")
    assert "pw-SECRET" not in out + err and "Traceback" not in err


def unmappable_workflows(tmp_path: Path) -> Path:
    """A workflow folder whose txt2img has no node the bot can put a prompt in."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "txt2img.json").write_text('{"1": {"class_type": "KSampler", "inputs": {}}}')
    return folder


async def test_a_comfyui_backend_is_checked_and_an_unmappable_workflow_named(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """The operator learns from `check` that ComfyUI answers, and which workflow cannot work."""
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    async with FakeComfyUI() as comfy:
        backend = f'[backends.comfy]\ntype = "comfyui"\nbase_url = "{comfy.base_url}"\n'
        cfg = config(tmp_path, fake_discord, fake_images_api)
        append(cfg, backend)
        code, out, err = await run_cli("check", "--config", cfg, env=env)
        assert code == 0, out + err
        line = result_line(out, "backend comfy (comfyui)")
        assert line.startswith(f"[ok] backend comfy (comfyui): {comfy.base_url}"), line
        assert "checkpoints" in line, line

        cfg = config(tmp_path, fake_discord, fake_images_api)
        append(cfg, backend + f'workflows = "{unmappable_workflows(tmp_path)}"\n')
        code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code != 0, out + err
    assert "txt2img.json" in out + err, out + err
    assert "Traceback" not in err


async def test_the_moderation_pre_check_endpoint_is_checked_when_it_is_on(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    assert "moderation pre-check" not in out  # off: nothing asked
    assert fake_images_api.moderation.calls == []
    append(cfg, '[moderation]\nprecheck = "block"\nprecheck_model = "omni-moderation-latest"\n')
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    line = result_line(out, "moderation pre-check")
    assert line == (
        f"[ok] moderation pre-check: {fake_images_api.base_url}/moderations answers "
        "(omni-moderation-latest, backend default)"
    )
    fake_images_api.moderation.fail_next(404, code="unknown_url")  # a server without it
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 1
    assert result_line(out, "moderation pre-check").startswith("[FAIL] moderation pre-check:")
    assert fake_images_api.api_key not in out + err
