"""Job rows: the only way jobs are written and read, one short session per unit of work.

Everything a result's buttons and reactions need later (the order's settings, its uploads, the
message the result went to) is stored here, so they keep working after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import ImageRole, Job, JobImage, JobStatus, utcnow
from bot.errors import BotError
from bot.generation import FitChoice, ImageOrder
from bot.providers import GeneratedImage, ImageResult, Operation
from bot.providers.checks import png_dimensions

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class JobOrigin:
    """Who asked, where, and how to answer them."""

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    locale: str | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    interaction_at: datetime | None = None
    attachment_size_limit: int | None = None
    source_job_id: int | None = None
    source_index: int | None = None
    #: The channel a thread belongs to: a thread counts as its channel for channel rules.
    parent_channel_id: int | None = None


def _image(job_id: int, role: ImageRole, position: int, data: bytes, mime: str = "") -> JobImage:
    return JobImage(
        job_id=job_id,
        role=role,
        position=position,
        mime_type=mime or "application/octet-stream",
        data=data,
    )


async def get_job(sessions: Sessions, job_id: int) -> Job | None:
    async with sessions() as session:
        return await session.get(Job, job_id)


async def job_for_message(sessions: Sessions, message_id: int) -> Job | None:
    """The job whose result is ``message_id``, or None when the bot did not post it."""
    async with sessions() as session:
        result = await session.execute(select(Job).where(Job.result_message_id == message_id))
        return result.scalars().first()


async def images_of(sessions: Sessions, job_id: int, role: ImageRole) -> list[JobImage]:
    async with sessions() as session:
        result = await session.execute(
            select(JobImage)
            .where(JobImage.job_id == job_id, JobImage.role == role)
            .order_by(JobImage.position)
        )
        return list(result.scalars())


async def outputs_of(sessions: Sessions, job_id: int) -> list[GeneratedImage]:
    """The images a job made and still keeps (verified when made; sizes from the PNG header)."""
    outputs = await images_of(sessions, job_id, ImageRole.OUTPUT)
    images = []
    for image in outputs:
        width, height = png_dimensions(image.data) or (0, 0)
        images.append(GeneratedImage(image.data, image.mime_type, width, height))
    return images


async def order_of(sessions: Sessions, job: Job) -> ImageOrder:
    """The order ``job`` was made from, uploads included: what Redo and Remix run again."""
    inputs = await images_of(sessions, job.id, ImageRole.INPUT)
    masks = await images_of(sessions, job.id, ImageRole.MASK)
    return ImageOrder(
        Operation(job.operation),
        prompt=job.prompt,
        image=inputs[0].data if inputs else None,
        mask=masks[0].data if masks else None,
        n=job.n_requested,
        size=job.size,
        quality=job.quality,
        style=job.style,
        background=job.background,
        model=job.model,
        fit=_fit(job.fit),
        user_id=str(job.user_id) if job.user_id is not None else None,
    )


def _fit(value: str | None) -> FitChoice:
    if value == "crop":
        return "crop"
    if value == "pad":
        return "pad"
    return "auto"


async def mark_running(sessions: Sessions, job_id: int) -> None:
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is not None:
            job.status = JobStatus.RUNNING
            job.started_at = utcnow()


async def record_success(
    sessions: Sessions, job_id: int, result: ImageResult, cost: int
) -> Job | None:
    """Store the images (they were paid for) until they are delivered."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None:
            return None
        settle(job, result, cost)
        for position, image in enumerate(result.images):
            session.add(_image(job_id, ImageRole.OUTPUT, position, image.data, image.mime_type))
        return job


def settle(job: Job, result: ImageResult, cost: int) -> None:
    """Mark ``job`` succeeded with ``result``: in its row, or on a copy posted from the spool."""
    job.status = JobStatus.SUCCEEDED
    job.finished_at = utcnow()
    job.n_delivered = len(result.images)
    job.n_charged = len(result.images)
    job.revised_prompt = result.revised_prompts[0] if result.revised_prompts else None
    job.cost_micro_usd = cost
    job.size = result.size or job.size
    job.quality = result.quality or job.quality
    if result.usage is not None:
        job.input_tokens = result.usage.input_tokens
        job.output_tokens = result.usage.output_tokens


