"""A serving worker's garbage collector leaves alone what was allocated before it served."""

from __future__ import annotations

import gc

from worker.heap import THRESHOLDS, long_lived_heap


def collected(thing: object) -> bool:
    """Whether a collection of some generation would walk `thing`."""
    return any(o is thing for g in range(3) for o in gc.get_objects(generation=g))


def test_the_heap_before_serving_is_frozen_and_the_defaults_come_back() -> None:
    before = gc.get_threshold()
    startup = [object() for _ in range(10)]  # a list: tracked by the collector
    assert collected(startup)
    with long_lived_heap():
        assert gc.get_freeze_count() > 0
        assert not collected(startup)
        assert gc.get_threshold() == THRESHOLDS
        served = [object()]
        assert collected(served)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    assert collected(startup)
