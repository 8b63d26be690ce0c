"""The command line as an operator uses it: a real subprocess against the fake image API."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import ROOT, run_cli


def config_for(tmp_path: Path, api: FakeImagesAPI, model: str = "dall-e-2", extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[provider]\nbase_url = "{api.base_url}"\nmodel = "{model}"\nmax_retries = 0\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/db/bot.db"\n{extra}',
        encoding="utf-8",
    )
    return str(path)


def image_file(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str = "JPEG") -> Path:
    buffer = io.BytesIO()
    colour = (200, 30, 30, 255)[: len(mode)]
    Image.new(mode, size, colour).save(buffer, fmt)
    path.write_bytes(buffer.getvalue())
    return path


async def one_shot(
    api: FakeImagesAPI, tmp_path: Path, *args: str, out: Path | None = None, key: str = ""
) -> tuple[int, str, str]:
    """``python -m bot ARGS --out OUT --config C`` against ``api``; OUT is tmp_path by default."""
    cfg = config_for(tmp_path, api)
    env = {"OPENAI_API_KEY": key or api.api_key}
    return await run_cli(*args, "--out", str(out or tmp_path), "--config", cfg, env=env)


def pngs_in(paths: str) -> list[Image.Image]:
    images = []
    for line in paths.splitlines():
        with Image.open(line) as image:
            image.load()
            images.append(image)
    return images


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["run", "--help"],
        ["db", "upgrade", "--help"],
        ["db", "prune", "--help"],
        ["imagine", "--help"],
        ["edit", "--help"],
        ["vary", "--help"],
    ],
)
async def test_every_command_has_help(command: list[str]) -> None:
    code, out, _ = await run_cli(*command)
    assert code == 0
    assert "usage:" in out


async def test_bad_usage_exits_2() -> None:
    code, _, err = await run_cli("imagine")
    assert code == 2
    assert "prompt" in err


async def test_run_without_secrets_says_what_is_missing(tmp_path: Path) -> None:
    code, _, err = await run_cli("run", cwd=tmp_path)
    assert code == 2
    assert "DISCORD_TOKEN" in err and "OPENAI_API_KEY" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[provider]\nmodel = 'dall-e-9'\n", "provider.model: unknown model 'dall-e-9'"),
        ('[provider.models."dall-e-2"]\nmax_n = 0\n', "provider.models.dall-e-2.max_n"),
        ('[prices]\n"gpt-image-1.low" = 0.5\n', "prices.gpt-image-1.low: must be 2"),
    ],
)
@pytest.mark.parametrize("command", [("run",), ("check",), ("imagine", "a kite")])
async def test_bad_model_or_price_stops_every_command_at_start(
    tmp_path: Path, text: str, key: str, command: tuple[str, ...]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    code, out, err = await run_cli(*command, "--config", str(bad))
    assert code == 2
    assert err.strip().count("\n") == 0 and key in err
    assert out == ""  # stopped before the command began (check prints its results)


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("sqlite:///data/bot.db", "use sqlite+aiosqlite:///PATH (the bot needs an async driver"),
        ("mysql://imagebot:pw-SECRET-42@127.0.0.1:1/db", "the bot needs an async driver"),
        ("postgresql+asyncpg://imagebot:pw-SECRET-42@127.0.0.1:1/db", "imagebot[postgres]"),
    ],
)
@pytest.mark.parametrize("command", [("run",), ("check",), ("db", "upgrade")])
async def test_a_database_url_the_bot_cannot_use_is_one_line_for_every_command(
    tmp_path: Path, url: str, fix: str, command: tuple[str, ...]
) -> None:
    env = {"DATABASE_URL": url, "DISCORD_TOKEN": "tok", "OPENAI_API_KEY": "sk-x"}
    if "asyncpg" in url:  # as where the postgres extra is not installed (CI installs it)
        blocker = tmp_path / "no-asyncpg" / "asyncpg"
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text('raise ImportError("No module named asyncpg")\n')
        env["PYTHONPATH"] = f"{blocker.parent}:{ROOT}"
    code, out, err = await run_cli(*command, env=env, cwd=tmp_path)
    assert (code, out) == (2, ""), out + err
    assert err.startswith("error: database.url (from DATABASE_URL): ") and fix in err, err
    assert err.strip().count("\n") == 0 and "pw-SECRET-42" not in err


async def test_invalid_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[provider]\nimages_per_minute = -5\n", encoding="utf-8")
    code, _, err = await run_cli("run", "--config", str(bad))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "provider.images_per_minute" in err
    assert "Traceback" not in err


async def test_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/new/bot.db"\n')
    code, _, err = await run_cli("db", "upgrade", "--config", str(cfg))
    assert code == 0, err
    assert (tmp_path / "new" / "bot.db").is_file()
    code, _, err = await run_cli("db", "upgrade", "--config", str(cfg))
    assert code == 0, err


async def test_db_prune_deletes_old_images_keeps_the_ledger_and_says_what(
    tmp_path: Path,
) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select

    from bot.app import open_storage
    from bot.config import load_settings
    from bot.db.models import Job, JobImage, JobStatus, utcnow
    from bot.generation import ImageOrder
    from bot.jobs import JobOrigin, store
    from bot.providers import Operation

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n')
    settings = load_settings(str(cfg), env={})
    ages = {"old": timedelta(days=10), "recent": timedelta(days=2)}
    async with open_storage(settings) as storage, storage.sessions.begin() as session:
        for age in ages.values():
            order = ImageOrder(Operation.EDIT, prompt="a kite", image=b"i" * 1000, mask=b"m")
            job = store.new_job(
                order,
                JobOrigin(
                    user_id=1, guild_id=None, channel_id=None, parent_channel_id=None, role_ids=()
                ),
                "dall-e-2",
                0,
                "edit",
            )
            job.status, job.finished_at = JobStatus.DELIVERED, utcnow() - age
            session.add(job)
            await session.flush()
            session.add_all(store.input_images(job.id, order, mime="image/png"))

    code, out, err = await run_cli("db", "prune", "--days", "7", "--config", str(cfg))

    assert code == 0, err
    assert "pruned 2 stored images" in out and "of 1 jobs" in out
    async with open_storage(settings) as storage, storage.sessions() as session:
        images = await session.execute(select(func.count(JobImage.id)))
        assert images.scalar_one() == 2  # the recent job's
        jobs = await session.execute(select(func.count(Job.id)))
        assert jobs.scalar_one() == 2  # the ledger keeps both

    code, _, err = await run_cli("db", "prune", "--days", "-1", "--config", str(cfg))
    assert code == 2 and "--days" in err


async def test_imagine_writes_pngs(tmp_path: Path, fake_images_api: FakeImagesAPI) -> None:
    cfg = config_for(tmp_path, fake_images_api)
    code, out, err = await run_cli(
        "imagine",
        "a white siamese cat",
        "--n",
        "2",
        "--size",
        "512x512",
        "--out",
        str(tmp_path / "out"),
        "--config",
        cfg,
        env={"OPENAI_API_KEY": fake_images_api.api_key},
    )
    assert code == 0, err
    images = pngs_in(out)
    assert [i.size for i in images] == [(512, 512), (512, 512)]
    assert all(i.format == "PNG" for i in images)
    request = fake_images_api.requests[-1]
    assert request.json is not None and request.json["prompt"] == "a white siamese cat"
    assert fake_images_api.spec_violations == []


async def test_imagine_and_edit_on_an_automatic1111_server(tmp_path: Path) -> None:
    """The one-shot commands on ``[provider] type = "automatic1111"``: no OpenAI key needed."""
    async with FakeAutomatic1111(step_delay=0.001) as a1111:
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[provider]\ntype = "automatic1111"\nbase_url = "{a1111.base_url}"\n'
            f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/db/bot.db"\n',
            encoding="utf-8",
        )
        out = str(tmp_path / "out")
        code, made, err = await run_cli(
            "imagine", "a fox", "--n", "2", "--size", "768x512", "--out", out, "--config", str(cfg)
        )
        assert code == 0, err
        assert [i.size for i in pngs_in(made)] == [(768, 512), (768, 512)]
        source = image_file(tmp_path / "photo.png", (256, 256), "RGBA", "PNG")
        code, made, err = await run_cli("vary", str(source), "--out", out, "--config", str(cfg))
        assert code == 0, err
    assert [path for path, _ in a1111.requests] == ["/sdapi/v1/txt2img", "/sdapi/v1/img2img"]


async def test_imagine_with_gpt_image_2(tmp_path: Path, fake_images_api: FakeImagesAPI) -> None:
    cfg = config_for(tmp_path, fake_images_api, model="gpt-image-2")
    code, out, err = await run_cli(
        "imagine",
        "a lighthouse",
        "--quality",
        "low",
        "--out",
        str(tmp_path),
        "--config",
        cfg,
        env={"OPENAI_API_KEY": fake_images_api.api_key},
    )
    assert code == 0, err
    assert len(pngs_in(out)) == 1


async def test_edit_with_a_mask(tmp_path: Path, fake_images_api: FakeImagesAPI) -> None:
    cfg = config_for(tmp_path, fake_images_api)
    photo = image_file(tmp_path / "photo.jpg", (1200, 900))
    mask = Image.new("L", (1200, 900), 0)
    mask.paste(255, (500, 400, 700, 600))  # white = repaint
    mask.save(tmp_path / "mask.png")
    code, out, err = await run_cli(
        "edit",
        str(photo),
        "a red balloon",
        "--mask",
        str(tmp_path / "mask.png"),
        "--size",
        "256x256",
        "--out",
        str(tmp_path / "o"),
        "--config",
        cfg,
        env={"OPENAI_API_KEY": fake_images_api.api_key},
    )
    assert code == 0, err
    assert [i.size for i in pngs_in(out)] == [(256, 256)]
    request = fake_images_api.requests[-1]
    sent_image, sent_mask = request.file("image"), request.file("mask")
    assert sent_image is not None and sent_mask is not None
    with Image.open(io.BytesIO(sent_image.data)) as a, Image.open(io.BytesIO(sent_mask.data)) as m:
        assert a.size == m.size == (256, 256)
        assert m.mode == "RGBA"
        assert m.getpixel((128, 128))[3] == 0  # the marked centre is the area to edit
        assert m.getpixel((5, 128))[3] == 255


async def test_edit_without_mask_or_transparency_explains(
    tmp_path: Path, fake_images_api: FakeImagesAPI
) -> None:
    photo = image_file(tmp_path / "photo.jpg", (600, 600))
    code, _, err = await one_shot(fake_images_api, tmp_path, "edit", str(photo), "a hat")
    assert code == 2
    assert "transparent" in err.lower() and "pass --mask MASK" in err
    assert "upload" not in err.lower()  # worded for a Discord member elsewhere
    assert "Traceback" not in err
    assert fake_images_api.requests == []


async def test_vary_uses_native_variations(tmp_path: Path, fake_images_api: FakeImagesAPI) -> None:
    cfg = config_for(tmp_path, fake_images_api)
    photo = image_file(tmp_path / "wide.webp", (1600, 900), fmt="WEBP")
    code, out, err = await run_cli(
        "vary",
        str(photo),
        "--n",
        "3",
        "--out",
        str(tmp_path / "v"),
        "--config",
        cfg,
        env={"OPENAI_API_KEY": fake_images_api.api_key},
    )
    assert code == 0, err
    assert len(pngs_in(out)) == 3
    assert fake_images_api.requests[-1].path.endswith("/images/variations")


@pytest.mark.parametrize(
    ("setup", "cause"),
    [
        ("wrong key", "HTTP 401 invalid_api_key (invalid_request_error): Incorrect API key"),
        ("no model", "HTTP 404 model_not_found (invalid_request_error): The model `dall-e-2`"),
        ("billing", "HTTP 400 billing_hard_limit_reached (billing_limit_user_error): Billing"),
        ("safety", "HTTP 400 content_policy_violation (image_generation_user_error)"),
        ("outage", "HTTP 503 (server_error): The engine is currently overloaded"),
    ],
)
async def test_provider_failures_tell_the_operator_the_cause(
    tmp_path: Path, fake_images_api: FakeImagesAPI, setup: str, cause: str
) -> None:
    """At the command line the user is the operator: the provider's status, code and message,
    not the members' "the operator has been told"; still one line and no secret."""
    key = fake_images_api.api_key
    if setup == "wrong key":
        key = "sk-wrong-key-0123456789wxyz"
    elif setup == "no model":
        del fake_images_api.models["dall-e-2"]
    elif setup == "billing":
        fake_images_api.billing_next()
    elif setup == "safety":
        fake_images_api.safety_next()
    else:
        fake_images_api.fail_next(status=503, times=5)
    code, out, err = await one_shot(fake_images_api, tmp_path, "imagine", "something", key=key)
    assert code == 1
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert cause in err
    assert "has been told" not in err and "Traceback" not in err
    assert key not in err + out and "wxyz" not in err  # the echoed tail of the key is scrubbed
    assert out == ""


