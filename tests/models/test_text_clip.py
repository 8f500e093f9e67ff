"""`clip` (table cells: cut at a word, marked) and `elapsed` (step durations, with units)."""

from __future__ import annotations

import pytest

from models.text import clip, elapsed


def test_clip_cuts_at_a_word_and_marks_the_cut() -> None:
    text = "not during the sale: the payment provider asked us to hold every change until Monday"
    shown, cut = clip(text, 40)
    assert cut and shown.endswith("…") and len(shown) <= 40
    kept = shown[:-1]
    assert text.startswith(kept) and text[len(kept)] in " :"  # never inside a word


def test_clip_keeps_a_short_text_whole_on_one_line() -> None:
    assert clip("verification failed:\n  connection refused", 80) == (
        "verification failed: connection refused",
        False,
    )
    assert clip("", 80) == ("", False)


def test_clip_marks_a_cut_inside_a_word_too_long_to_keep_whole() -> None:
    shown, cut = clip("x" * 200, 80)
    assert cut and shown == "x" * 79 + "…"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "40ms"),
        (0.5, "500ms"),
        (2.44, "2.4s"),
        (12.4, "12s"),
        (125, "2m 05s"),
        (3720, "1h 02m"),
    ],
)
def test_elapsed_always_carries_its_unit(seconds: float, shown: str) -> None:
    assert elapsed(seconds) == shown
