"""Job rows: the only way jobs are written and read, one short session per unit of work.

Every change of a job's state goes through here, from its insert (:func:`admit`, with the
quota decision taken in the same transaction) to its delivery and its images' pruning. Every
change of its charge (the reservation, each settlement) updates the usage counters the quotas
read in the same transaction, with one call to :mod:`bot.quotas.counters`.

Everything a result's buttons and reactions need later (the order's settings, its uploads as
sent to the provider, every message the result went to) is stored here, so they keep working
after a restart. Stored images do not stay forever: see :mod:`bot.jobs.retention`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Update, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.config import QuotaSettings
from bot.db.engine import Sessions, Transactions
from bot.db.models import ImageRole, Intake, Job, JobImage, JobMessage, JobStatus, utcnow
from bot.errors import BotError
from bot.generation import ORDER_SETTINGS, FitChoice, ImageOrder
from bot.jobs.intake import delete_intake_sync
from bot.jobs.rows import insert_job_sync
from bot.moderation.audit import audit_job_end, audit_job_end_sync
from bot.providers import GeneratedImage, ImageResult, Operation
from bot.providers.checks import png_dimensions
from bot.quotas import counters, ledger


@dataclass(frozen=True)
class JobOrigin:
    """Who asked, where, and how to answer them.

    Where and who are required, with no defaults: every way in (command, menu, button, modal,
    reaction, retry) must say which server, channel and parent channel the request came from
    and which roles the member has, or the server's rules could not hold for it.
    """

    user_id: int
    guild_id: int | None
    channel_id: int | None
    #: The channel a thread belongs to: a thread counts as its channel for channel rules.
    parent_channel_id: int | None
    #: The member's roles in the guild: role limits and exemptions depend on them.
    role_ids: tuple[int, ...]
    locale: str | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    interaction_at: datetime | None = None
    attachment_size_limit: int | None = None
    source_job_id: int | None = None
    source_index: int | None = None
    #: The channel (a thread: its parent) is age-restricted (Discord's ``nsfw`` flag): where a
    #: server may allow GPT image models' low moderation (bot.moderation.nsfw). False, the
    #: provider's default moderation, unless a way in knows better.
    age_restricted: bool = False
    #: The result goes only to the requester (bot.discord.generate's delivery): the request's
    #: ``private`` option, else the member's own default, or a private parent result's.
    private: bool = False


def _image(
    job_id: int,
    role: ImageRole,
    position: int,
    data: bytes,
    mime: str = "",
    seed: int | None = None,
) -> JobImage:
    return JobImage(
        job_id=job_id,
        role=role,
        position=position,
        mime_type=mime or "application/octet-stream",
        data=data,
        seed=seed,
    )


async def admit(
    transactions: Transactions,
    quotas: QuotaSettings,
    job: Job,
    role_ids: Iterable[int] = (),
    now: datetime | None = None,
    *,
    order: ImageOrder | None = None,
    parent_channel_id: int | None = None,
    intake_id: int | None = None,
    enqueue: Callable[[AsyncSession, Job], Awaitable[None]] | None = None,
    sessions: Sessions | None = None,
) -> Job:
    """Insert the queued ``job`` (its n and estimated cost are its reservation) if every quota
    allows it (:func:`bot.quotas.ledger.check`, under the ledger's locks); raises QuotaError.

    ``order``'s uploads are stored in the same transaction, so a queued job is never without
    its inputs; so is the deletion of the intake ``intake_id`` (the acknowledged request this
    job comes from, see bot.jobs.intake).

    ``enqueue``: the shared queue's (PostgreSQL, bot.jobs.shared, with its ``sessions``): it
    places the job in its lane's fair order in the same transaction; then the intake must
    still be there (another process may have finished it, see
    bot.jobs.shared.recover_intakes), else IntakeTaken. Without it the whole admission is
    one synchronous unit of work (:class:`bot.db.engine.Transactions`: on SQLite, run in the
    event loop, instead of three or four thread hops per statement).
    """
    now = now or utcnow()

    def insert_job(session: Session) -> int:
        reservation = ledger.check_sync(
            session, quotas, job, role_ids, now, locked=True, parent_channel_id=parent_channel_id
        )
        job.n_charged = job.n_requested
        job.queued_at = now
        insert_job_sync(session, job)
        counters.add_sync(
            session,
            reservation.keys.all(),
            job.n_charged,
            job.cost_micro_usd,
            existing=reservation.found,
        )
        if order is not None:
            session.add_all(input_images(job.id, order))
        if enqueue is None and intake_id is not None:
            return delete_intake_sync(session, intake_id)
        return 0

    if enqueue is None:
        await transactions.run(insert_job)
        return job
    assert sessions is not None, "the shared queue admits in its own sessions"
    async with sessions() as session, session.begin():
        await session.run_sync(insert_job)
        await enqueue(session, job)
        if intake_id is not None and not await session.run_sync(delete_intake_sync, intake_id):
            raise IntakeTaken(intake_id)
    return job


class IntakeTaken(Exception):
    """The acknowledged request became a job on another process already (shared queue)."""


async def would_fit(
    sessions: Sessions,
    quotas: QuotaSettings,
    job: Job,
    role_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> None:
    """Raise what :func:`admit` would raise now, without taking a lock or writing anything.

    Checked before the bot downloads anything or answers Discord: a request that is refused
    costs a few reads. Only :func:`admit` decides; this may let through what it then refuses.
    """
    async with sessions() as session:
        await ledger.check(session, quotas, job, role_ids, now or utcnow(), locked=False)


async def get_job(sessions: Sessions, job_id: int) -> Job | None:
    async with sessions() as session:
        return await session.get(Job, job_id)


async def job_for_message(sessions: Sessions, message_id: int) -> Job | None:
    """The job ``message_id`` is a part of, or None when the bot did not post it as a result.

    A result split over several messages is found by any of them (reactions on the second
    part vary its images); results delivered before every part was recorded, by the first.
    """
    async with sessions() as session:
        result = await session.execute(
            select(Job).join(JobMessage).where(JobMessage.message_id == message_id)
        )
        job = result.scalars().first()
        if job is not None:
            return job
        result = await session.execute(select(Job).where(Job.result_message_id == message_id))
        return result.scalars().first()


async def messages_of(sessions: Sessions, job: Job) -> list[tuple[int | None, int]]:
    """Every message (channel id, message id) the result of ``job`` was posted as, in order."""
    async with sessions() as session:
        result = await session.execute(
            select(JobMessage.channel_id, JobMessage.message_id)
            .where(JobMessage.job_id == job.id)
            .order_by(JobMessage.position)
        )
        messages = [(channel_id, message_id) for channel_id, message_id in result.all()]
    if not messages and job.result_message_id is not None:
        messages = [(job.result_channel_id, job.result_message_id)]
    return messages


async def is_result_message(sessions: Sessions, job: Job, message_id: int) -> bool:
    """Whether ``message_id`` is one of the messages ``job``'s result was posted as."""
    if job.result_message_id == message_id:
        return True
    async with sessions() as session:
        result = await session.execute(
            select(JobMessage.job_id).where(
                JobMessage.job_id == job.id, JobMessage.message_id == message_id
            )
        )
        return result.first() is not None


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
        if not image.data:
            continue  # posted: only its seed is kept (see record_delivery)
        width, height = png_dimensions(image.data) or (0, 0)
        images.append(GeneratedImage(image.data, image.mime_type, width, height, seed=image.seed))
    return images


async def seeds_of(sessions: Sessions, job_id: int) -> list[int | None]:
    """Each image's seed, in order (Stable Diffusion backends; [] when none was recorded or
    retention dropped them): what Params shows to make one image again."""
    outputs = await images_of(sessions, job_id, ImageRole.OUTPUT)
    return [image.seed for image in outputs]


async def order_of(sessions: Sessions, job: Job) -> ImageOrder:
    """The order ``job`` was made from, uploads included: what Redo and Remix run again."""
    inputs = await images_of(sessions, job.id, ImageRole.INPUT)
    masks = await images_of(sessions, job.id, ImageRole.MASK)
    settings = {name: getattr(job, column) for name, column in ORDER_SETTINGS.items()}
    settings["fit"] = _fit(job.fit)
    settings["negative_prompt"] = job.negative_prompt or ""  # None: a job from before 0006
    return ImageOrder(
        Operation(job.operation),
        image=inputs[0].data if inputs else None,
        mask=masks[0].data if masks else None,
        extra_images=tuple(image.data for image in inputs[1:]),
        user_id=str(job.user_id) if job.user_id is not None else None,
        **settings,
    )


def _fit(value: str | None) -> FitChoice:
    if value == "crop":
        return "crop"
    if value == "pad":
        return "pad"
    return "auto"


async def mark_running(sessions: Sessions, job_id: int) -> None:
    """What the runner wrote at a job's start before bot.jobs.journal took that over: rows a
    version before it left running are still interrupted at start (the tests make them)."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is not None:
            job.status = JobStatus.RUNNING
            job.started_at = utcnow()


@dataclass(frozen=True)
class MadeBy:
    """The backend that made a result, its model, and whether one before it may have billed
    the job too: what the job's row records with the result (a fallback's, maybe)."""

    backend: str | None
    model: str
    possibly_billed: bool


async def record_success(
    sessions: Sessions,
    job_id: int,
    result: ImageResult,
    cost: int,
    *,
    made_by: MadeBy | None = None,
) -> Job | None:
    """Store the images (they were paid for) until they are delivered: a result recorded from
    the spool (a new one is recorded by :func:`record_result`, after it is posted).
    ``made_by``: who made it (a job failed over is recorded as its fallback's)."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None:
            return None
        before = (job.n_charged, job.cost_micro_usd)
        if made_by is not None:
            job.backend, job.model = made_by.backend, made_by.model
            job.possibly_billed = job.possibly_billed or made_by.possibly_billed
        settle(job, result, cost)
        await counters.settle(session, job, before)
        for position, image in enumerate(result.images):
            output = _image(
                job_id, ImageRole.OUTPUT, position, image.data, image.mime_type, image.seed
            )
            session.add(output)
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


#: The tables themselves, for Core statements (measured: a fifth less CPU than the ORM's).
_JOBS = Job.metadata.tables[Job.__tablename__]
_MESSAGES = Job.metadata.tables[JobMessage.__tablename__]
_IMAGES = Job.metadata.tables[JobImage.__tablename__]
_INSERT_MESSAGES, _INSERT_IMAGES = insert(_MESSAGES), insert(_IMAGES)
#: The columns :func:`settle` (and the start of a job) set: what :func:`record_result` writes.
_SETTLED = (
    "status",
    "started_at",
    "finished_at",
    "n_delivered",
    "n_charged",
    "revised_prompt",
    "cost_micro_usd",
    "size",
    "quality",
    "input_tokens",
    "output_tokens",
    "backend",
    "model",
    "possibly_billed",
)


async def record_result(
    transactions: Transactions,
    job: Job,
    images: Sequence[GeneratedImage],
    messages: Sequence[tuple[int | None, int]],
    sent: ImageOrder | None = None,
    *,
    reserved: tuple[int, int],
    owner: str | None = None,
) -> bool:
    """A new result in one transaction, after it was posted from memory: ``job`` as
    :func:`settle` left it, where it was posted (``messages``; then its interaction token goes),
    and ``sent``, the uploads as sent to the provider (kept instead of the raw ones, see
    :func:`keep_sent_inputs`). Only a result no route took stores its images, for the retries.
    ``reserved``: the images and micro-dollars the row held before :func:`settle`, so the usage
    counters move by the difference.

    Core statements, no unit of work: this is the hot path's second and last write (the first is
    :func:`admit`). False, writing nothing, when the row no longer waits for a result (deleted,
    or recorded already from the spool).

    ``owner`` (the shared queue, before the result is posted): only while the job is still
    running under that process's claim, and the right to post it is taken with the result
    (``delivery_owner``), so no other process ever posts it.
    """
    if messages:  # the copy in memory keeps its token: the status still says "done" with it
        job.status = JobStatus.DELIVERED
        job.result_channel_id, job.result_message_id = messages[0]
    values = {name: getattr(job, name) for name in _SETTLED}
    if messages:
        values.update(
            result_channel_id=job.result_channel_id,
            result_message_id=job.result_message_id,
            interaction_token=None,
        )
    if owner is not None:
        values["delivery_owner"] = job.delivery_owner = owner
    statement = _recording(tuple(values), owned=owner is not None)
    parameters = {f"new_{name}": value for name, value in values.items()}
    parameters.update(recorded_id=job.id, owner=owner)

    def record(session: Session) -> bool:
        connection = session.connection()  # Core statements: not through the ORM's layer
        result = connection.execute(statement, parameters)
        if not result.rowcount:
            return False
        counters.settle_sync(session, job, reserved)
        if messages:
            audit_job_end_sync(session, job)
            posted = [
                {"job_id": job.id, "position": i, "channel_id": channel, "message_id": message}
                for i, (channel, message) in enumerate(messages)
            ]
            connection.execute(_INSERT_MESSAGES, posted)
        # Posted: the message has the bytes, only each image's seed is kept (for Params).
        kept = [
            {
                "job_id": job.id,
                "role": ImageRole.OUTPUT,
                "position": position,
                "mime_type": image.mime_type,
                "data": b"" if messages else image.data,
                "seed": image.seed,
            }
            for position, image in enumerate(images)
            if image.seed is not None or not messages
        ]
        if kept:
            connection.execute(_INSERT_IMAGES, kept)
        if sent is not None:
            _replace_inputs(session, job.id, sent)
        return True

    return await transactions.run(record)


@functools.cache
def _recording(columns: tuple[str, ...], *, owned: bool) -> Update:
    """The update that records a result into ``columns``, built once per shape: building it
    for every job (and its cache key, a walk over the whole statement) cost more than
    running it. ``owned``: only while the job runs under the ``owner`` parameter's claim."""
    jobs = _JOBS.c
    waiting: ColumnElement[bool] = jobs.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
    if owned:
        waiting = (jobs.status == JobStatus.RUNNING) & (jobs.worker_id == bindparam("owner"))
    return (
        update(_JOBS)
        .where(jobs.id == bindparam("recorded_id"), waiting)
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


async def record_failure(
    sessions: Sessions,
    job_id: int,
    error: BotError,
    *,
    possibly_billed: bool = False,
    started_at: datetime | None = None,
) -> Job | None:
    """No images: nothing is charged to members; see :func:`_release` for the spend.

    ``started_at``: when it was sent (the row is not told before, see bot.jobs.journal).
    None (nothing written, nobody to tell) when the job is finished already: on PostgreSQL the
    reaper may have reported it interrupted, possibly billed, after its worker's lease ran out,
    and a failure arriving late must not release that estimate or tell the member twice."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id, with_for_update=True)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return None
        job.started_at = started_at or job.started_at
        job.status = JobStatus.FAILED
        job.finished_at = utcnow()
        before = (job.n_charged, job.cost_micro_usd)
        _release(job, possibly_billed)
        await counters.settle(session, job, before)
        job.error_code = error.key
        job.error_message = str(error)[:2000]
        await drop_images(session, job)  # nothing can run it again: its uploads are not needed
        await audit_job_end(session, job)
        return job


async def record_delivery(
    sessions: Sessions,
    job_id: int,
    messages: Sequence[tuple[int | None, int]],
    *,
    clear_token: bool = False,
) -> None:
    """The result is posted as ``messages`` (channel id, message id; the first carries the
    details): remember every one (for buttons, reactions and Delete), drop the stored bytes
    (and with ``clear_token`` the interaction token, of no further use)."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None or not messages:
            return
        if clear_token:
            job.interaction_token = None
        first_delivery = job.status is not JobStatus.DELIVERED
        job.status = JobStatus.DELIVERED
        job.result_channel_id, job.result_message_id = messages[0]
        if first_delivery:
            await audit_job_end(session, job)
        await session.execute(delete(JobMessage).where(JobMessage.job_id == job_id))
        for position, (channel_id, message_id) in enumerate(messages):
            session.add(
                JobMessage(
                    job_id=job_id, position=position, channel_id=channel_id, message_id=message_id
                )
            )
        # The bytes go (the result message has them); a seed stays, for Params, until the
        # retention drops the job's images.
        outputs = (JobImage.job_id == job_id, JobImage.role == ImageRole.OUTPUT)
        await session.execute(delete(JobImage).where(*outputs, JobImage.seed.is_(None)))
        await session.execute(update(JobImage).where(*outputs).values(data=b""))


async def add_result_messages(
    sessions: Sessions, job_id: int, messages: Sequence[tuple[int | None, int]]
) -> bool:
    """The result of ``job_id`` was posted again (``/show``) as ``messages``: remember them
    after the messages it has (their positions continue), so the buttons and reactions on the
    copy work like those on the original, also after a restart. The original's rows stay, and
    the job keeps its first message as its result (``/history`` links there).

    False, writing nothing, when the result is no longer there to copy (deleted meanwhile):
    the copy's buttons then say so. The job's row is locked first (PostgreSQL), so two copies
    posted at once never take the same positions."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id, with_for_update=True)
        if job is None or job.status is not JobStatus.DELIVERED or not messages:
            return False
        if job.result_message_id is None:
            return False
        last = await session.scalar(
            select(func.max(JobMessage.position)).where(JobMessage.job_id == job_id)
        )
        start = 0 if last is None else last + 1
        if last is None:  # delivered before every part was recorded: keep the first too
            session.add(
                JobMessage(
                    job_id=job_id,
                    position=0,
                    channel_id=job.result_channel_id,
                    message_id=job.result_message_id,
                )
            )
            start = 1
        for position, (channel_id, message_id) in enumerate(messages, start):
            session.add(
                JobMessage(
                    job_id=job_id, position=position, channel_id=channel_id, message_id=message_id
                )
            )
    return True


async def clear_token(sessions: Sessions, job_id: int) -> None:
    """The job's last word is said: its interaction token is of no further use, so it goes."""
    async with sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job_id).values(interaction_token=None))


