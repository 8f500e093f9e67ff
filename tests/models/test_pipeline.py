"""The pipeline file: what is accepted, and how refusals name the line and field."""

from __future__ import annotations

import time

import pytest

from models.pipeline import PipelineError, Reference, parse_pipeline, substitute

GOOD = """\
steps:
  - name: migrate
    run: ["python", "scripts/migrate.py"]
    env: {DATABASE_URL: "${{ secrets.DATABASE_URL }}", FEATURE_SEARCH: "${{ vars.FEATURE_SEARCH }}"}
  - name: notify
    tool: deploy-hook
    with: {version: "${{ release.version }}"}
activate:
  - name: switch-alias
    tool: deploy-hook
    with: {action: activate, version: "${{ release.version }}"}
verify:
  - name: health
    http: {url: "${{ vars.BASE_URL }}/health", expect_status: 200}
"""


def test_contract_example_parses_with_all_its_references() -> None:
    pipeline = parse_pipeline(GOOD)
    assert [s.kind for s in pipeline.steps] == ["run", "tool"]
    assert sorted(map(str, pipeline.references())) == [
        "release.version",
        "secrets.DATABASE_URL",
        "tools.deploy-hook",
        "vars.BASE_URL",
        "vars.FEATURE_SEARCH",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "steps:\n  - name: a\n    docker: x\n",
            "line 3 (steps[0].docker): unknown field 'docker'",
        ),
        ("steps:\n  - name: a\n    run: [x\n", "line 3: not valid YAML"),
        ('steps:\n  - name: a\n    run: "echo hi"\n', "steps never run through a shell"),
        (
            'steps:\n  - name: a\n    run: [x, "${{ foo.bar }}"]\n',
            "line 2 (steps[0]): step 'a' run[1]: reference '${{ foo.bar }}' has an unknown form",
        ),
        ('steps:\n  - name: a\n    run: [x, "${{ vars.X }"]\n', "unclosed reference"),
        (
            'steps:\n  - name: a\n    run: [x, "${{ secrets.T }}"]\n',
            "must not be a command-line argument",
        ),
        ("steps:\n  - name: a\n    run: [x]\n    tool: t\n", "exactly one of run, tool or http"),
        (
            "steps:\n  - name: a\n    run: [x]\n  - name: a\n    run: [y]\n",
            "two steps are named 'a'",
        ),
        ("steps:\n  - name: a\n    run: [x]\n    run: [y]\n", "line 4: key 'run' appears twice"),
        ("deploy:\n  - name: a\n", "unknown field 'deploy' (allowed: steps, activate, verify"),
        (
            "steps: [{name: a, run: [x]}]\nexposes: {endpoints: [{name: api, url: /x}]}\n",
            "unknown field 'url' (an endpoint or augmentation has name and path)",
        ),
        ("- just\n- a list\n", "expected a mapping with a 'steps:' list"),
        ("", "expected a mapping"),
        ("steps:\n  - name: h\n    http: {url: 'ftp://x'}\n", "must start with http://"),
        ("steps:\n  - name: a\n    tool: Bad_Name\n", "tool name 'Bad_Name' is not valid"),
    ],
)
def test_malformed_pipelines_are_refused_with_the_place_at_fault(text: str, expected: str) -> None:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, "pipeline.yaml")
    assert expected in caught.value.message
    assert caught.value.message.startswith("pipeline.yaml")


def test_yaml_scalars_stay_as_written_text() -> None:
    pipeline = parse_pipeline(
        "steps:\n  - name: a\n    run: [echo, 1.10]\n    env: {ON: yes, N: 3}\n"
    )
    assert pipeline.steps[0].run == ["echo", "1.10"]
    assert pipeline.steps[0].env == {"ON": "yes", "N": "3"}


def test_substitute_replaces_each_reference() -> None:
    values = {"vars.A": "1", "release.version": "2.0"}
    out = substitute("${{ vars.A }}-${{release.version}}", lambda r: values[str(r)])
    assert out == "1-2.0"
    assert Reference.parse(" tools.deploy-hook.url ") == Reference(kind="tools", name="deploy-hook")


BOMB = """\
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
steps: [{name: a, run: *h}]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "Billion laughs": 10**8 values from nine short lines.
        (BOMB, "line 4: the file holds more than 10,000 values"),
        ("steps: &s [{name: a, run: *s}]\n", "line 1: nested more than 32 levels deep"),
        ("steps: " + "[" * 5_000 + "]" * 5_000, "nested too deeply to read"),
        ("steps: [{name: a, run: [x]}]\n" + "#" * 300_000, "may have at most 256 KiB"),
        ('steps:\n  - name: a\n    run: ["x\\0y"]\n', "run[0]: has a NUL character"),
        (
            'steps:\n  - name: a\n    run: [x]\n    env: {A: "1\\0"}\n',
            "env.A: has a NUL character",
        ),
        (
            'steps:\n  - name: h\n    http: {url: "http://x", headers: {"X: y\\nZ": "1"}}\n',
            "line 3 (steps[0].http.headers): header name 'X: y\\nZ' is not valid",
        ),
        (
            'steps:\n  - name: h\n    http: {url: "http://x", headers: {X-A: "1\\r\\nB: 2"}}\n',
            "header X-A has a line break or NUL character in its value",
        ),
        (
            'steps:\n  - name: a\n    run: ["\\ud800"]\n',
            "line 3: a lone surrogate (an escape such as \\ud800) is not a character",
        ),
        # A key the schema does not know, that looks like pydantic's own location parts.
        ("'[': 1\nsteps: [{name: a, run: [x]}]\n", "line 1 ([): unknown field '['"),
    ],
)
def test_hostile_files_are_refused_quickly_with_their_own_error(text: str, expected: str) -> None:
    started = time.monotonic()
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, "pipeline.yaml")
    assert time.monotonic() - started < 5
    assert expected in caught.value.message, caught.value.message


def test_refusals_quote_a_long_value_shortly_and_list_at_most_ten_problems() -> None:
    long = "x" * 100_000
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(f'steps:\n  - name: a\n    run: [x, "${{{{ vars.A {long}"]\n')
    assert "(100011 characters)" in caught.value.message
    assert len(caught.value.message) < 500
    many = "steps:\n" + "".join(f"  - name: s{i}\n    docker: x\n" for i in range(40))
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(many)
    assert caught.value.message.count("unknown field 'docker'") == 10
    assert caught.value.message.endswith("; and 30 more")
