"""A guard for a CPython race in `ast.parse`, installed for the whole test suite.

CPython 3.11.0-3.11.7 and 3.12.0 keep the depth counter of the AST constructor
(`ast.parse`) in interpreter-wide state (gh-106905, fixed in 3.11.8 and 3.12.1). If the
garbage collector runs a finalizer while one thread builds an AST, another thread may
parse meanwhile, and one of them fails with "SystemError: AST constructor recursion depth
mismatch". Here two threads parse all the time: Temporal's workflow threads format the
traceback of every failed workflow (3.11 parses source lines to draw `^^^` under the
failing expression), while the main thread does the same for failed activities, and
pytest's assertion rewriting and Hypothesis parse source too (pytest rewrites every module
of the hypothesis package when it is first imported, which Hypothesis does lazily, mid-
test). The hostile-input properties fail hundreds of workflows and activities, so they hit
the race. `ast.parse` is therefore serialised by one lock with the garbage collector off
while it runs: no finalizer can then run Python code inside the AST constructor, so no
other thread (and no nested parse in the same thread) can get in. Parsing is microseconds
to milliseconds; the cost is nil. On a fixed Python the guard is not installed.
"""

from __future__ import annotations

import ast
import gc
import sys
import threading
from typing import Any

AST_RACE = (3, 11) <= sys.version_info < (3, 11, 8) or (3, 12) <= sys.version_info < (3, 12, 1)


def install_ast_guard() -> None:
    if getattr(ast.parse, "stageline_guard", False):
        return
    unguarded = ast.parse
    lock = threading.RLock()

    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return unguarded(*args, **kwargs)
            finally:
                if collecting:
                    gc.enable()

    parse.stageline_guard = True  # type: ignore[attr-defined]
    ast.parse = parse
