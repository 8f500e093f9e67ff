"""Fixtures shared by workflow tests whose module builds the scenario in a `scenario_ws`
fixture (a stack and its webhook recorder): `ws` and `hooks` are its two halves. A module
with a `ws` of its own uses that instead."""

from __future__ import annotations

import pytest

from tests.http_recorder import Recorder
from tests.stack import Stack


@pytest.fixture
def ws(scenario_ws: tuple[Stack, Recorder]) -> Stack:
    return scenario_ws[0]


@pytest.fixture
def hooks(scenario_ws: tuple[Stack, Recorder]) -> Recorder:
    return scenario_ws[1]
