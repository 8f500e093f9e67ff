"""Bounding and wording text people read."""

from __future__ import annotations

import pytest

from models.text import duration, head, tail


@pytest.mark.parametrize(
    ("minutes", "shown"),
    [(0, "0m"), (45, "45m"), (60, "1h"), (150, "2h 30m"), (10080, "7d"), (1441, "1d 1m")],
)
def test_durations_always_carry_their_unit(minutes: int, shown: str) -> None:
    assert duration(minutes) == shown


def test_head_cuts_at_a_word_and_says_so() -> None:
    text = "word " * 100
    cut = head(text, 120)
    assert len(cut) <= 120 and cut.endswith("characters in all, cut]")
    assert "wor [" not in cut  # never mid-word
    assert head("short", 120) == "short"


def test_tail_keeps_the_end_and_says_how_much_was_cut() -> None:
    cut = tail("a" * 50 + "the end", 10)
    assert cut.endswith("a" * 3 + "the end") and cut.startswith("[... 47 characters cut ...]")
