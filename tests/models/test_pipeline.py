"""The pipeline file: what is accepted, and how refusals name the line and field."""

from __future__ import annotations

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
