"""What a running job's status message says: a bar, the percentage, the step, the preview.

A backend's own text ("step 12/20") is in the operator's language, so the member reads only
numbers from it, put into the catalog's translated wording. The preview is attached as it came
(a verified PNG, JPEG or WebP), named by its format so Discord shows it inline; one larger than
the interaction's upload limit is left out (the text still moves).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import discord

from bot.db.models import Job
from bot.discord.files import upload_file
from bot.discord.generate._results import DEFAULT_UPLOAD_LIMIT
from bot.discord.i18n import Catalog
from bot.discord.markup import discord_time
from bot.providers.checks import image_format
from bot.providers.progress import ProgressUpdate

#: Cells of the progress bar.
BAR_CELLS = 10
#: A server's estimate beyond this is not an estimate (an hour: no image takes that long).
MAX_ETA_SECONDS = 3600.0
#: The attachment's name, without its extension: one preview per message, always this name.
PREVIEW_NAME = "preview"


def progress_text(catalog: Catalog, job: Job, update: ProgressUpdate) -> str:
    """The status text for ``update``: what is made, a bar with the percentage, the step and
    the expected end where the backend says them."""
    fraction = update.fraction if math.isfinite(update.fraction) else 0.0
    percent = min(max(math.floor(fraction * 100), 0), 100)
    filled = round(percent * BAR_CELLS / 100)
    bar = "█" * filled + "░" * (BAR_CELLS - filled)
    lines = [
        catalog.text("status.working", job.locale, n=job.n_requested),
        f"`{bar}` {percent}%",  # numbers only: the same in every language
    ]
    details = []
    if update.steps > 0:
        step = min(max(update.step, 0), update.steps)
        details.append(catalog.text("status.step", job.locale, step=step, steps=update.steps))
    eta = update.eta_seconds
    if eta is not None and math.isfinite(eta) and 1 <= eta <= MAX_ETA_SECONDS:
        end = datetime.now(UTC) + timedelta(seconds=eta)
        details.append(catalog.text("status.eta", job.locale, eta=discord_time(end)))
    if details:
        lines.append(" · ".join(details))
    return "\n".join(lines)


def preview_file(job: Job, preview: bytes) -> discord.File | None:
    """The preview as an attachment, or None when Discord would refuse it (format, size)."""
    kind = image_format(preview)
    if kind is None or len(preview) > (job.attachment_size_limit or DEFAULT_UPLOAD_LIMIT):
        return None
    extension = "jpg" if kind == "jpeg" else kind
    return upload_file(preview, f"{PREVIEW_NAME}.{extension}")
