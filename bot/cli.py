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
from bot.generation import PromptEmpty
from bot.imaging import ACCEPTED_NAMES, ImageError
from bot.logs import configure_logging, held_logs, replay
from bot.providers import ProviderError, UnsupportedOption
from bot.providers.errors import scrub

log = logging.getLogger("bot")

FIT_HELP = "how an image is fitted to the size the model makes (default: [images] fit)"

Handler = Callable[[argparse.Namespace, Settings, Catalogues], Coroutine[Any, Any, int]]

#: The operator's wording of errors whose English text speaks to a Discord member ("upload a
#: mask too", "the operator has been told"), keyed by error key and formatted with the error's
#: params. On the command line the user is the operator: the flags and config keys to change.
CLI_TEMPLATES: dict[str, str] = {
    "image.empty": "That file is empty (0 bytes).",
    "image.too_large": "That file is {size_mb:g} MB; the limit is {limit_mb:g} MB "
    "([images] max_upload_mb).",
    "image.not_an_image": "That file isn't an image; pass a picture as {formats}.",
    "image.corrupt": "That image file is damaged or incomplete. Open it in an image editor "
    "and save a new copy.",
    "image.too_many_pixels": "That image is {width}x{height} pixels ({megapixels:g} "
    "megapixels); the limit is {limit_megapixels:g} megapixels ([images] max_pixels).",
    "image.mask_full": "The mask marks the whole picture as the area to change. Leave the part "
    "to keep opaque (or black); for an entirely new picture use `imagine` instead.",
    "image.mask_not_black_and_white": "The mask should be black and white (white marks the "
    "area to change) or have transparent areas, but it looks like a photo. Is --mask the "
    "picture itself?",
    "image.edit_needs_mask": "This image has no transparent pixels, so nothing is marked to "
    "change. Erase the area to change in an image editor so it becomes transparent and save "
    "it as PNG, or pass --mask MASK: a black image of the same size where white marks the "
    "area to change.",
    "image.fully_transparent": "This image is transparent everywhere, so nothing of it would "
    "be kept. Erase only the area to change; for an entirely new picture use `imagine` "
    "instead.",
    "provider.operator_problem": "The image service refused the request; the configuration "
    "or the account must change ([provider] api_key, model or base_url; billing).",
}


def operator_text(error: BotError, secrets: Sequence[str] = ()) -> str:
    """What the operator at the command line reads about ``error``: the CLI wording, and for a
    provider failure its cause as the log has it (HTTP status, the provider's code and
    message), which members never see. Secrets are scrubbed once more here."""
    template = CLI_TEMPLATES.get(error.key)
    text = error.worded(template) if template and error._message is None else error.message
    if isinstance(error, ProviderError) and error.detail != error.message:
        text = f"{text} Cause: {error.detail}"
    return scrub(text, secrets)


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


