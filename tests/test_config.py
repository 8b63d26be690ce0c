"""Settings: what an operator sees when the config is right, and when it is wrong."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.app import build_catalogues
from bot.config import ProviderSettings, Settings, load_settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_checked(path: str | None, env: dict[str, str]) -> Settings:
    """What every command does at start (bot.cli): the settings, then the model and price
    tables built from them (bot.app), each stopping the start with one line naming the key."""
    settings = load_settings(path, env=env)
    build_catalogues(settings)
    return settings


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings.provider.model == "gpt-image-2"
    assert settings.provider.base_url == "https://api.openai.com/v1"
    assert settings.provider.images_per_minute == 50
    assert settings.discord.api_base_url == "https://discord.com/api/v10"
    assert settings.database.url == "sqlite+aiosqlite:///data/bot.db"


def test_file_values_and_env_secrets_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [discord]
        token = "file-token"
        dev_guild_id = 1234
        [provider]
        api_key = "file-key"
        model = "dall-e-2"
        timeout_seconds = 30
        """,
    )
    settings = load_settings(path, env={"DISCORD_TOKEN": "env-token"})
    assert settings.discord.token == "env-token"
    assert settings.discord.dev_guild_id == 1234
    assert settings.provider.api_key == "file-key"
    assert settings.provider.model == "dall-e-2"
    assert settings.provider.timeout_seconds == 30.0
    settings = load_settings(path, env={"OPENAI_API_KEY": "env-key"})
    assert settings.provider.api_key == "env-key"


def test_imagebot_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[provider]\nmodel = "dall-e-3"\n')
    assert load_settings(None, env={"IMAGEBOT_CONFIG": path}).provider.model == "dall-e-3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[provider]\nmodle = 'x'\n", "provider.modle: unknown key"),
        ("[provdier]\n", "provdier: unknown key"),
        (
            "[provider]\nimages_per_minute = 'fifty'\n",
            "provider.images_per_minute: must be a whole",
        ),
        ("[provider]\nimages_per_minute = 0\n", "provider.images_per_minute: must be at least 1"),
        ("[provider]\ntimeout_seconds = true\n", "provider.timeout_seconds: must be a number"),
        ("[images]\nfit = 'stretch'\n", "images.fit: must be one of 'auto', 'crop', 'pad'"),
        ("[discord]\ndev_guild_id = -1\n", "discord.dev_guild_id: must be at least 0"),
        ("[provider]\nmodel = 'dall-e-9'\n", "provider.model: unknown model 'dall-e-9'"),
        ("provider = 3\n", "provider: must be a table"),
        ("[provider\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_checked(write(tmp_path, text), env={})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[provider]\nbase_url = 'api.openai.com/v1'\n", "provider.base_url: must be an http(s)"),
        ("[provider]\nbase_url = 'ftp://example.com/v1'\n", "provider.base_url: must be an"),
        ("[provider]\nbase_url = 'https://'\n", "provider.base_url: must be an http(s) URL"),
        (
            "[quotas]\nallowed_sizes = ['1024x1024', '999x999']\n",
            "quotas.allowed_sizes: no configured model allows '999x999' (gpt-image-2 allows",
        ),
        (
            "[provider]\nmodel = 'dall-e-2'\n[quotas]\nallowed_models = ['dall-e-2']\n"
            "allowed_sizes = ['1792x1024']\n",
            "quotas.allowed_sizes: no configured model allows '1792x1024' (dall-e-2 allows 256x",
        ),
    ],
)
def test_urls_and_sizes_that_cannot_work_name_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_checked(write(tmp_path, text), env={})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_sizes_some_allowed_model_offers_and_http_urls_are_accepted(tmp_path: Path) -> None:
    text = (
        "[provider]\nbase_url = 'http://127.0.0.1:8000/v1'\nmodel = 'dall-e-2'\n"
        "[quotas]\nallowed_sizes = ['512x512', '1792x1024', '1536x864']\n"
    )
    settings = load_checked(write(tmp_path, text), env={})
    assert settings.quotas.allowed_sizes == ("512x512", "1792x1024", "1536x864")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "sqlite:///data/bot.db",
            "database.url (from DATABASE_URL): use sqlite+aiosqlite:///PATH (the bot needs an "
            "async driver",
        ),
        ("mysql://imagebot:pw-SECRET-42@db/imagebot", "the bot needs an async driver"),
        ("postgresql://imagebot:pw-SECRET-42@db/imagebot", "use postgresql+asyncpg://"),
        ("mysql+aiomysql://imagebot:pw-SECRET-42@db/x", "install the driver: pip install aiomysql"),
        ("postgresql+nodriver://imagebot:pw-SECRET-42@db/x", "unknown database kind"),
        ("not a url pw-SECRET-42", "not a database URL"),
    ],
)
def test_a_database_url_without_an_async_driver_names_the_fix(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"DATABASE_URL": url})
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "pw-SECRET-42" not in message


