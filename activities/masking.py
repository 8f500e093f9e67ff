"""Masking secret values in captured output, as CI systems do."""

from __future__ import annotations

from vault.secret_value import MASK

MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words and digits
MAX_OUTPUT_CHARS = 16_000


def mask(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of every secret (and each line of a multi-line one)."""
    needles: set[str] = set()
    for value in secrets:
        for candidate in (value, value.strip(), *value.splitlines()):
            candidate = candidate.strip()
            if len(candidate) >= MIN_MASKED_LENGTH:
                needles.add(candidate)
    # Longest first, so a secret containing another is masked whole.
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, MASK)
    return text


def tail(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """The end of a long output, which is where failures are explained."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]
