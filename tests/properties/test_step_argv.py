"""`run:` steps never go through a shell: the program gets exactly the arguments written.

activities/step_run.py starts steps with `asyncio.create_subprocess_exec(*argv)` (an argv
list, no `shell=True`), and the pipeline refuses `run:` as a string. These tests run the
real step executor on real subprocesses: shell metacharacters in an argument or in a
configuration value substituted into one stay literal text, and for any arguments at all
the program receives them unchanged.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.sandbox import build
from activities.step_run import run_step
from models.pipeline import PipelineError, Step, parse_pipeline
from models.resolution import ResolvedConfiguration, ResolvedVariable, StepContext
from tests.properties.hostile import SHELL, examples

PRINT_ARGV = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('PAYLOAD')]))"
# Steps run as the worker runs them: in the sandbox (no declared paths).
SANDBOX = build(shutil.which("bwrap") or "bwrap")


def context(run: list[str], env: dict[str, str], variables: dict[str, str]) -> StepContext:
    return StepContext(
        app="web",
        environment="dev",
        version="1.0.0",
        artifact=None,
        step=Step.model_validate({"name": "probe", "run": run, "env": env}),
        config=ResolvedConfiguration(
            environment="dev",
            app="web",
            vars={
                key: ResolvedVariable(value=value, version=1, scope="env")
                for key, value in variables.items()
            },
        ),
        workflow_id="promote-web-1.0.0-dev",
        data_namespaces={},
    )


async def run(ctx: StepContext) -> tuple[int | None, str]:
    done = await run_step(ctx, "promote-web-1.0.0-dev/run", lambda: None, sandbox=SANDBOX)
    return done.exit_code, done.output


def touches(marker: Path) -> list[str]:
    return [
        f"hi; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"a && touch {marker}",
        f"a || touch {marker}",
        f"a | touch {marker}",
        f"a\ntouch {marker}",
        f"> {marker}",
    ]


async def test_shell_metacharacters_in_arguments_stay_literal(tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    code, output = await run(context(["echo", "hi;", "touch", str(marker)], {}, {}))
    assert code == 0 and output == f"hi; touch {marker}\n"
    args = touches(marker)
    code, output = await run(context([sys.executable, "-c", PRINT_ARGV, *args], {}, {}))
    assert code == 0 and json.loads(output) == [args, None]
    assert not marker.exists()


async def test_configuration_values_with_metacharacters_stay_literal(tmp_path: Path) -> None:
    """A variable's value, substituted into an argument and into the step's environment."""
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    value = f"x; touch {marker} $(touch {marker}) `touch {marker}`"
    ctx = context(
        [sys.executable, "-c", PRINT_ARGV, "--flag=${{ vars.HOSTILE }}"],
        {"PAYLOAD": "${{ vars.HOSTILE }}"},
        {"HOSTILE": value},
    )
    code, output = await run(ctx)
    assert code == 0 and json.loads(output) == [[f"--flag={value}"], value]
    assert not marker.exists()


def test_a_command_line_as_one_string_is_refused() -> None:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline("steps:\n  - name: a\n    run: echo hi; touch /tmp/pwned\n")
    assert "steps never run through a shell" in caught.value.message


# What a process's arguments can carry: any text but NUL (and no lone surrogates).
arguments = st.lists(
    st.one_of(
        st.sampled_from(SHELL),
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
    ).filter(lambda a: "${{" not in a),
    max_size=5,
)


@settings(max_examples=examples(25))
@given(arguments)
async def test_the_program_receives_exactly_the_arguments_written(args: list[str]) -> None:
    code, output = await run(context([sys.executable, "-c", PRINT_ARGV, *args], {}, {}))
    assert code == 0, output
    received: list[Any] = json.loads(output)
    assert received == [args, None]
