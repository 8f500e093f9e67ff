"""A worker's steps are reaped by its event loop, not by a thread started per step."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

from worker.main import steps_reaped_by_the_loop


def _watcher() -> asyncio.AbstractChildWatcher:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.get_event_loop_policy().get_child_watcher()


async def _threads_started_by_steps(count: int) -> int:
    """Threads alive beside `count` short steps; each step lives long enough (0.2 s) that a
    waiting thread of its own would be seen."""
    started = 0
    before = set(threading.enumerate())
    for _ in range(count):
        process = await asyncio.create_subprocess_exec("sleep", "0.2")
        started += len(set(threading.enumerate()) - before)
        assert await process.wait() == 0
    return started


async def test_steps_are_reaped_in_the_loop_and_the_default_comes_back() -> None:
    default = _watcher()
    if sys.version_info < (3, 12):
        assert await _threads_started_by_steps(3) >= 1  # 3.11's default: a thread each
    with steps_reaped_by_the_loop():
        with steps_reaped_by_the_loop():  # a second worker in the same loop
            assert await _threads_started_by_steps(3) == 0
        assert await _threads_started_by_steps(3) == 0
    assert _watcher() is default