def test_postgres_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # not installed (CI installs it)
    text = "[database]\nurl = 'postgresql+asyncpg://imagebot:pw-SECRET-42@db/imagebot'\n"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert str(info.value).startswith(
        "database.url: install the postgres extra: pip install 'imagebot[postgres]'"
    )
    assert "pw-SECRET-42" not in str(info.value)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(str(tmp_path / "nope.toml"), env={})


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[discord]\ntoken = "tok-SECRET-123"\n[provider]\napi_key = "sk-SECRET-456"\n'
        'user_salt = "salt-SECRET-789"\n',
    )
    settings = load_settings(path, env={})
    text = repr(settings)
    for secret in ("tok-SECRET-123", "sk-SECRET-456", "salt-SECRET-789"):
        assert secret not in text


def test_example_config_loads_and_documents_every_key() -> None:
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(example)
    settings = load_checked(str(ROOT / "config.example.toml"), env={})
    assert settings == Settings()  # the example shows the defaults
    for section in dataclasses.fields(Settings):
        assert section.name in raw, f"[{section.name}] missing from config.example.toml"
        value = getattr(Settings(), section.name)
        if not dataclasses.is_dataclass(value):
            continue  # a free-form table such as [prices]
        for key in dataclasses.fields(value):
            if key.name == "models":
                assert re.search(r"\[provider\.models\.", example)
                continue
            assert key.name in raw[section.name], f"{section.name}.{key.name} not documented"


def test_provider_settings_models_are_read_only(tmp_path: Path) -> None:
    path = write(tmp_path, '[provider.models."local"]\nbased_on = "dall-e-2"\n')
    settings = load_settings(path, env={})
    assert isinstance(settings.provider, ProviderSettings)
    with pytest.raises(TypeError):
        settings.provider.models["x"] = {}  # type: ignore[index]


def test_any_key_from_the_environment(tmp_path: Path) -> None:
    env = {
        "IMAGEBOT_HTTP_ENABLED": "true",
        "IMAGEBOT_HTTP_PORT": "9090",
        "IMAGEBOT_HTTP_HOST": "0.0.0.0",
        "IMAGEBOT_PROVIDER_MODEL": "dall-e-2",
        "IMAGEBOT_QUOTAS_ALLOWED_SIZES": '["256x256", "512x512"]',
        "IMAGEBOT_CONFIG_UNRELATED": "ignored",
        "BOT_PROVIDER_MODEL": "dall-e-3",  # the old prefix means nothing any more
    }
    settings = load_settings(write(tmp_path, "[http]\nport = 1234\n"), env=env)
    assert settings.http.enabled and settings.http.port == 9090 and settings.http.host == "0.0.0.0"
    assert settings.provider.model == "dall-e-2"
    assert settings.quotas.allowed_sizes == ("256x256", "512x512")
    with pytest.raises(ConfigError, match=r"http\.port: must be at least 1 and at most 65535"):
        load_settings(None, env={"IMAGEBOT_HTTP_PORT": "99999"})


def test_a_blocked_term_that_is_no_term_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^moderation\.blocked_terms: '\* \*': A blocked term"):
        load_checked(write(tmp_path, '[moderation]\nblocked_terms = ["fine", "* *"]\n'), env={})
    with pytest.raises(ConfigError, match=r"^moderation\.blocked_terms: .* at most 100 char"):
        load_checked(write(tmp_path, f'[moderation]\nblocked_terms = ["{"x" * 101}"]\n'), env={})
    settings = load_checked(write(tmp_path, '[moderation]\nblocked_terms = ["Ｃａｔ*"]\n'), env={})
    assert settings.moderation.blocked_terms == ("Ｃａｔ*",)


def test_quota_defaults_above_ceilings_and_bad_prices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"quotas\.images_per_day: the default is above"):
        load_checked(
            write(tmp_path, "[quotas]\nimages_per_day = 5\nmax_images_per_day = 4\n"), env={}
        )
    with pytest.raises(ConfigError, match=r"prices\.gpt-image-1\.low: must be 2"):
        load_checked(write(tmp_path, '[prices]\n"gpt-image-1.low" = 0.5\n'), env={})
    settings = load_checked(write(tmp_path, '[prices]\n"dall-e-2.256x256" = 0.5\n'), env={})
    assert settings.prices["dall-e-2.256x256"] == 0.5


