"""The guard of conftest.py against CPython's AST race (gh-106905) holds under load.

Unguarded, on Python 3.11.7, this fails within a fraction of a second: one thread formats
tracebacks (which parses source for the `^^^` markers), the other parses a module, and
objects with finalizers keep the garbage collector running Python code.
"""

from __future__ import annotations

import ast
import threading
import time
import traceback
from pathlib import Path

import pytest

from tests.ast_guard import AST_RACE

SECONDS = 1.5


class _Finalized:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the garbage collector frees it

    def __del__(self) -> None:
        sum(range(200))  # Python code run by the collector


def _fail() -> int:
    values: dict[str, int] = {}
    return values["missing"] + 1


@pytest.mark.skipif(not AST_RACE, reason="this Python has the fix for gh-106905")
def test_parsing_in_two_threads_with_a_busy_collector_never_fails() -> None:
    assert getattr(ast.parse, "stageline_guard", False), "the guard is not installed"
    source = Path(ast.__file__).read_text()
    errors: list[BaseException] = []
    stop = time.monotonic() + SECONDS

    def format_tracebacks() -> None:
        while time.monotonic() < stop and not errors:
            try:
                _fail()
            except KeyError as exc:
                try:
                    traceback.format_exception(exc)
                except SystemError as broken:
                    errors.append(broken)
            _Finalized()

    thread = threading.Thread(target=format_tracebacks)
    thread.start()
    try:
        while time.monotonic() < stop and not errors:
            try:
                ast.parse(source)
            except SystemError as broken:
                errors.append(broken)
            for _ in range(50):
                _Finalized()
    finally:
        thread.join()
    assert errors == []
