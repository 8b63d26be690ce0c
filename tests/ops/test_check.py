"""`python -m bot check`: the operator's checklist, run as the operator runs it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import discord

from bot.discord.identity import BOT_PERMISSIONS
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_api import FakeImagesAPI
from tests.fakes.process import run_cli


def config(tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[discord]\napi_base_url = "{fake.api_base}"\n'
        f'[provider]\nbase_url = "{api.base_url}"\nmodel = "dall-e-2"\nmax_retries = 0\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n',
        encoding="utf-8",
    )
    return str(path)


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
    assert sum(line.startswith("[ok]") for line in lines) == 5, out
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
    assert "[FAIL] database:" in out and "python -m bot db upgrade" in out
    assert "[FAIL] image API:" in out and "401" in out
    assert "[FAIL] Discord:" in out and "Reset Token" in out
    assert "invite URL" not in out
    assert "sk-wrong-key-000000000000" not in out + err and "wrong-token" not in out + err
    assert "Traceback" not in err


async def test_the_checklist_says_who_can_use_the_bot_and_how_to_make_it_private(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    cfg = config(tmp_path, fake_discord, fake_images_api)
    env = {"DISCORD_TOKEN": fake_discord.token, "OPENAI_API_KEY": fake_images_api.api_key}
    code, _, err = await run_cli("db", "upgrade", "--config", cfg, env=env)
    assert code == 0, err
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    (access,) = [line for line in out.splitlines() if line.startswith("[ok] access:")]
    assert "anyone may add it" in access
    assert "total spend capped at $100 a month" in access
    assert "[quotas] allowed_guilds" in access and "turn off Public Bot" in access
    env["IMAGEBOT_QUOTAS_ALLOWED_GUILDS"] = "[123456789012345678]"
    fake_discord.bot_public = False
    code, out, err = await run_cli("check", "--config", cfg, env=env)
    assert code == 0, out + err
    (access,) = [line for line in out.splitlines() if line.startswith("[ok] access:")]
    assert access.startswith("[ok] access: private: works only in 1 server(s)"), out + err
    assert "Public Bot" not in access  # already off


async def test_a_bad_database_url_is_named_without_its_password(tmp_path: Path) -> None:
    """database.url is a secret (it may hold a password): check names the problem, not the URL."""
    base = {"DISCORD_TOKEN": "", "OPENAI_API_KEY": ""}
    for url, expected in (
        ("postgresql+nodriver://imagebot:pw-SECRET-42@127.0.0.1:1/db", "database.url is not"),
        ("mysql+aiomysql://imagebot:pw-SECRET-42@127.0.0.1:1/db", "database.url needs the driver"),
        ("not a url pw-SECRET-42", "database.url is not usable"),
    ):
        code, out, err = await run_cli("check", env=base | {"DATABASE_URL": url})
        assert code == 1, out + err
        assert f"[FAIL] database: {expected}" in out, out + err
        assert "pw-SECRET-42" not in out + err
        assert "Traceback" not in err
