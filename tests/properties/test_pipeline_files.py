"""Pipeline files of any shape: the parser accepts a valid pipeline or refuses with its own
error (naming the line where there is one), quickly, and never lets anything else out
(KeyError, TypeError, RecursionError, a YAML library error) or echoes a pasted file back.

What it accepts also survives the way a release stores it: the stored JSON validates again,
to the same pipeline, when a promotion reads it back.
"""

from __future__ import annotations

import re
import time
from typing import Any

import yaml
from hypothesis import currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from models.pipeline import (
    MAX_DEPTH,
    MAX_PIPELINE_CHARS,
    MAX_VALUES,
    Pipeline,
    PipelineError,
    parse_pipeline,
)
from tests.models.test_pipeline import GOOD  # the pipeline file of the contract
from tests.properties.hostile import examples, hostile_strings, huge_strings

SOURCE = "pipeline.yaml"
QUICK = 5.0  # seconds, on a slow, shared two-core machine; most take milliseconds
# The places where the parser names a line: "pipeline.yaml line 3: ..." (YAML, structure)
# and "pipeline.yaml: line 3 (steps[0]): ...; line 5 (...)" (the schema).
LINE = re.compile(r"(?:^pipeline\.yaml line |^pipeline\.yaml: line |; line )(\d+)")
# YAML ends a line at any of these.
LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")


def check(text: str) -> Pipeline | str:
    """Parse `text`: a valid pipeline, or a PipelineError (its message is returned) that
    keeps the promises above."""
    started = time.monotonic()
    try:
        pipeline = parse_pipeline(text, SOURCE)
    except PipelineError as exc:
        elapsed = time.monotonic() - started
        assert elapsed < QUICK, f"refused, but only after {elapsed:.1f}s"
        message = exc.message
        assert message.startswith(SOURCE), message[:300]
        assert len(message) < 3_000, message[:300]
        lines = len(LINE_BREAK.split(text))
        for number in LINE.findall(message):
            assert 1 <= int(number) <= lines, (number, lines, message[:300])
        _event(f"refused: {_kind(message)}")
        return message
    elapsed = time.monotonic() - started
    assert elapsed < QUICK, f"accepted, but only after {elapsed:.1f}s"
    # As the release stores it, and as a promotion reads it back.
    stored = pipeline.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert Pipeline.model_validate(stored) == pipeline
    pipeline.references()  # every reference in an accepted file has a known form
    _event("accepted")
    return pipeline


def _event(what: str) -> None:
    if currently_in_test_context():
        event(what)


def _kind(message: str) -> str:
    for kind in ("not valid YAML", "expected a mapping", "nested", "values", "unknown field"):
        if kind in message:
            return kind
    return "schema"


@settings(max_examples=examples(150))
@given(
    st.one_of(st.text(), st.text(st.sampled_from("{}[]:-,&*!|>'\"#%@` \n\t\\x0a")), huge_strings)
)
def test_any_text_is_a_pipeline_or_a_clear_refusal(text: str) -> None:
    check(text)


# -- YAML-shaped data: the schema's own words, in any arrangement -----------------------

KEYS = [
    "steps",
    "activate",
    "verify",
    "exposes",
    "endpoints",
    "augmentations",
    "name",
    "path",
    "run",
    "env",
    "tool",
    "with",
    "http",
    "url",
    "method",
    "expect_status",
    "headers",
    "timeout_seconds",
    "interval_seconds",
    "deadline_seconds",
    "DATABASE_URL",
    "Steps",
    "<<",
]
SCALARS = [
    "migrate",
    "deploy-hook",
    "python",
    "${{ vars.BASE_URL }}",
    "${{ secrets.DATABASE_URL }}",
    "${{ tools.deploy-hook.url }}",
    "${{ release.version }}",
    "${{ env.name }}",
    "${{ nope.x }}",
    "${{ vars.A",
    "http://127.0.0.1/health",
    "https://x/${{ vars.P }}",
    "ftp://x",
    "GET",
    "DELETE",
    "200",
    "99",
    "1e400",
    "nan",
    "-1",
    "yes",
    "~",
    "",
    "X-Api-Key",
    "X: y",
    "a\0b",
    "lone \ud800 surrogate",
]

yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from(SCALARS),
    hostile_strings,
)
yaml_keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12), st.integers(-1, 3))
yaml_data = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(yaml_keys, children, max_size=5),
    ),
    max_leaves=25,
)


def plausible_step() -> st.SearchStrategy[dict[str, Any]]:
    """A step that is often valid, so the schema's deeper rules get exercised too."""
    words = st.one_of(st.sampled_from(SCALARS), st.text(max_size=15))
    return st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["migrate", "notify", "health"]), words)},
        optional={
            "run": st.lists(words, max_size=3),
            "env": st.dictionaries(st.one_of(st.sampled_from(KEYS), words), words, max_size=2),
            "tool": st.one_of(st.just("deploy-hook"), words),
            "with": st.dictionaries(words, words, max_size=2),
            "http": st.fixed_dictionaries(
                {"url": words},
                optional={
                    "expect_status": st.one_of(st.integers(), words),
                    "headers": st.dictionaries(words, words, max_size=2),
                    "deadline_seconds": st.one_of(st.floats(), words),
                },
            ),
            "timeout_seconds": st.one_of(st.integers(), words),
        },
    )