async def record_failure(
    sessions: Sessions, job_id: int, error: BotError, *, possibly_billed: bool = False
) -> Job | None:
    """No images: nothing is charged to members; see :func:`_release` for the spend."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None:
            return None
        job.status = JobStatus.FAILED
        job.finished_at = utcnow()
        _release(job, possibly_billed)
        job.error_code = error.key
        job.error_message = str(error)[:2000]
        return job


async def record_delivery(
    sessions: Sessions, job_id: int, channel_id: int | None, message_id: int
) -> None:
    """The result is posted: remember where (for buttons and reactions), drop the stored bytes."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None:
            return
        job.status = JobStatus.DELIVERED
        job.result_channel_id = channel_id
        job.result_message_id = message_id
        await session.execute(
            delete(JobImage).where(JobImage.job_id == job_id, JobImage.role == ImageRole.OUTPUT)
        )


async def forget_result(sessions: Sessions, job_id: int) -> None:
    """The result message was deleted: its buttons and reactions no longer lead anywhere."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is not None:
            job.result_message_id = None


def new_job(order: ImageOrder, origin: JobOrigin, model: str, estimate: int, command: str) -> Job:
    """An unsaved queued job; the quota ledger inserts it (see bot.quotas.ledger.reserve)."""
    return Job(
        guild_id=origin.guild_id,
        channel_id=origin.channel_id,
        user_id=origin.user_id,
        operation=order.operation.value,
        command=command,
        model=model,
        prompt=order.prompt,
        size=order.size,
        quality=order.quality,
        style=order.style,
        background=order.background,
        fit=order.fit,
        n_requested=order.n,
        n_delivered=0,
        n_charged=0,
        status=JobStatus.QUEUED,
        cost_micro_usd=estimate,
        locale=origin.locale,
        application_id=origin.application_id,
        interaction_token=origin.interaction_token,
        interaction_at=origin.interaction_at,
        attachment_size_limit=origin.attachment_size_limit,
        source_job_id=origin.source_job_id,
        source_index=origin.source_index,
    )


def input_images(job_id: int, order: ImageOrder) -> list[JobImage]:
    images = []
    if order.image is not None:
        images.append(_image(job_id, ImageRole.INPUT, 0, order.image))
    if order.mask is not None:
        images.append(_image(job_id, ImageRole.MASK, 0, order.mask))
    return images


async def has_live_retry(sessions: Sessions, job_id: int) -> bool:
    """Whether a retry of ``job_id`` is waiting, running or has made its images."""
    live = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DELIVERED]
    async with sessions() as session:
        result = await session.execute(
            select(Job.id)
            .where(Job.source_job_id == job_id, Job.command == "retry", Job.status.in_(live))
            .limit(1)
        )
        return result.first() is not None


async def unfinished_jobs(sessions: Sessions) -> list[Job]:
    """Jobs a restart must deal with: queued, running (interrupted) or made but not posted."""
    async with sessions() as session:
        result = await session.execute(
            select(Job)
            .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]))
            .order_by(Job.queued_at, Job.id)
        )
        return list(result.scalars())


async def finish_without_images(
    sessions: Sessions,
    job_id: int,
    status: JobStatus,
    error_code: str | None = None,
    *,
    possibly_billed: bool = False,
) -> Job | None:
    """Cancelled or interrupted: nothing was delivered, so no member is charged."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None:
            return None
        job.status = status
        job.finished_at = utcnow()
        _release(job, possibly_billed)
        job.error_code = error_code
        return job


def _release(job: Job, possibly_billed: bool) -> None:
    """Drop a job's reservation of images; its spend stays when the provider may have billed it.

    A request cut off after it was sent (the process killed, a timeout, a dropped connection)
    may have made and billed images that never reached us. Its estimate stays in the spend
    ledger (``possibly_billed``) so budgets stay conservative; members' image counts never pay
    for images they did not get.
    """
    job.n_charged = 0
    job.possibly_billed = possibly_billed
    if not possibly_billed:
        job.cost_micro_usd = 0
