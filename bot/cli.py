"""Command line: ``python -m bot <command>``.

Exit codes (:mod:`bot.exit_codes`) are part of the interface. Known errors print one line; only
unexpected ones print a traceback. What each command does is in :mod:`bot.commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from bot import commands as handlers
from bot.app import Catalogues, build_catalogues
from bot.config import Settings, load_settings
from bot.errors import BotError, ConfigError, UsageError
from bot.exit_codes import EXIT_FAILURE, EXIT_USAGE
from bot.imaging import ImageError
from bot.logs import configure_logging, held_logs, replay
from bot.providers import UnsupportedOption

log = logging.getLogger("bot")

Handler = Callable[[argparse.Namespace, Settings, Catalogues], Coroutine[Any, Any, int]]


def _config_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $IMAGEBOT_CONFIG, else ./config.toml)",
    )
    return parent


def _generation_options(parser: argparse.ArgumentParser, *, prompt_options: bool) -> None:
    parser.add_argument("--n", type=int, default=1, help="number of images (default 1)")
    parser.add_argument("--size", help="image size, e.g. 1024x1024 (default: the model's)")
    parser.add_argument("--model", help="model (default: provider.model from the config)")
    if prompt_options:
        parser.add_argument("--quality", help="quality, e.g. low, medium, high, hd")
    parser.add_argument(
        "--out", type=Path, default=Path("."), help="folder for the PNG files (default: .)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Self-hosted Discord bot for AI image generation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = _config_option()

    run = commands.add_parser(
        "run", parents=[config], help="start the bot", description="Start the Discord bot."
    )
    run.set_defaults(handler=handlers.run_bot)

    check = commands.add_parser(
        "check",
        parents=[config],
        help="check the configuration, database, image API key and Discord token",
        description=(
            "Check that the configuration is valid, the database reachable and migrated, the "
            "image API accepts the key and Discord the token; print the invite URL. Exit code 0 "
            "only when everything passes."
        ),
    )
    check.set_defaults(handler=handlers.check)

    sync = commands.add_parser(
        "sync",
        parents=[config],
        help="sync slash commands with Discord",
        description="Register the slash commands with Discord (globally, or to dev_guild_id).",
    )
    sync.set_defaults(handler=handlers.sync)

    db = commands.add_parser("db", help="database tasks", description="Database tasks.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade",
        parents=[config],
        help="apply pending migrations",
        description="Apply pending database migrations (the bot also does this at start).",
    )
    upgrade.set_defaults(handler=handlers.db_upgrade)
    prune = db_commands.add_parser(
        "prune",
        parents=[config],
        help="delete stored images past their retention now",
        description=(
            "Delete the stored images of finished jobs older than [storage] retention_days (or "
            "--days), of failed and cancelled jobs, and expired interaction tokens; give the "
            "space back. The usage ledger is kept. The running bot also does this every hour."
        ),
    )
    prune.add_argument(
        "--days",
        type=_days,
        metavar="N",
        help="keep the images of the last N days (default: [storage] retention_days)",
    )
    prune.set_defaults(handler=handlers.db_prune)

    imagine = commands.add_parser(
        "imagine",
        parents=[config],
        help="make images from a prompt (no Discord)",
        description="Make images from a prompt and write them as PNG files.",
    )
    imagine.add_argument("prompt", help="what to draw")
    imagine.add_argument("--style", help="style (dall-e-3: vivid or natural)")
    imagine.add_argument("--background", help="background (GPT image models)")
    _generation_options(imagine, prompt_options=True)
    imagine.set_defaults(handler=handlers.imagine)

    edit = commands.add_parser(
        "edit",
        parents=[config],
        help="repaint part of an image (no Discord)",
        description=(
            "Repaint the transparent part of IMAGE (or the part MASK marks) to match PROMPT."
        ),
    )
    edit.add_argument("image", type=Path, help="image file (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    edit.add_argument("prompt", help="the whole new image, not only the repainted part")
    edit.add_argument(
        "--mask", type=Path, help="mask: transparent (or, without alpha, white) = repaint"
    )
    edit.add_argument("--fit", choices=["crop", "pad"], help="how a non-square image is squared")
    _generation_options(edit, prompt_options=True)
    edit.set_defaults(handler=handlers.edit)

    vary = commands.add_parser(
        "vary",
        parents=[config],
        help="make variations of an image (no Discord)",
        description="Make variations of IMAGE and write them as PNG files.",
    )
    vary.add_argument("image", type=Path, help="image file (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    vary.add_argument("--fit", choices=["crop", "pad"], help="how a non-square image is squared")
    _generation_options(vary, prompt_options=False)
    vary.set_defaults(handler=handlers.vary)
    return parser


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more (got {text!r})")
    return days


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with held_logs() as warnings:
        try:
            settings = load_settings(args.config)
            catalogues = build_catalogues(settings)
        except ConfigError as exc:
            for warning in warnings:
                print(f"warning: {warning.getMessage()}", file=sys.stderr)
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    configure_logging(
        settings.logging.level,
        secrets=(settings.discord.token, settings.provider.api_key),
        json_format=settings.logging.format == "json",
    )
    replay(warnings)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args, settings, catalogues))
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except (ConfigError, UsageError, ImageError, UnsupportedOption) as exc:
        # Fixable by changing the command, the config or the input file.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