safe_words = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=12
).filter(lambda w: "${{" not in w and "}}" not in w)
references = st.sampled_from(
    ["${{ vars.BASE_URL }}", "${{ release.version }}", "${{ env.name }}", "${{ tools.hook.url }}"]
)
valid_steps = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.from_regex(r"[a-z][a-z0-9 ._-]{0,20}", fullmatch=True),
            "run": st.lists(safe_words | references, min_size=1, max_size=3),
        },
        optional={
            "env": st.dictionaries(
                st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
                safe_words | references | st.just("${{ secrets.TOKEN }}"),
                max_size=2,
            ),
            "timeout_seconds": st.integers(1, 86_400),
        },
    ),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["notify", "hook 2"]), "tool": st.just("deploy-hook")},
        optional={"with": st.dictionaries(safe_words, safe_words | references, max_size=2)},
    ),
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["health", "ready"]),
            "http": st.fixed_dictionaries(
                {
                    "url": st.sampled_from(
                        ["http://127.0.0.1:8080/health", "${{ vars.BASE_URL }}/x"]
                    )
                },
                optional={
                    "expect_status": st.integers(100, 599),
                    "method": st.sampled_from(["GET", "HEAD", "POST", "PUT"]),
                    "headers": st.dictionaries(
                        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True),
                        safe_words,
                        max_size=2,
                    ),
                },
            ),
        },
    ),
)

pipelines_as_data = st.one_of(
    st.fixed_dictionaries(
        {"steps": st.lists(valid_steps, min_size=1, max_size=3, unique_by=lambda s: s["name"])},
        optional={"verify": st.lists(valid_steps, max_size=2, unique_by=lambda s: s["name"])},
    ),
    yaml_data,
    st.fixed_dictionaries(
        {"steps": st.lists(plausible_step(), max_size=3)},
        optional={
            "activate": st.lists(plausible_step(), max_size=2),
            "verify": st.lists(plausible_step(), max_size=2),
            "exposes": st.dictionaries(
                st.sampled_from(["endpoints", "augmentations", "other"]),
                st.lists(st.fixed_dictionaries({"name": yaml_scalars, "path": yaml_scalars})),
                max_size=2,
            ),
        },
    ),
)


@settings(max_examples=examples(250))
@given(pipelines_as_data, st.sampled_from(["block", "flow"]))
def test_yaml_of_any_shape_is_a_pipeline_or_a_clear_refusal(data: Any, style: str) -> None:
    text = yaml.safe_dump(data, default_flow_style=style == "flow", allow_unicode=True)
    check(text)


# -- the contract's own example, mutated ----------------------------------------------

good_lines = GOOD.splitlines()
mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(good_lines) - 1), st.just("")),
    st.tuples(st.just("duplicate"), st.integers(0, len(good_lines) - 1), st.just("")),
    st.tuples(st.just("insert"), st.integers(0, len(good_lines)), hostile_strings),
    st.tuples(st.just("indent"), st.integers(0, len(good_lines) - 1), st.sampled_from([" ", "\t"])),
    st.tuples(st.just("dedent"), st.integers(0, len(good_lines) - 1), st.just("")),
    st.tuples(st.just("splice"), st.integers(0, len(GOOD) - 1), hostile_strings),
    st.tuples(st.just("cut"), st.integers(0, len(GOOD) - 1), st.just("")),
)


def mutate(text: str, how: tuple[str, int, str]) -> str:
    kind, at, extra = how
    lines = text.splitlines()
    at_line = min(at, len(lines) - 1) if lines else 0
    if kind == "delete" and lines:
        del lines[at_line]
    elif kind == "duplicate" and lines:
        lines.insert(at_line, lines[at_line])
    elif kind == "insert":
        lines.insert(min(at, len(lines)), extra)
    elif kind == "indent" and lines:
        lines[at_line] = extra + lines[at_line]
    elif kind == "dedent" and lines:
        lines[at_line] = lines[at_line][1:]
    elif kind == "splice":
        return text[: min(at, len(text))] + extra + text[min(at, len(text)) :]
    elif kind == "cut":
        return text[: min(at, len(text))]
    return "\n".join(lines) + "\n"


@settings(max_examples=examples(250))
@given(st.lists(mutation, min_size=1, max_size=4))
def test_the_contract_example_mutated_is_a_pipeline_or_a_clear_refusal(
    mutations: list[tuple[str, int, str]],
) -> None:
    text = GOOD
    for how in mutations:
        text = mutate(text, how)
    check(text)


# -- bombs, depth and size: refused, by name, in time ---------------------------------


@settings(max_examples=examples(20))
@given(st.integers(2, 12), st.integers(2, 9))
def test_anchor_and_alias_bombs_are_refused_quickly(width: int, levels: int) -> None:
    """Level n is a list of `width` aliases to level n-1: width**levels values in all."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    lines.append(f"steps: [{{name: a, run: *l{levels - 1}}}]")
    outcome = check("\n".join(lines) + "\n")
    assert isinstance(outcome, str), "a pipeline with unknown top-level keys was accepted"
    if width**levels > MAX_VALUES:
        assert f"more than {MAX_VALUES:,} values" in outcome, outcome


@settings(max_examples=examples(20))
@given(st.integers(MAX_DEPTH + 1, 5_000), st.sampled_from(["[", "{a: ", "- ", "indent"]))
def test_deep_nesting_is_refused_quickly(depth: int, opener: str) -> None:
    if opener == "indent":
        text = "steps:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, min(depth, 2_000)))
    else:
        closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
        # "- - - x" on a line of its own is a block sequence of block sequences.
        text = "steps:" + ("\n" if opener == "- " else " ") + opener * depth + "x" + closer * depth
    outcome = check(text[:MAX_PIPELINE_CHARS])
    assert isinstance(outcome, str) and "nested" in outcome, outcome


def test_a_huge_file_is_refused_before_it_is_read() -> None:
    started = time.monotonic()
    outcome = check(GOOD + "#" * (MAX_PIPELINE_CHARS + 1))
    assert isinstance(outcome, str) and "a pipeline file may have at most 256 KiB" in outcome
    assert time.monotonic() - started < 0.5
