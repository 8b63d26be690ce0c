"""Wake-ups between processes on one PostgreSQL database: ``LISTEN``/``NOTIFY``.

A job queued by any process wakes the workers at once (``imagebot_jobs``, payload: the lane),
and Cancel pressed on one process reaches the one running the job (``imagebot_cancel``,
payload: the job id). A notification is sent inside the transaction that makes it true
(``pg_notify`` is delivered at commit, never for a rolled back one), so a listener that is
woken always finds the change.

Notifications are a hint, not a record: one sent while a listener's connection is down is
lost. So every listener also polls slowly (``[jobs] poll_seconds``), and is told to look at
everything again when its connection comes back (``on_reconnect``).

Each process listens on one dedicated asyncpg connection of its own, outside the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

#: A job was queued on the lane named by the payload.
JOBS = "imagebot_jobs"
#: Cancel was pressed for the running job whose id is the payload.
CANCEL = "imagebot_cancel"
#: Seconds between attempts to connect again after the connection dropped.
RECONNECT_SECONDS = 2.0


async def notify(session: AsyncSession, channel: str, payload: str) -> None:
    """Send ``payload`` on ``channel`` when ``session``'s transaction commits."""
    await session.execute(select(func.pg_notify(channel, payload)))


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as asyncpg's DSN (password included: never log it)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def is_alive(session: AsyncSession, namespace: int, key: str) -> bool:
    """Whether the process holding the advisory lock (``namespace``, ``key``) is connected
    (see ``Listener(alive_lock=...)``): its lock cannot be taken."""
    lock = func.pg_try_advisory_xact_lock(namespace, func.hashtext(key))
    return not await session.scalar(select(lock))  # a transaction's lock: gone at its end


class Listener:
    """``handlers``: channel -> a callback given each payload (called on the event loop; it
    must return at once). ``on_reconnect`` is called once the connection is back after a drop
    (anything sent meanwhile was lost)."""

    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Callable[[str], None]],
        *,
        on_reconnect: Callable[[], None],
        alive_lock: tuple[int, str] | None = None,
    ) -> None:
        """``alive_lock``: an advisory lock (namespace, key text) held on the connection while
        it lives, so other processes can tell whether this one is alive (:func:`is_alive`)."""
        self._alive_lock = alive_lock
        self._dsn = asyncpg_dsn(url)
        self._handlers = dict(handlers)
        self._on_reconnect = on_reconnect
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False

    async def start(self) -> None:
        """Listen from now on (waits for the first connection, a few seconds at most)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="listen")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10.0):
                    await self._ready.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _listen_forever(self) -> None:
        import asyncpg  # the ``postgres`` extra: only a PostgreSQL installation has it

        first = True
        while True:
            dropped = asyncio.Event()
            try:
                connection = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as error:
                # The message names the server, never the password.
                log.warning("LISTEN: cannot connect (%s); again soon", type(error).__name__)
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            try:
                connection.add_termination_listener(lambda _c, dropped=dropped: dropped.set())
                if self._alive_lock is not None:
                    await connection.execute(
                        "SELECT pg_advisory_lock($1, hashtext($2))", *self._alive_lock
                    )
                for channel in self._handlers:
                    await connection.add_listener(channel, self._deliver)
                self.connected = True
                self._ready.set()
                if not first:
                    log.info("LISTEN: connected again; looking at everything")
                    self._on_reconnect()
                first = False
                await dropped.wait()
                log.warning("LISTEN: the connection dropped; wake-ups wait for the poll")
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("LISTEN: %s; connecting again", type(error).__name__)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(RECONNECT_SECONDS)

    def _deliver(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            log.exception("LISTEN: handling a notification on %s failed", channel)