@pytest.mark.parametrize("where", ["a file", "inside a file", "not writable"])
async def test_out_that_cannot_take_the_images_is_refused_before_sending(
    tmp_path: Path, fake_images_api: FakeImagesAPI, where: str
) -> None:
    """The images are paid for when the provider makes them: a bad --out is found first."""
    (tmp_path / "notes.txt").write_text("not a folder")
    if where == "a file":
        out = tmp_path / "notes.txt"
    elif where == "inside a file":
        out = tmp_path / "notes.txt" / "images"
    else:
        out = unwritable_folder(tmp_path)
    code, stdout, err = await one_shot(fake_images_api, tmp_path, "imagine", "a kite", out=out)
    assert code == 2
    assert err.startswith(f"error: --out {out}: ") and err.strip().count("\n") == 0, err
    assert stdout == ""
    assert fake_images_api.requests == []


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write to: read-only for a normal user; root writes through
    permissions, so for root a folder in /sys (a read-only mount in containers)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    probe = locked / "probe"
    try:
        probe.mkdir()
    except OSError:
        return locked / "images"
    probe.rmdir()
    try:
        Path("/sys/imagebot-test-out").mkdir()
    except OSError:
        return Path("/sys/imagebot-test-out")
    Path("/sys/imagebot-test-out").rmdir()
    pytest.skip("no folder here is read-only for this user")


