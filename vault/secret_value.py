"""A secret value that does not print itself."""

from __future__ import annotations

import hmac
from typing import NoReturn

MASK = "***"


class SecretValue:
    """Plaintext held in memory only as long as an activity needs it.

    `str`, `repr` and formatting all give `***`, so a secret that slips into a log line, an
    exception or an f-string shows nothing; `reveal()` is the one way to the plaintext.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretValue cannot be pickled or serialised")