async def clear_tokens_before(sessions: Sessions, moment: datetime) -> int:
    """Forget the interaction tokens of jobs and intakes from before ``moment``; how many."""
    cleared = 0
    async with sessions() as session, session.begin():
        for model in (Job, Intake):
            result = await session.execute(
                update(model)
                .where(model.interaction_token.is_not(None), model.interaction_at < moment)
                .values(interaction_token=None)
            )
            cleared += result.rowcount  # type: ignore[attr-defined]
    return cleared


async def forget_result(sessions: Sessions, job_id: int) -> None:
    """The requester deleted the result: its buttons and reactions lead nowhere, and the images
    it kept (its uploads as sent) are deleted with it."""
    async with sessions() as session, session.begin():
        job = await session.get(Job, job_id)
        if job is None:
            return
        job.result_message_id = None
        await session.execute(delete(JobMessage).where(JobMessage.job_id == job_id))
        await drop_images(session, job)


async def drop_images(session: AsyncSession, job: Job) -> int:
    """Delete every image ``job`` keeps (inputs, masks, outputs); how many there were.

    ``pruned_at`` records it, so a button that needs them can say the result is too old."""
    result = await session.execute(delete(JobImage).where(JobImage.job_id == job.id))
    removed: int = result.rowcount  # type: ignore[attr-defined]
    if removed:
        job.pruned_at = utcnow()
    return removed


