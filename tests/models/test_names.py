"""Names a user gives: none can escape a directory, reach a shell, or pass for another.

Resource names (environments, apps, tools) become file names, workflow-id parts and
search-attribute values; keys (variables, secrets) become environment variables of steps.
"""

from __future__ import annotations

import pytest

from models.names import InvalidName, check_key, check_resource_name, check_version

ESCAPES = ["..", "../etc", "../../etc/passwd", "a/b", "/etc", "a\\b", "..\\x", "a\x00", "\x00"]
SHELL = [
    "a;b",
    "web; touch /tmp/pwned",
    "$(id)",
    "a$(id)",
    "`id`",
    "a|b",
    "a&b",
    "a\nb",
    "web\n",  # a trailing newline: `$` alone would have let it through
    "a\rb",
    "a'b",
    'a"b',
    "a b",
    " web",
    "web\t",
    "a>b",
    "a*",
    "a?",
    "${x}",
    "~",
]
LOOKALIKES = [
    "\uff57\uff45\uff42",  # fullwidth 'web'
    "w\u0435b",  # Cyrillic e
    "web\u200b",  # zero-width space
    "web\u0301",  # combining accent
    "\u1d21eb",  # small capital W
    "\u212aey",  # Kelvin sign, which lowercases to 'k'
    "stra\u00dfe",  # sharp s
    "\u0130d",  # dotted capital I
    "\u0661",  # Arabic-Indic digit one
    "\uff24\uff21\uff34\uff21",  # fullwidth DATA
]


@pytest.mark.parametrize("value", [*ESCAPES, *SHELL, *LOOKALIKES])
@pytest.mark.parametrize(
    "check",
    [
        lambda v: check_resource_name(v, "environment name"),
        lambda v: check_key(v, "variable name"),
        check_version,
    ],
    ids=["resource", "key", "version"],
)
def test_no_name_escapes_a_directory_reaches_a_shell_or_looks_like_another(
    check: object, value: str
) -> None:
    assert callable(check)
    with pytest.raises(InvalidName) as caught:
        check(value)
    message = str(caught.value)
    # The message shows the value as Python would (control characters visible) and says
    # what to do.
    assert repr(value) in message and "use " in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Prod", "it has upper case letters"),
        ("web\n", "it has '\\n' (U+000A)"),
        ("-web", "it starts with '-'"),
        ("1web", "it starts with '1'"),
        ("a/b", "it has '/', a path separator"),
        ("a\\b", "it has '\\\\', a path separator"),
        ("w\u0435b", "'\u0435' (U+0435), which is not an ASCII letter or digit"),
        ("web;id", "';' is not allowed"),
        ("", "it is empty"),
        ("a" * 64, "it has 64 characters, more than 63"),
    ],
)
def test_a_refused_resource_name_says_what_is_wrong(value: str, problem: str) -> None:
    with pytest.raises(InvalidName) as caught:
        check_resource_name(value, "environment name")
    assert problem in str(caught.value)


def test_a_huge_value_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidName) as caught:
        check_key("A" * 100_000 + "!", "variable name")
    message = str(caught.value)
    assert len(message) < 400 and "(100001 characters)" in message


@pytest.mark.parametrize("value", ["dev", "web-api", "a", "a" * 63, "prod2", "x-1-y"])
def test_resource_names_that_are_allowed(value: str) -> None:
    assert check_resource_name(value) == value


@pytest.mark.parametrize(
    "value", ["DATABASE_URL", "database_url", "_X", "a1", "A" * 128, "FeatureFlag"]
)
def test_keys_may_be_mixed_case_posix_shapes(value: str) -> None:
    assert check_key(value) == value


@pytest.mark.parametrize("value", ["1.4.0", "2024.01.02+build.7", "v1", "1.0.0-rc_1"])
def test_versions_that_are_allowed(value: str) -> None:
    assert check_version(value) == value


@pytest.mark.parametrize("value", ["Web", "WEB", "wEb", "DEV"])
def test_resource_names_never_differ_only_by_case(value: str) -> None:
    """Resource names are lowercase ASCII, so `Web` can never stand beside `web`."""
    with pytest.raises(InvalidName):
        check_resource_name(value)
