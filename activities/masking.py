"""Masking secret values in captured output, as CI systems do.

Masking always comes before any cut (a cap, a tail, a head): a cut made first can leave
most of a secret in view, and the part that is left no longer matches the secret. Output
read piece by piece goes through `StreamMasker`, which never lets out text that a later
piece could turn into (part of) a secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from vault.secret_value import MASK

# A line of a multi-line secret is masked on its own only from this length: shorter lines
# ("}", "--") would mask ordinary text. The whole value is masked whatever its length.
MIN_LINE_CHARS = 4
MAX_OUTPUT_CHARS = 16_000
# How much unmasked text a stream may hold while a run of touching secrets goes on; past it,
# the run is masked in two parts (two masks side by side), never shown.
MAX_PENDING_CHARS = 256 * 1024

Span = tuple[int, int]


def spellings(value: str) -> set[str]:
    """Every form in which stageline itself may put a secret into something that a program
    or a webhook can echo back: as is (also each line of a multi-line value), JSON-escaped
    (a tool's body), URL-encoded, and base64 (a basic-auth profile's Authorization header).
    `Bearer <token>` contains the token itself."""
    wholes = {value, value.strip()} - {""}
    parts = set(wholes)
    for line in value.splitlines():
        if len(line.strip()) >= MIN_LINE_CHARS:
            parts.add(line.strip())
    found: set[str] = set()
    for part in parts:
        found.update(
            (
                part,
                json.dumps(part)[1:-1],
                json.dumps(part, ensure_ascii=False)[1:-1],  # as httpx encodes a JSON body
                quote(part, safe=""),
                quote(part),
                quote_plus(part),
            )
        )
    # Exactly what step_tool sends for a basic-auth profile.
    found.update(base64.b64encode(whole.encode()).decode() for whole in wholes)
    found.discard("")
    return found


def needles(secrets: Iterable[str]) -> tuple[str, ...]:
    """The strings to mask for these secrets, longest first."""
    found: set[str] = set()
    for value in secrets:
        found |= spellings(value)
    return tuple(sorted(found, key=len, reverse=True))


def _spans(text: str, needles: tuple[str, ...]) -> list[Span]:
    """The parts of text covered by an occurrence of a needle, as sorted [start, end).

    Overlapping and touching occurrences merge into one span, so no character of any
    occurrence survives next to another one (replacing needles one after the other would
    leave the tail of a secret that overlapped one already replaced)."""
    found: list[Span] = []
    for needle in needles:
        size = len(needle)
        at = text.find(needle)
        while at != -1:
            start, end = at, at + size
            # Extend by the last occurrence starting inside (or touching) the run so far:
            # the ones before it lie within it, so a run of repeats costs one step per
            # needle length rather than one per character.
            while (at := text.rfind(needle, at + 1, end + size)) != -1:
                end = at + size
            found.append((start, end))
            at = text.find(needle, end + 1)
    found.sort()
    merged: list[Span] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _render(text: str, spans: list[Span], start: int, stop: int) -> str:
    """text[start:stop] with each span (clipped to it) replaced by one mask."""
    out: list[str] = []
    at = start
    for s, e in spans:
        if e <= start or s >= stop:
            continue
        s, e = max(s, start), min(e, stop)
        out.append(text[at:s])
        out.append(MASK)
        at = e
    out.append(text[at:stop])
    return "".join(out)


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every spelling of every secret (whatever its length)."""
    found = needles(secrets)
    if not found:
        return text
    return _render(text, _spans(text, found), 0, len(text))


class StreamMasker:
    """Masks text that arrives in pieces: `feed` each piece, then `finish`; the pieces given
    back, joined, are `mask(whole text)`.

    It holds back the last (longest needle - 1) characters, and more while a secret reaches
    into them, so a secret split across pieces is masked whole. After a forced cut (a run of
    touching secrets longer than `max_pending`) it still masks every character of every
    secret, keeping the raw text just before the cut to find a secret that crosses it.
    """

    def __init__(self, secrets: Iterable[str], max_pending: int = MAX_PENDING_CHARS) -> None:
        self._needles = needles(secrets)
        self._hold = max((len(n) for n in self._needles), default=1) - 1
        self._max_pending = max(max_pending, 2 * self._hold + 1)
        self._context = ""  # raw text already given back, the last `_hold` characters of it
        self._pending = ""  # raw text not given back yet

    def feed(self, text: str) -> str:
        self._pending += text
        return self._emit(final=False)

    def finish(self) -> str:
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        if not self._needles:
            out, self._pending = self._pending, ""
            return out
        window = self._context + self._pending
        base = len(self._context)
        spans = _spans(window, self._needles)
        cut = len(window)
        if not final:
            # Every occurrence starting before `cut` lies wholly inside the window.
            cut -= self._hold
            for s, e in spans:
                # A span reaching `cut` may still grow (or merge) with text to come.
                if s < cut <= e:
                    cut = s
                    break
            if len(window) - cut > self._max_pending:
                cut = len(window) - self._hold
        if cut <= base:
            return ""
        out = _render(window, spans, base, cut)
        self._context = window[max(0, cut - self._hold) : cut]
        self._pending = window[cut:]
        return out
