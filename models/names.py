"""Validated names for everything a user names: environments, apps, keys, tools.

Names are lowercase so that two of them can never differ only by case, and they cannot
contain path separators, dots or shell metacharacters, so a name is safe as a file name,
a workflow-id part and a subprocess environment entry.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_RESOURCE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Configuration keys become environment variables of pipeline steps, so they follow the
# POSIX shape; upper case is the convention but not required.
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class InvalidName(ValueError):
    """A user-supplied name does not have the allowed shape."""


def check_resource_name(value: str, what: str = "name") -> str:
    if not _RESOURCE.match(value):
        raise InvalidName(
            f"{what} {value!r} is not valid: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter (for example 'staging' or 'web-api')"
        )
    return value


def check_key(value: str, what: str = "key") -> str:
    if not _KEY.match(value):
        raise InvalidName(
            f"{what} {value!r} is not valid: use letters, digits and '_', starting with a "
            "letter or '_', at most 128 characters (for example DATABASE_URL)"
        )
    return value


def check_version(value: str) -> str:
    if not _VERSION.match(value):
        raise InvalidName(
            f"version {value!r} is not valid: use letters, digits, '.', '_', '+' and '-', "
            "starting with a letter or digit, at most 64 characters (for example 1.4.0)"
        )
    return value


ResourceName = Annotated[str, AfterValidator(check_resource_name)]
KeyName = Annotated[str, AfterValidator(check_key)]
VersionName = Annotated[str, AfterValidator(check_version)]
