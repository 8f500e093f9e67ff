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


def elapsed(seconds: float) -> str:
    """A short duration in seconds as people read it, with its unit: `40ms`, `2.4s`, `12s`,
    `2m 05s`, `1h 02m`."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def clip(text: str, limit: int) -> tuple[str, bool]:
    """One line of at most `limit` characters for a table cell: whitespace (newlines too)
    collapsed, a longer text cut at a word boundary and ended with `…`. Returns the line and
    whether it was cut, so the caller can say where the whole text is. A single word longer
    than half the limit is cut inside the word, still marked with `…`."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line, False
    cut = line[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    if space >= len(cut) // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…", True