async def keep_sent_inputs(sessions: Sessions, job_id: int, sent: ImageOrder) -> None:
    """Replace a job's uploads by what was sent for them (square PNGs under 4 MB).

    The raw uploads (up to 25 MB each) are not needed again: Redo, Remix and Retry send the
    normalized ones, which normalize to themselves."""
    async with sessions() as session, session.begin():
        await session.run_sync(_replace_inputs, job_id, sent)


def _replace_inputs(session: Session, job_id: int, sent: ImageOrder) -> None:
    session.execute(
        delete(JobImage).where(
            JobImage.job_id == job_id, JobImage.role.in_([ImageRole.INPUT, ImageRole.MASK])
        )
    )
    session.add_all(input_images(job_id, sent, mime="image/png"))


def new_job(order: ImageOrder, origin: JobOrigin, model: str, estimate: int, command: str) -> Job:
    """An unsaved queued job, for :func:`admit`.

    ``model`` is the one resolved for the order (the configured one when it names none)."""
    columns = {column: getattr(order, name) for name, column in ORDER_SETTINGS.items()}
    columns["model"] = model
    return Job(
        guild_id=origin.guild_id,
        channel_id=origin.channel_id,
        parent_channel_id=origin.parent_channel_id,
        user_id=origin.user_id,
        operation=order.operation.value,
        command=command,
        **columns,
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
        private=origin.private,
    )


