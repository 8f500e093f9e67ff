"""Validated names for everything a user names: environments, apps, keys, tools.

Names are lowercase so that two of them can never differ only by case, and they cannot
contain path separators, dots or shell metacharacters, so a name is safe as a file name,
a workflow-id part and a subprocess environment entry. Only ASCII is allowed, so no name
has a lookalike (fullwidth letters, a Cyrillic 'e') that reads the same but is another.

Every check matches the whole text (`fullmatch`): a `$` anchor alone would let a trailing
newline through (`re.match("^a$", "a\\n")` matches).
"""

from __future__ import annotations

import re
import string
from typing import Annotated

from pydantic import AfterValidator

_RESOURCE = re.compile(r"[a-z][a-z0-9-]{0,62}")
# Configuration keys become environment variables of pipeline steps, so they follow the
# POSIX shape; upper case is the convention but not required.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

_LOWER = frozenset(string.ascii_lowercase)
_DIGITS = frozenset(string.digits)
_UPPER = frozenset(string.ascii_uppercase)
_RESOURCE_CHARS = (_LOWER | _DIGITS | {"-"}, _LOWER)
_KEY_CHARS = (_LOWER | _UPPER | _DIGITS | {"_"}, _LOWER | _UPPER | {"_"})
_VERSION_CHARS = (_LOWER | _UPPER | _DIGITS | set("._+-"), _LOWER | _UPPER | _DIGITS)

# How much of a refused value an error message quotes: enough to recognise it, never a
# whole pasted file.
SHOWN_CHARS = 40


class InvalidName(ValueError):
    """A user-supplied name does not have the allowed shape."""


def shown(value: str) -> str:
    """A value as an error message quotes it: repr, so that control characters and
    invisible ones are visible, and cut to SHOWN_CHARS with its length said."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


# A person (reviewer): a user name or e-mail; safe as a file name too (no '/', no leading
# '.'). A group is written '@' + such a name.
PERSON_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")

# HTTP header names are RFC 9110 tokens; anything else (a space, a colon, a newline) would
# let one header smuggle in another, or fail at the request.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


def header_problem(name: str, value: str) -> str | None:
    """What is wrong with one HTTP header a user gave (pipeline file or tool profile)."""
    if not HEADER_NAME.fullmatch(name):
        return (
            f"header name {shown(name)} is not valid: use letters, digits and '-' "
            "(for example X-Api-Key)"
        )
    if any(c in value for c in "\r\n\0"):
        return (
            f"header {name} has a line break or NUL character in its value; a header value "
            "is one line"
        )
    return None


def _char(c: str) -> str:
    if c.isascii() and c.isprintable():
        return repr(c)
    return f"{c!r} (U+{ord(c):04X})"


def _problem(value: str, chars: tuple[frozenset[str], frozenset[str]], limit: int) -> str:
    """What exactly is wrong with `value`, in a few words."""
    allowed, first = chars
    if not value:
        return "it is empty"
    if len(value) > limit:
        return f"it has {len(value)} characters, more than {limit}"
    for position, c in enumerate(value):
        if position == 0 and c in allowed and c not in first:
            return f"it starts with {_char(c)}"
        if c in allowed:
            continue
        if c in _UPPER and c.lower() in allowed:
            return "it has upper case letters"
        if not c.isascii():
            return f"it has {_char(c)}, which is not an ASCII letter or digit"
        if c in "/\\":
            return f"it has {_char(c)}, a path separator"
        if c.isspace() or not c.isprintable():
            return f"it has {_char(c)}"
        return f"{_char(c)} is not allowed"
    return "it does not have the allowed shape"  # pragma: no cover - the loop finds it


def check_resource_name(value: str, what: str = "name") -> str:
    if not _RESOURCE.fullmatch(value):
        raise InvalidName(
            f"{what} {shown(value)} is not valid ({_problem(value, _RESOURCE_CHARS, 63)}): "
            "use 1-63 lowercase letters, digits and '-', starting with a letter "
            "(for example 'staging' or 'web-api')"
        )
    return value


def check_key(value: str, what: str = "key") -> str:
    if not _KEY.fullmatch(value):
        raise InvalidName(
            f"{what} {shown(value)} is not valid ({_problem(value, _KEY_CHARS, 128)}): "
            "use letters, digits and '_', starting with a letter or '_', at most 128 "
            "characters (for example DATABASE_URL)"
        )
    return value


def check_version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise InvalidName(
            f"version {shown(value)} is not valid ({_problem(value, _VERSION_CHARS, 64)}): "
            "use letters, digits, '.', '_', '+' and '-', starting with a letter or digit, "
            "at most 64 characters (for example 1.4.0)"
        )
    return value


ResourceName = Annotated[str, AfterValidator(check_resource_name)]
KeyName = Annotated[str, AfterValidator(check_key)]
VersionName = Annotated[str, AfterValidator(check_version)]
