"""The command line as an operator uses it: a real subprocess against the fake image API."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.openai_api import FakeImagesAPI
from tests.fakes.process import run_cli


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
    if "asyncpg" in url and importlib.util.find_spec("asyncpg"):
        pytest.skip("the postgres extra is installed here")
    env = {"DATABASE_URL": url, "DISCORD_TOKEN": "tok", "OPENAI_API_KEY": "sk-x"}
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
    cfg = config_for(tmp_path, fake_images_api)
    photo = image_file(tmp_path / "photo.jpg", (600, 600))
    code, _, err = await run_cli(
        "edit",
        str(photo),
        "a hat",
        "--out",
        str(tmp_path),
        "--config",
        cfg,
        env={"OPENAI_API_KEY": fake_images_api.api_key},
    )
    assert code == 2
    assert "transparent" in err.lower() and "mask" in err.lower()
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
    ("setup", "expected_code", "expected"),
    [
        ("safety", 1, "safety system"),
        ("billing", 1, "operator"),
        ("outage", 1, "not responding"),
    ],
)
async def test_provider_failures_are_one_clear_line(
    tmp_path: Path, fake_images_api: FakeImagesAPI, setup: str, expected_code: int, expected: str
) -> None:
    cfg = config_for(tmp_path, fake_images_api)
    if setup == "safety":
        fake_images_api.safety_next()
    elif setup == "billing":
        fake_images_api.billing_next()
    else:
        fake_images_api.fail_next(status=503, times=5)
    code, out, err = await run_cli(
        "imagine",
        "something",
        "--out",
        str(tmp_path),
        "--config",
        cfg,
        env={"OPENAI_API_KEY": fake_images_api.api_key},
    )
    assert code == expected_code
    assert expected in err
    assert "Traceback" not in err
    assert fake_images_api.api_key not in err + out
    assert out == ""


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
