"""Entry point: the root command, and the one place where errors become exit codes."""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

import click
from pydantic import ValidationError

from cli.output import error
from models.errors import ExitCode, StagelineError, describe
from models.names import InvalidName

# Each command and the module under cli/ that defines it (in its COMMANDS). A module is
# imported only when one of its commands runs, so `stageline env list` never loads the
# Temporal client, the codec server or the dev stack: a command starts in half the time.
COMMAND_MODULES = {
    "env": "environments",
    "app": "apps",
    "var": "variables",
    "secret": "encrypted_secrets",
    "tool": "tools",
    "release": "releases",
    "vault": "master_key",
    "audit": "audit",
    "promote": "promotion",
    "train": "promotion",
    "rollback": "promotion",
    "status": "promotion",
    "history": "promotion",
    "diff": "promotion",
    "approve": "decisions",
    "reject": "decisions",
    "override": "decisions",
    "group": "groups",
    "reviewer": "reviewers",
    "user": "principals",
    "token": "principals",
    "worker": "runtime",
    "dev": "runtime",
    "server": "runtime",
    "login": "principals",
    "logout": "principals",
    "codec-server": "runtime",
    "data": "data",
    "notify": "notify",
}


class LazyGroup(click.Group):
    """The root group: its commands are loaded from COMMAND_MODULES on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is None:
            return None
        commands: list[click.Command] = importlib.import_module(f"cli.{module}").COMMANDS
        return next(c for c in commands if c.name == cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="stageline")
def cli() -> None:
    """stageline: promote releases through environments, one Temporal workflow each."""


def _exit(code: int) -> NoReturn:
    # Exit without interpreter finalisation: the Temporal client's native threads can crash
    # a finalising interpreter (sdk-python#300), which would turn a success into SIGABRT.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    _exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    """Run one command; every failure becomes one line on stderr and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="stageline", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        error("aborted")
        return 130
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        error(f"{exc.format_message()}{hint}")
        return ExitCode.BAD_INPUT
    except click.ClickException as exc:
        error(exc.format_message())
        return ExitCode.BAD_INPUT
    except StagelineError as exc:
        error(exc.message)
        return exc.exit_code
    except InvalidName as exc:
        error(str(exc))
        return ExitCode.BAD_INPUT
    except ValidationError as exc:
        error(describe(exc))
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    main()
