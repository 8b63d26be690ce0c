"""``python -m bot.testing.images_api``: the fake image API alone, to try the one-shot CLI on.

It is the fake the tests and ``python -m bot demo`` use: it answers like the OpenAI Images API
(key check, per-model rules, error bodies) with made-up pictures, so an operator can see
``python -m bot imagine/edit/vary`` work before paying for a key. It prints its URL, its key and a
command to paste, and runs until Ctrl-C or SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Sequence

from bot.exit_codes import EXIT_OK, EXIT_USAGE
from bot.testing.openai_api import FakeImagesAPI


def try_command(api: FakeImagesAPI) -> str:
    """The one-shot CLI pointed at ``api`` through the environment (no config file needed)."""
    return (
        f"IMAGEBOT_PROVIDER_BASE_URL={api.base_url} OPENAI_API_KEY={api.api_key} "
        f"{shlex.quote(sys.executable)} -m bot imagine 'a lighthouse at dusk' --out fake-images"
    )


async def serve(host: str, port: int, say: Callable[[str], None] = print) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises
            loop.add_signal_handler(number, stop.set)
    api = FakeImagesAPI(host=host, port=port)
    try:
        await api.__aenter__()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port} ({exc.strerror})", file=sys.stderr)
        return EXIT_USAGE
    try:
        say("Fake OpenAI Images API: made-up pictures, no account, no network, no bill.")
        say(f"  URL:     {api.base_url}")
        say(f"  API key: {api.api_key}")
        say(f"  models:  {', '.join(sorted(api.models))}")
        say("Try the one-shot CLI against it, in another terminal:")
        say(f"  {try_command(api)}")
        say("Ctrl-C stops it.")
        await stop.wait()
    finally:
        await api.__aexit__(None, None, None)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.testing.images_api",
        description="Run the fake OpenAI Images API the tests use, to try the one-shot CLI.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(serve(args.host, args.port, lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