@pytest.mark.parametrize("command", ["imagine", "edit"])
async def test_empty_prompt_is_refused_before_sending(
    tmp_path: Path, fake_images_api: FakeImagesAPI, command: str
) -> None:
    photo = image_file(tmp_path / "photo.png", (64, 64), mode="RGBA", fmt="PNG")
    inputs = [str(photo)] if command == "edit" else []
    code, out, err = await one_shot(fake_images_api, tmp_path, command, *inputs, "   ")
    assert code == 2
    assert err == "error: The prompt is empty. Describe the image you want.\n"
    assert out == ""
    assert fake_images_api.requests == []


def test_cli_wordings_are_for_real_errors_and_use_only_their_params() -> None:
    """Each CLI wording replaces an existing error's text and needs no parameter it lacks."""
    import string

    import bot.discord.errors  # noqa: F401 - every BotError subclass exists after this
    from bot.cli import CLI_TEMPLATES
    from bot.errors import BotError

    def every(cls: type[BotError]) -> list[type[BotError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in every(sub))]

    templates = {cls.key: cls.template for cls in every(BotError)}
    for key, wording in CLI_TEMPLATES.items():
        assert key in templates, key
        names = {name for _, name, _, _ in string.Formatter().parse(wording) if name}
        known = {name for _, name, _, _ in string.Formatter().parse(templates[key]) if name}
        assert names <= known, key


