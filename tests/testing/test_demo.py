"""``python -m bot demo`` as a newcomer runs it: the real bot against the fakes, no accounts."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.bot_process import run_cli

STEPS = ["quota", "imagine", "vary", "edit", "reaction", "refusal"]
RESULTS = [
    "1-imagine-1.png",
    "1-imagine-2.png",
    "2-vary-1.png",
    "2-vary-2.png",
    "3-edit-1.png",
    "4-reaction-1.png",
    "4-reaction-2.png",
]
#: What the shell of someone trying the demo may hold: none of it may be read or matter.
SHELL = {
    "DISCORD_TOKEN": "real-token-that-must-not-be-read",
    "OPENAI_API_KEY": "sk-real-key-that-must-not-be-read",
    "IMAGEBOT_PROVIDER_BASE_URL": "https://api.openai.com/v1",
}


async def test_the_demo_plays_every_step_and_writes_the_images(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("this is [not toml", encoding="utf-8")
    out = tmp_path / "demo-out"
    code, stdout, stderr = await run_cli("demo", "--out", str(out), env=SHELL, cwd=tmp_path)
    assert code == 0, stdout + stderr
    assert stderr == ""  # no library noise, no warnings: the transcript is the whole output
    for number, step in enumerate(STEPS, start=1):
        assert f"[{number}/{len(STEPS)}] {step}:" in stdout
    assert stdout.count("\n   ok\n") == len(STEPS)
    assert "Every step did what a member expects" in stdout
    # The refusal is the exact text the member reads, sent before anything is paid for.
    assert (
        "bob sees privately:\n     You have used your 5 images for today (0 left, you asked "
        "for 1). Your limit resets " in stdout
    )
    assert "everyone sees in #general:" in stdout and "[files] image_1.png (256x256)" in stdout
    assert "[buttons] Vary 1 | Vary 2 | U1 | U2 | Redo | Remix | Params | Delete" in stdout
    for name in RESULTS:
        with Image.open(io.BytesIO((out / name).read_bytes())) as image:
            assert image.format == "PNG" and image.size == (256, 256)
    assert sorted(p.name for p in out.glob("[0-9]-*-[0-9].png")) == RESULTS
    log = (out / "bot.log").read_text(encoding="utf-8")
    assert "synced" in log and "delivered as message" in log
    for secret in SHELL.values():
        assert secret not in stdout + log


async def test_the_default_out_folder_is_demo_out(tmp_path: Path) -> None:
    code, stdout, stderr = await run_cli("demo", cwd=tmp_path)
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in (tmp_path / "demo-out").glob("[0-9]-*-[0-9].png")) == RESULTS


async def test_an_out_that_is_a_file_exits_2_with_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file", encoding="utf-8")
    code, stdout, stderr = await run_cli("demo", "--out", str(taken))
    assert (code, stdout) == (2, "")
    assert stderr == f"error: --out {taken}: is not a folder\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
async def test_an_out_that_cannot_be_written_exits_2_with_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, stdout, stderr = await run_cli("demo", "--out", str(locked))
    assert (code, stdout) == (2, "")
    assert stderr == f"error: --out {locked}: cannot write there (Permission denied)\n"


async def test_a_step_that_fails_is_named_with_what_the_member_saw_and_exits_1(
    tmp_path: Path,
) -> None:
    # The fake image API answers the /edit's request with an HTTP 500.
    env = {"IMAGEBOT_DEMO_FAIL": "edit"}
    code, stdout, stderr = await run_cli("demo", "--out", str(tmp_path), env=env)
    assert code == 1, stdout + stderr
    assert "[4/6] edit:" in stdout and "[5/6]" not in stdout  # the rest is not played
    assert "   FAILED: expected a public result with the edited image" in stdout
    assert (
        "seen this, privately: 'The image service is not responding right now; please try "
        "again later.'" in stdout
    )
    assert "The demo failed at step 4 (edit)" in stdout
    assert not (tmp_path / "3-edit-1.png").exists()


async def test_a_failed_reaction_is_seen_in_the_channel(tmp_path: Path) -> None:
    env = {"IMAGEBOT_DEMO_FAIL": "reaction"}
    code, stdout, stderr = await run_cli("demo", "--out", str(tmp_path), env=env)
    assert code == 1, stdout + stderr
    assert "seen this, in #general: '@alice The image service is not responding" in stdout
    assert "The demo failed at step 5 (reaction)" in stdout