def input_images(job_id: int, order: ImageOrder, mime: str = "") -> list[JobImage]:
    images = []
    if order.image is not None:
        images.append(_image(job_id, ImageRole.INPUT, 0, order.image, mime))
        # A blend's other pictures, in the member's order (Redo and Remix send them again).
        for position, extra in enumerate(order.extra_images, 1):
            images.append(_image(job_id, ImageRole.INPUT, position, extra, mime))
    if order.mask is not None:
        images.append(_image(job_id, ImageRole.MASK, 0, order.mask, mime))
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
    """Jobs a restart must deal with besides the queue: running (interrupted) or made but not
    posted (few: at most the concurrency and what the spool could not record)."""
    async with sessions() as session:
        result = await session.execute(
            select(Job)
            .where(Job.status.in_([JobStatus.RUNNING, JobStatus.SUCCEEDED]))
            .order_by(Job.queued_at, Job.id)
        )
        return list(result.scalars())


#: What the fair queue needs of a queued job: id, guild, user, images requested, backend.
QueuedColumns = tuple[int, int | None, int | None, int, str | None]


async def queued_jobs(
    sessions: Sessions, batch: int = 5000
) -> AsyncIterator[Sequence[QueuedColumns]]:
    """Every queued job in the order it was queued, in batches of ``batch``, as five columns.

    A restart may find 100,000 waiting: read as whole ORM rows they took 7.5 s and 616 MB.
    Consume each batch without awaiting other database work on the same connection."""
    statement = (
        select(Job.id, Job.guild_id, Job.user_id, Job.n_requested, Job.backend)
        .where(Job.status == JobStatus.QUEUED)
        .order_by(Job.queued_at, Job.id)
        .execution_options(yield_per=batch)
    )
    async with sessions() as session:
        # Core rows from the session's connection: a third of the ORM's cost per row
        connection = await session.connection()
        result = await connection.stream(statement)
        async for rows in result.partitions():
            yield cast(Sequence[QueuedColumns], rows)  # rows are tuples of these columns


