"""The root command loads each command's module only when that command runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from cli.main import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_of_every_module_is_mapped_to_its_module() -> None:
    defined: dict[str, str] = {}
    for path in sorted((ROOT / "cli").glob("*.py")):
        module = importlib.import_module(f"cli.{path.stem}")
        for command in getattr(module, "COMMANDS", []):
            defined[command.name] = path.stem
    assert defined == COMMAND_MODULES


def test_a_configuration_command_does_not_load_temporal_or_the_web_stack() -> None:
    probe = (
        "import sys\n"
        "from cli.main import run_cli\n"
        "run_cli(['env', 'list', '--help'])\n"
        "heavy = [m for m in ('temporalio', 'fastapi', 'uvicorn', 'rich') if m in sys.modules]\n"
        "print('loaded:', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("loaded: []"), out
