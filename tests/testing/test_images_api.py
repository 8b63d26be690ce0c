"""``python -m bot.testing.images_api``: the fake image API alone, and the one-shot CLI on it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from PIL import Image

from bot.testing.openai_api import _base64, _json_answer
from tests.bot_process import ROOT

#: Secrets of the developer's shell: the printed command must carry what it needs itself.
_SECRETS = {"DISCORD_TOKEN", "OPENAI_API_KEY", "IMAGEBOT_CONFIG"}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    return env | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@asynccontextmanager
async def images_api(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.testing.images_api",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def printed(process: asyncio.subprocess.Process) -> dict[str, str]:
    """What it printed up to "Ctrl-C stops it.": its URL, key and command to paste."""
    assert process.stdout is not None
    seen: dict[str, str] = {}
    lines: list[str] = []
    while not lines or lines[-1] != "Ctrl-C stops it.":
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line, f"it exited; printed: {lines}"
        lines.append(line.decode().rstrip("\n"))
    for line in lines:
        name, sep, value = line.strip().partition(": ")
        if sep and name in {"URL", "API key"}:
            seen[name] = value.strip()
    seen["command"] = lines[
        lines.index("Try the one-shot CLI against it, in another terminal:") + 1
    ]
    return seen


async def test_the_printed_command_makes_an_image_and_sigterm_stops_it(tmp_path: Path) -> None:
    async with images_api() as process:
        shown = await printed(process)
        assert shown["URL"].startswith("http://127.0.0.1:") and shown["URL"].endswith("/v1")
        assert shown["API key"] in shown["command"] and shown["URL"] in shown["command"]
        cli = await asyncio.create_subprocess_shell(
            shown["command"].strip(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(),
            cwd=tmp_path,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err.decode()
        [written] = out.decode().split()
        image_path = tmp_path / written
        assert image_path.parent == tmp_path / "fake-images"
        with Image.open(io.BytesIO(image_path.read_bytes())) as image:
            assert image.format == "PNG"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 5) == 0


async def test_a_given_port_and_a_port_in_use(tmp_path: Path) -> None:
    async with images_api("--port", "0") as first:
        port = (await printed(first))["URL"].rsplit(":", 1)[1].split("/")[0]
        async with images_api("--port", port) as second:
            assert second.stderr is not None
            assert await asyncio.wait_for(second.wait(), 20) == 2
            error = (await second.stderr.read()).decode()
            assert error.startswith(f"error: cannot listen on 127.0.0.1:{port} (")
            assert error.count("\n") == 1
        first.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(first.wait(), 5) == 0


def test_an_answer_is_the_json_of_its_payload_with_the_images_text_put_in_as_is() -> None:
    """The fake writes the megabytes of base64 into its JSON without the encoder's scan: the
    answer still parses to exactly the payload, whatever its other texts say."""
    image = _base64(b"\x89PNG fake image bytes" * 1000)
    payload = {
        "created": 1,
        "data": [
            {"b64_json": image, "revised_prompt": 'a "quoted" \\ prompt, "placeholder-0"'},
            {"b64_json": "written by a test: not base64 \u00e9"},
        ],
    }
    assert json.loads(_json_answer(payload)) == payload
    assert _json_answer(payload) == json.dumps(payload).encode()