def _program_name() -> str:
    """``imagebot`` when run as the installed script, else ``python -m bot`` (as documented)."""
    name = Path(sys.argv[0]).name
    return name if name == "imagebot" else "python -m bot"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="Self-hosted Discord bot for AI image generation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = _config_option()

    run = commands.add_parser(
        "run",
        parents=[config],
        help="start the bot",
        description=(
            "Start the Discord bot: the gateway connection and the jobs, in one process. On "
            "PostgreSQL a bot can run as several processes: gateways for some of the shards "
            "(--shard-count, --shard-ids), with or without jobs (--no-worker), and workers."
        ),
    )
    run.add_argument(
        "--shard-count",
        type=int,
        metavar="N",
        help="how many gateway shards the bot has in all (default: one connection)",
    )
    run.add_argument(
        "--shard-ids",
        metavar="IDS",
        help="the shards this process connects, e.g. 0,1 (default: all; needs --shard-count)",
    )
    run.add_argument(
        "--no-worker",
        action="store_true",
        help="take requests and queue them, run no jobs: workers run them (needs PostgreSQL)",
    )
    run.set_defaults(handler=handlers.run_bot)

    worker = commands.add_parser(
        "worker",
        parents=[config],
        help="run queued jobs, without a gateway connection (needs PostgreSQL)",
        description=(
            "Run the jobs that gateway processes queue, and post their results over Discord's "
            "REST API; connects to no gateway shard. Start as many as the image API's limits "
            "allow; they share the queue and the rate limit in PostgreSQL."
        ),
    )
    worker.set_defaults(handler=handlers.run_worker)

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
    copy = db_commands.add_parser(
        "copy",
        parents=[config],
        help="copy the database into a new PostgreSQL database (stop the bot first)",
        description=(
            "Copy every table of the bot's database (default: [database] url) into a new, empty "
            "PostgreSQL database, migrated first, and check every table's row count. Stop the "
            "bot first and keep it stopped until [database] url names the new database. Jobs "
            "that were running at the stop are reported interrupted by the first process that "
            "runs jobs on PostgreSQL; queued jobs wait there in their fair order."
        ),
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the new database, postgresql+asyncpg://USER@HOST/DB (the password may be left "
        "out and set in PGPASSWORD instead, so it stays out of the shell's history)",
    )
    copy.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the database to copy (default: [database] url); at the latest migration",
    )
    copy.set_defaults(handler=handlers.db_copy)

    usage = commands.add_parser(
        "usage", help="usage reports", description="Usage reports from the usage ledger."
    )
    usage_commands = usage.add_subparsers(
        dest="usage_command", required=True, metavar="USAGE_COMMAND"
    )
    report = usage_commands.add_parser(
        "report",
        parents=[config],
        help="a month's images and spend across all servers and direct messages",
        description=(
            "Print a month's totals (requests, images, spend), requests by outcome and the top "
            "servers by spend, across all servers and direct messages. Months are UTC, as the "
            "[quotas] total_spend caps count them."
        ),
    )
    report.add_argument(
        "--month", metavar="YYYY-MM", help="the month to report (default: this month, UTC)"
    )
    report.add_argument(
        "--csv", type=Path, metavar="FILE", help="also write one row per server to FILE"
    )
    report.add_argument(
        "--chart",
        type=Path,
        metavar="FILE",
        help="also write a PNG chart to FILE: spend per day and the top servers",
    )
    report.set_defaults(handler=handlers.usage_report)

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
    edit.add_argument("image", type=Path, help=f"image file ({ACCEPTED_NAMES})")
    edit.add_argument("prompt", help="the whole new image, not only the repainted part")
    edit.add_argument(
        "--mask", type=Path, help="mask: transparent (or, without alpha, white) = repaint"
    )
    edit.add_argument("--fit", choices=["crop", "pad"], help=FIT_HELP)
    _generation_options(edit, prompt_options=True)
    edit.set_defaults(handler=handlers.edit)

    vary = commands.add_parser(
        "vary",
        parents=[config],
        help="make variations of an image (no Discord)",
        description="Make variations of IMAGE and write them as PNG files.",
    )
    vary.add_argument("image", type=Path, help=f"image file ({ACCEPTED_NAMES})")
    vary.add_argument("--fit", choices=["crop", "pad"], help=FIT_HELP)
    _generation_options(vary, prompt_options=False)
    vary.set_defaults(handler=handlers.vary)

    demo = commands.add_parser(
        "demo",
        help="see the bot work against a fake Discord and image API (no accounts needed)",
        description=(
            "Run the real bot against a built-in fake Discord and fake image API on 127.0.0.1 "
            "and play a short member session: /imagine, a Vary button, /edit with a mask, a "
            "reaction and a quota refusal. Prints what each member saw and writes the images "
            "to --out. Needs no token, no API key and no network; reads no config file. Exit "
            "code 0 only when every step did what a member expects."
        ),
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="folder for the images and the bot's log (default: ./demo-out)",
    )
    demo.add_argument(
        "--database",
        type=Path,
        metavar="FILE",
        help="SQLite file to use and keep (default: a temporary one, deleted at the end)",
    )
    return parser


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more (got {text!r})")
    return days


def demo(args: argparse.Namespace) -> int:
    """``demo`` makes its own settings: no config file is read and no secret from the
    environment, so it works before anything is set up, whatever the shell holds."""
    from bot.testing.demo import run_demo

    try:
        handlers.prepare_out(args.out)
        return asyncio.run(run_demo(args.out, args.database))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return demo(args)
    with held_logs() as warnings:
        try:
            settings = load_settings(args.config)
            catalogues = build_catalogues(settings)
        except ConfigError as exc:
            for warning in warnings:
                print(f"warning: {warning.getMessage()}", file=sys.stderr)
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    secrets = (settings.discord.token, settings.provider.api_key, settings.alerts.webhook_url)
    configure_logging(
        settings.logging.level,
        secrets=secrets,
        json_format=settings.logging.format == "json",
    )
    replay(warnings)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args, settings, catalogues))
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except (ConfigError, UsageError, ImageError, UnsupportedOption, PromptEmpty) as exc:
        # Fixable by changing the command, the config or the input file.
        print(f"error: {operator_text(exc, secrets)}", file=sys.stderr)
        return EXIT_USAGE
    except BotError as exc:
        print(f"error: {operator_text(exc, secrets)}", file=sys.stderr)
        return EXIT_FAILURE