async def test_bad_inputs_exit_2(tmp_path: Path, fake_images_api: FakeImagesAPI) -> None:
    cfg = config_for(tmp_path, fake_images_api)
    env = {"OPENAI_API_KEY": fake_images_api.api_key}
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    code, _, err = await run_cli("vary", str(text_file), "--config", cfg, env=env)
    assert code == 2 and "image" in err.lower()
    code, _, err = await run_cli("vary", str(tmp_path / "missing.png"), "--config", cfg, env=env)
    assert code == 2 and "no such file" in err
    code, _, err = await run_cli("imagine", "x", "--n", "11", "--config", cfg, env=env)
    assert code == 2 and "10" in err
    code, _, err = await run_cli("imagine", "x", "--size", "999x999", "--config", cfg, env=env)
    assert code == 2 and "1024x1024" in err
    assert fake_images_api.requests == []


FORMAT_NAMES = re.compile(r"\b(PNG|JPEG|WebP|GIF|BMP|TIFF|AVIF|HEIC)\b")


async def test_the_format_error_lists_what_the_readme_and_help_list(
    tmp_path: Path, fake_images_api: FakeImagesAPI
) -> None:
    """An operator told "pass a picture as ..." must not meet another list in --help or the
    README (it once offered AVIF, which neither names and not every Pillow reads)."""
    cfg = config_for(tmp_path, fake_images_api)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    env = {"OPENAI_API_KEY": fake_images_api.api_key}
    code, _, err = await run_cli("vary", str(text_file), "--config", cfg, env=env)
    assert code == 2 and "isn't an image" in err
    in_error = FORMAT_NAMES.findall(err)
    code, help_text, _ = await run_cli("vary", "--help")
    assert code == 0
    image_help = re.search(r"image file \(([^)]*)\)", " ".join(help_text.split()))
    assert image_help is not None
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    accepts = re.search(r"`bot/imaging` accepts (.*?),\s+applies", readme, re.DOTALL)
    assert accepts is not None
    assert in_error == FORMAT_NAMES.findall(image_help.group(1))
    assert in_error == FORMAT_NAMES.findall(accepts.group(1))
    assert in_error[:2] == ["PNG", "JPEG"]


async def test_the_imagebot_console_script_runs_from_the_venv() -> None:
    """README "Command line": `imagebot` is `python -m bot` once the package is installed."""
    script = Path(sys.executable).parent / "imagebot"
    assert script.is_file(), "pip install -e . installs the imagebot script next to python"
    process = await asyncio.create_subprocess_exec(
        str(script), "imagine", "--help", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    assert "usage: imagebot imagine" in out.decode()


def test_the_license_file_is_the_license_pyproject_declares() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 imagebot contributors" in license_text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in license_text
