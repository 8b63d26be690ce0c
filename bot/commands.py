"""What each CLI command does, once arguments and settings are parsed (see bot.cli)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bot.app import (
    Catalogues,
    open_engine,
    open_storage,
    process_info,
    run_discord_bot,
    sync_commands,
)
from bot.config import API_KEY_ENV, TOKEN_ENV, Settings, resolve_config_path
from bot.db import create_engine, upgrade_database
from bot.errors import UsageError
from bot.exit_codes import EXIT_FAILURE, EXIT_OK
from bot.generation import ImageOrder, check_order, make_images
from bot.imaging import check_declared_size
from bot.providers import ImageResult, Operation

log = logging.getLogger("bot")


def require_secrets(settings: Settings, *, discord_token: bool, api_key: bool = True) -> None:
    """Stop with one line that says which secret is missing and where to put it."""
    missing = []
    if discord_token and not settings.discord.token:
        missing.append(f"a Discord bot token ({TOKEN_ENV} or [discord] token)")
    # Only the OpenAI API needs a key; a self-hosted server ([provider] type) has none or a login.
    if api_key and settings.provider.type == "openai" and not settings.provider.api_key:
        missing.append(f"an image API key ({API_KEY_ENV} or [provider] api_key)")
    if missing:
        raise UsageError("missing " + " and ".join(missing) + "; see config.example.toml")


async def db_upgrade(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    engine = create_engine(settings.database.url)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
    print("database is up to date")
    return EXIT_OK


async def db_prune(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    from bot.jobs.retention import prune

    days = settings.storage.retention_days if args.days is None else args.days
    async with open_storage(settings) as storage:
        pruned = await prune(storage, timedelta(days=days))
    print(f"{pruned} (kept: the last {days} days, and the usage ledger)")
    return EXIT_OK


async def db_copy(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    from bot.ops.dbcopy import copy_bot_database

    return await copy_bot_database(settings, args.source or settings.database.url, args.to)


async def usage_report(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    from bot.ops.usage_report import usage_report as report

    # The report is the output: Alembic's INFO lines about a migration would bury it.
    logging.disable(logging.INFO)
    try:
        return await report(settings, args.month, args.csv, args.chart)
    finally:
        logging.disable(logging.NOTSET)


async def run_bot(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    process = process_info(
        settings,
        role="gateway" if args.no_worker else "both",
        shard_count=args.shard_count,
        shard_ids=args.shard_ids,
    )
    require_secrets(settings, discord_token=True, api_key=process.runs_jobs)
    await run_discord_bot(settings, catalogues, process=process)
    return EXIT_OK


async def run_worker(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    process = process_info(settings, role="worker")
    require_secrets(settings, discord_token=True)
    await run_discord_bot(settings, catalogues, process=process)
    return EXIT_OK


async def sync(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    require_secrets(settings, discord_token=True, api_key=False)
    await sync_commands(settings, catalogues)
    print("application commands synced")
    return EXIT_OK


def read_input_file(path: Path, what: str, limit: int) -> bytes:
    """An input image from disk, size-checked before it is read."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror}") from None
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a folder, not an image file")
    check_declared_size(size, limit)
    return path.read_bytes()


def prepare_out(out: Path) -> None:
    """Make sure the images can be written to ``out`` before the provider is paid to make them.

    The folder is created (as writing would) and a scratch file written and removed in it, which
    is the only test of writability that also holds for root and read-only mounts.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"--out {out}: is not a folder") from None
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror})") from None


def write_results(result: ImageResult, out: Path, stem: str) -> list[Path]:
    """Write each image to ``out`` under a name that never overwrites an existing file."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    written = []
    for index, image in enumerate(result.images, start=1):
        path = out / f"{stem}-{stamp}-{index}.{image.extension}"
        counter = 1
        while path.exists():
            counter += 1
            path = out / f"{stem}-{stamp}-{index}-{counter}.{image.extension}"
        path.write_bytes(image.data)
        written.append(path)
    return written


async def _one_shot(
    args: argparse.Namespace, settings: Settings, catalogues: Catalogues, order: ImageOrder
) -> int:
    require_secrets(settings, discord_token=False)
    prepare_out(args.out)
    async with open_engine(settings, catalogues=catalogues) as engine:
        check_order(engine.backends, order)
        result = await make_images(engine, order)
    for path in write_results(result, args.out, order.operation.value):
        print(path)
    for revised in result.revised_prompts:
        print(f"revised prompt: {revised}", file=sys.stderr)
    return EXIT_OK


def _limit(settings: Settings) -> int:
    return int(settings.images.max_upload_mb * 1024 * 1024)


async def imagine(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    order = ImageOrder(
        Operation.GENERATE,
        prompt=args.prompt,
        n=args.n,
        size=args.size,
        quality=args.quality,
        style=args.style,
        background=args.background,
        model=args.model,
        user_id="cli",
    )
    return await _one_shot(args, settings, catalogues, order)


async def edit(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    image = read_input_file(args.image, "image", _limit(settings))
    mask = read_input_file(args.mask, "mask", _limit(settings)) if args.mask else None
    order = ImageOrder(
        Operation.EDIT,
        prompt=args.prompt,
        image=image,
        mask=mask,
        n=args.n,
        size=args.size,
        quality=args.quality,
        model=args.model,
        fit=args.fit or settings.images.fit,
        user_id="cli",
    )
    return await _one_shot(args, settings, catalogues, order)


async def vary(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    image = read_input_file(args.image, "image", _limit(settings))
    order = ImageOrder(
        Operation.VARY,
        image=image,
        n=args.n,
        size=args.size,
        model=args.model,
        fit=args.fit or settings.images.fit,
        user_id="cli",
    )
    return await _one_shot(args, settings, catalogues, order)


async def check(args: argparse.Namespace, settings: Settings, catalogues: Catalogues) -> int:
    from bot.discord.identity import identify
    from bot.ops.checks import run_checks

    path, _ = resolve_config_path(args.config, os.environ)
    source = str(path) if path.is_file() else "defaults and environment"
    # The checklist is the whole output: library lines (discord.py's intents warning, Alembic's
    # INFO lines, retry warnings) would bury it, and each check reports its own outcome.
    logging.disable(logging.ERROR)
    try:
        passed = await run_checks(settings, source, identify)
    finally:
        logging.disable(logging.NOTSET)
    return EXIT_OK if passed else EXIT_FAILURE