def test_the_readme_documents_every_key() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for section in dataclasses.fields(Settings):
        value = getattr(Settings(), section.name)
        if not dataclasses.is_dataclass(value):
            assert f"`{section.name}`" in readme
            continue
        for key in dataclasses.fields(value):
            assert f"`{section.name}.{key.name}`" in readme, f"{section.name}.{key.name}"


# --- what platforms put in the environment -------------------------------------------------


#: What Kubernetes injects into every pod for a service named ``bot-http`` and for one named
#: ``imagebot-http`` (and ``imagebot``), next to the operator's own variables.
KUBERNETES_ENV = {
    "BOT_HTTP_SERVICE_HOST": "10.0.0.11",
    "BOT_HTTP_SERVICE_PORT": "8080",
    "BOT_HTTP_PORT": "tcp://10.0.0.11:8080",
    "BOT_HTTP_PORT_8080_TCP": "tcp://10.0.0.11:8080",
    "IMAGEBOT_HTTP_SERVICE_HOST": "10.0.0.12",
    "IMAGEBOT_HTTP_SERVICE_PORT": "8080",
    "IMAGEBOT_HTTP_PORT": "tcp://10.0.0.12:8080",
    "IMAGEBOT_HTTP_PORT_8080_TCP": "tcp://10.0.0.12:8080",
    "IMAGEBOT_HTTP_PORT_8080_TCP_PROTO": "tcp",
    "IMAGEBOT_HTTP_PORT_8080_TCP_PORT": "8080",
    "IMAGEBOT_HTTP_PORT_8080_TCP_ADDR": "10.0.0.12",
    "IMAGEBOT_SERVICE_HOST": "10.0.0.13",
    "IMAGEBOT_PORT": "tcp://10.0.0.13:80",
}


def test_platform_variables_are_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = KUBERNETES_ENV | {"IMAGEBOT_HTTP_ENABLED": "true", "IMAGEBOT_QUOTAS_MAX_N": "2"}
    with caplog.at_level(logging.WARNING, logger="bot.config"):
        settings = load_settings(write(tmp_path, "[http]\nport = 9000\n"), env=env)
    assert settings.http.enabled and settings.http.port == 9000 and settings.quotas.max_n == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.config"]
    assert len(warnings) == 1
    assert "IMAGEBOT_HTTP_SERVICE_HOST" in warnings[0] and "IMAGEBOT_HTTP_PORT" in warnings[0]
    assert "BOT_HTTP_SERVICE_HOST" not in warnings[0].replace("IMAGEBOT_", "")  # not ours
    # The file stays strict.
    with pytest.raises(ConfigError, match=r"http\.service_host: unknown key"):
        load_settings(write(tmp_path, '[http]\nservice_host = "x"\n'), env={})


def test_platform_variables_do_not_stop_check(tmp_path: Path) -> None:
    path = write(tmp_path, f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGEBOT_", "BOT_")) and k not in SECRET_ENV
    }
    env |= KUBERNETES_ENV | {"PYTHONPATH": str(ROOT), "IMAGEBOT_CONFIG": path}
    env["IMAGEBOT_LOGGING_FORMAT"] = "json"  # the warning, too, is a line of the chosen format
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # No token and no key: those checks fail (exit 1), but the configuration is valid.
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"[ok] configuration: valid ({path})"), result.stdout
    assert "unknown key" not in result.stdout + result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    ignored = [e for e in entries if "ignored environment variables" in e["message"]]
    assert len(ignored) == 1 and ignored[0]["level"] == "WARNING"
    assert "IMAGEBOT_HTTP_SERVICE_HOST" in ignored[0]["message"]


# --- secrets in error messages ---------------------------------------------------------------


