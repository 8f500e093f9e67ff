"""Hypothesis settings for the property tests, and a guard for a CPython 3.11 race.

Settings: `derandomize=True` derives every test's examples from its own name, so each run
(and CI) tries exactly the same inputs; `database=None` keeps no example store between
runs; `deadline=None` because a real Temporal server and a real subprocess have no fixed
speed. Each test sets its own `max_examples` (see `hostile.examples`), which keeps the whole
suite to about a minute on two cores. `HYPOTHESIS_PROFILE=thorough` tries ten times as
many, random, inputs when hunting for bugs.

The guard against a CPython 3.11 race in `ast.parse`, which these tests hit most, is in
tests/ast_guard.py (installed for the whole suite by tests/conftest.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "stageline",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    print_blob=False,
    # No "explain" phase: against a real server it re-runs a failing case hundreds of times
    # (minutes) only to annotate the report.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("stageline"),
    derandomize=False,
    max_examples=500,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "stageline"))
