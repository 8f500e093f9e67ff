"""Bounding text that people read: step output, reasons."""

from __future__ import annotations


def tail(text: str, limit: int) -> str:
    """The end of a long text (where a failure is explained), saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def head(text: str, limit: int) -> str:
    """The start of a long text, cut at a word boundary where one is near, saying so."""
    if len(text) <= limit:
        return text
    marker = f" [... {len(text)} characters in all, cut]"
    cut = text[: max(limit - len(marker), 0)]
    space = cut.rfind(" ")
    if space > len(cut) * 3 // 4:
        cut = cut[:space]
    return cut + marker


def duration(minutes: float) -> str:
    """A duration as people read it, always with its unit: `7d`, `2h 30m`, `45m`, `0m`."""
    left = round(minutes)
    parts = []
    for unit, size in (("d", 24 * 60), ("h", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    if left or not parts:
        parts.append(f"{left}m")
    return " ".join(parts)