async def queued_with_token(sessions: Sessions, since: datetime) -> list[Job]:
    """Queued jobs whose interaction token is from after ``since``: the requesters a restart
    can still show their place to (the others have no message left to update)."""
    async with sessions() as session:
        result = await session.execute(
            select(Job)
            .where(
                Job.status == JobStatus.QUEUED,
                Job.interaction_token.is_not(None),
                Job.interaction_at >= since,
            )
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
    started_at: datetime | None = None,
    only_if: JobStatus | None = None,
) -> Job | None:
    """Cancelled or interrupted: nothing was delivered, so no member is charged.

    ``started_at``: when an interrupted job was sent (from bot.jobs.journal). ``only_if``:
    only while the job has that status, decided under its row lock (the shared queue: a
    cancel and a claim of one queued job never both win); None when it does not."""
    async with sessions() as session, session.begin():
        if only_if is None:
            job = await session.get(Job, job_id)
        else:
            job = await session.scalar(
                select(Job).where(Job.id == job_id, Job.status == only_if).with_for_update()
            )
        if job is None:
            return None
        job.started_at = started_at or job.started_at
        job.status = status
        job.finished_at = utcnow()
        before = (job.n_charged, job.cost_micro_usd)
        _release(job, possibly_billed)
        await counters.settle(session, job, before)
        job.error_code = error_code
        if status is JobStatus.CANCELLED:
            # Nothing can run it again (an interrupted job keeps them for its Retry button).
            job.interaction_token = None
            await drop_images(session, job)
        await audit_job_end(session, job)
        return job


async def interrupt_claim(sessions: Sessions, job_id: int, lost: ColumnElement[bool]) -> Job | None:
    """The running ``job_id`` interrupted, possibly billed, if its claim is ``lost`` (a
    condition on its row: its lease ran out, or its own process gives it up); else None.

    PostgreSQL, several processes (bot.jobs.leases): the row is read under its lock and the
    condition checked there, so of the processes trying at once exactly one wins, and neither
    a renewal nor the result that its worker records can land in between. Its estimate stays
    in the spend ledger, its images are released, as :func:`finish_without_images` does.
    """
    async with sessions() as session, session.begin():
        result = await session.execute(
            select(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, lost)
            .with_for_update(skip_locked=True)
        )
        job = result.scalar_one_or_none()
        if job is None:
            return None
        job.status = JobStatus.INTERRUPTED
        job.finished_at = utcnow()
        before = (job.n_charged, job.cost_micro_usd)
        _release(job, possibly_billed=True)
        await counters.settle(session, job, before)
        job.error_code = "interrupted"
        await audit_job_end(session, job)
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