SECRET_ENV = ("DISCORD_TOKEN", "OPENAI_API_KEY", "DATABASE_URL")
SECRET = "98765432109876543210"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"[provider]\napi_key = {SECRET}\n", "provider.api_key: must be a string"),
        (f"[provider]\nuser_salt = [{SECRET}]\n", "provider.user_salt: must be a string"),
        (f'[discord]\ntoken = ["{SECRET}"]\n', "discord.token: must be a string"),
        (f"[database]\nurl = {{ password = {SECRET} }}\n", "database.url: must be a string"),
    ],
)
def test_a_wrong_typed_secret_in_the_file_is_named_not_shown(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert key in str(info.value)
    assert SECRET not in str(info.value) and SECRET[:8] not in str(info.value)


@pytest.mark.parametrize("name", ["IMAGEBOT_PROVIDER_API_KEY", "IMAGEBOT_DISCORD_TOKEN"])
def test_a_wrong_typed_secret_in_the_environment_is_named_not_shown(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={name: SECRET})
    key = name.removeprefix("IMAGEBOT_").lower().replace("_", ".", 1)
    assert f"{key}: must be a string" in str(info.value)
    assert SECRET not in str(info.value)


def test_check_prints_no_secret_of_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, f"[provider]\napi_key = {SECRET}\n")
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env |= {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--config", path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "provider.api_key: must be a string" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_default_quality_outside_the_allowed_qualities_is_refused(tmp_path: Path) -> None:
    text = '[quotas]\ndefault_quality = "high"\nallowed_qualities = ["low", "medium"]\n'
    with pytest.raises(ConfigError, match=r"quotas\.default_quality: not one of"):
        load_checked(write(tmp_path, text), env={})


# --- backends --------------------------------------------------------------------------------


def test_named_backends_are_read_with_the_keys_and_checks_of_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [provider]
        fallback = ["gpu", "spare"]
        [backends.gpu]
        type = "automatic1111"
        base_url = "http://127.0.0.1:7860"
        username = "bot"
        password = "pw-SECRET"
        concurrency = 2
        enabled_guilds = [123, "456"]
        [backends.spare]
        base_url = "http://10.0.0.5:8000/v1"
        model = "dall-e-2"
        """,
    )
    settings = load_checked(path, env={})
    gpu, spare = settings.backends["gpu"], settings.backends["spare"]
    assert list(settings.backends) == ["gpu", "spare"]
    assert (gpu.type, gpu.username, gpu.concurrency) == ("automatic1111", "bot", 2)
    assert gpu.enabled_guilds == (123, 456)
    # A self-hosted server's defaults: the loaded checkpoint, time for a long render.
    assert gpu.model == "" and gpu.timeout_seconds == 600.0
    assert (spare.type, spare.model, spare.timeout_seconds) == ("openai", "dall-e-2", 120.0)
    assert settings.provider.fallback == ("gpu", "spare")
    assert "pw-SECRET" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[backends.GPU]\n", "backends.GPU: a backend's name is 1-32 of a-z"),
        ("[backends.default]\n", "backends.default: a backend's name is 1-32 of a-z, 0-9, _ and"),
        ("[backends.gpu]\nmodle = 'x'\n", "backends.gpu.modle: unknown key"),
        (
            "[backends.gpu]\nconcurrency = 99\n",
            "backends.gpu.concurrency: must be at least 0 and at most 64",
        ),
        ("[backends.gpu]\nbase_url = 'gpu:7860'\n", "backends.gpu.base_url: must be an http(s)"),
        ("backends = 3\n", "backends: must be a table"),
        ("[provider]\nfallback = ['gpu']\n", "provider.fallback: no backend 'gpu' (configured: no"),
        ("[provider]\nfallback = ['default']\n", "provider.fallback: 'default' is [provider]"),
        (
            "[provider]\nfallback = ['b', 'b']\n[backends.b]\nmodel = 'dall-e-2'\n",
            "provider.fallback: 'b' is listed twice",
        ),
        (
            "[backends.a]\nfallback = ['b']\n[backends.b]\n",
            "backends.a.fallback: only [provider] has a fallback list",
        ),
        ("[provider]\nenabled_guilds = [1]\n", "provider.enabled_guilds: [provider] serves every"),
        (
            "[provider]\ntype = 'automatic1111'\n",
            "provider.base_url: a automatic1111 backend needs its server's address, "
            "e.g. http://127.0.0.1:7860",
        ),
        (
            "[backends.comfy]\ntype = 'comfyui'\n",
            "backends.comfy.base_url: a comfyui backend needs its server's address, "
            "e.g. http://127.0.0.1:8188",
        ),
    ],
)
def test_bad_backends_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_checked(write(tmp_path, text), env={})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_the_provider_type_comes_from_the_environment(tmp_path: Path) -> None:
    env = {
        "IMAGEBOT_PROVIDER_TYPE": "automatic1111",
        "IMAGEBOT_PROVIDER_BASE_URL": "http://gpu.lan:7860",
        "IMAGEBOT_PROVIDER_USERNAME": "bot",
    }
    provider = load_checked(None, env=env).provider
    assert (provider.type, provider.base_url, provider.username) == (
        "automatic1111",
        "http://gpu.lan:7860",
        "bot",
    )
    assert provider.model == "" and provider.timeout_seconds == 600.0
