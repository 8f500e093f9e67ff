"""SQLite writers of several processes take turns on a lock file."""

from __future__ import annotations

import asyncio
import fcntl
import os


class WriterLock:
    """Writers of different stageline processes on one SQLite file take turns here, in
    arrival order (the kernel's queue of `flock` waiters), instead of in SQLite's busy
    handler, which sleeps and retries: with two worker processes the benchmark saw it cost
    most of their time. (Another program's writer still meets the busy timeout.) Held from
    before `BEGIN IMMEDIATE` until after `COMMIT`; one holder per process at a time (the
    caller holds its in-process lock first)."""

    def __init__(self, database: str) -> None:
        self._path = f"{database}-writer.lock"
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    async def __aenter__(self) -> None:
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        # Held by another process: wait in a thread, so the loop goes on meanwhile.
        waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread goes on waiting; whenever it gets the lock, give it back. (If this
            # process's next writer took it meanwhile, it loses the file lock early: SQLite's
            # own lock still keeps the writes apart, only the turn order suffers.)
            waiting.add_done_callback(self._release_after)
            raise

    async def __aexit__(self, *_: object) -> None:
        self._release()

    def _release_after(self, waited: asyncio.Future[None]) -> None:
        if not waited.cancelled() and waited.exception() is None:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
