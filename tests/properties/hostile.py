"""Hypothesis strategies for what a careless or hostile person can type: into the Temporal
UI's "Start workflow" form, a signal, a pipeline file, or a command line."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter

# Each test names its own example budget; the `thorough` profile multiplies it.
_SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def examples(n: int) -> int:
    return n * _SCALE


# Names that must never reach a file path, a shell, or a second spelling of the same thing.
PATH_LIKE = ["..", "../../etc", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", ".", "~root"]
SHELL = [
    "web; touch /tmp/pwned",
    "$(id)",
    "`id`",
    "a|b",
    "a&b",
    "a&&b",
    "a\nb",
    "a\rb",
    "'web'",
    '"web"',
    "web app",
    "a>b",
    "a<b",
    "*",
    "${HOME}",
    "-rf",
    "--help",
]
NUL_AND_CONTROL = ["a\x00b", "\x00", "web\x00", "\t", "a\x1bb", "\u202eweb", "web\u200b"]
LOOKALIKES = [
    "\uff57\uff45\uff42",  # fullwidth
    "w\u0435b",  # Cyrillic e
    "\u1d21eb",  # small capital W
    "web\u0301",  # combining accent
    "\ufb01le",  # ligature
    "\u2168",  # roman numeral
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "DATABASE_URL\u00a0",  # no-break space
    "\uff24\uff21\uff34\uff21\uff22\uff21\uff33\uff25_URL",
    "\u0130",  # dotted capital I: lowercases to two code points
    "\u00df",
]
CASE_VARIANTS = ["WEB", "Web", "DEV", "Dev", "Staging", "PRODUCTION", "wEb"]
EDGE = ["", " ", "-", "_", "0", "-web", "web-", "a" * 63, "a" * 64, "a" * 129, "1.4.0", "null"]
HOSTILE_NAMES = [*PATH_LIKE, *SHELL, *NUL_AND_CONTROL, *LOOKALIKES, *CASE_VARIANTS, *EDGE]

# A 100 KB string, built rather than drawn: drawing it character by character is slow.
huge_strings = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["a", "é", "😀", "\x00", "/", "$"]),
    st.sampled_from([4_096, 100_000]),
)

hostile_strings: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=12),
    huge_strings,
)

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    # What JSON can carry exactly (the UI is a browser form).
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_strings,
)


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(max_size=12), children, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def object_inputs(
    fields: dict[str, list[Any]], optional: dict[str, list[Any]] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object shaped like a workflow input: each field mostly plausible (from
    `fields`, which mixes known, unknown and malformed values), else hostile, of any JSON
    type, or missing; plus, sometimes, extra fields, among them case variants of the real
    names (`App`, `TARGET`)."""
    every = {**fields, **(optional or {})}

    def one_field(good: list[Any]) -> st.SearchStrategy[Any]:
        # one_of picks a branch evenly: plausible values four times out of six.
        plausible = st.sampled_from(good)
        return st.one_of(
            plausible, plausible, plausible, plausible, hostile_strings, json_values(4)
        )

    required = st.fixed_dictionaries(
        {name: one_field(good) for name, good in fields.items()},
        optional={name: one_field(good) for name, good in (optional or {}).items()},
    )
    some_missing = st.fixed_dictionaries(
        {}, optional={name: one_field(good) for name, good in every.items()}
    )
    variants = [v for name in every for v in (name.upper(), name.title(), f"{name} ")]
    extras = st.dictionaries(
        st.one_of(st.sampled_from(variants), st.sampled_from(HOSTILE_NAMES), st.text(max_size=8)),
        json_values(3),
        min_size=1,
        max_size=2,
    )
    return st.builds(
        lambda base, extra: {**extra, **base},
        st.one_of(required, required, required, some_missing),
        st.one_of(st.just({}), st.just({}), st.just({}), extras),
    )


def workflow_inputs(
    fields: dict[str, list[Any]], optional: dict[str, list[Any]] | None = None
) -> st.SearchStrategy[Any]:
    """Mostly objects shaped like the input; sometimes any JSON value at all."""
    shaped = object_inputs(fields, optional)
    return st.one_of(shaped, shaped, shaped, shaped, json_values())


def as_received(raw: Any) -> Any:
    """A value as a workflow or signal handler receives it: through the JSON data converter
    the worker uses (so `1.0` may arrive as a float, a tuple as a list)."""
    converter = pydantic_data_converter.payload_converter
    return converter.from_payloads(converter.to_payloads([raw]), [Any])[0]
