"""The parameters every command group shares, in one place: `--json`, `--env`, `--app`, and
the types that check a name or free text before anything runs.

A name argument or option takes its type from here (`ENVIRONMENT`, `APP`, `TOOL`, `GROUP`),
so every command refuses a name that cannot exist the same way: one line naming what is
wrong, exit 3, before anything is looked up, echoed whole or stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.types import StringParamType

from models.names import InvalidName, check_resource_name, shown

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


class ResourceName(StringParamType):
    """The name of something stored: an environment, an app, a tool, a group
    (`models.names.check_resource_name`); `what` says which, in the error."""

    name = "name"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        name = super().convert(value, param, ctx)
        try:
            return check_resource_name(name, self.what)
        except InvalidName as exc:
            self.fail(str(exc), param, ctx)


class Utf8Text(StringParamType):
    """Free text must be text: bytes that are not UTF-8 reach Python as lone surrogates,
    which no database, file or request can hold."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = super().convert(value, param, ctx)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(f"{shown(text)} is not UTF-8 text (the shell passed other bytes)", param, ctx)
        return text


ENVIRONMENT = ResourceName("environment name")
APP = ResourceName("app name")
TOOL = ResourceName("tool name")
GROUP = ResourceName("group name")
TEXT = Utf8Text()


def env_option(*, required: bool = True, help: str | None = None) -> Callable[[F], F]:
    """`--env ENV`, one environment, passed as `environment`."""
    return click.option(
        "--env", "environment", required=required, metavar="ENV", type=ENVIRONMENT, help=help
    )


def envs_option(*, help: str) -> Callable[[F], F]:
    """`--env ENV`, repeatable and required, passed as `envs`."""
    return click.option(
        "--env", "envs", multiple=True, required=True, metavar="ENV", type=ENVIRONMENT, help=help
    )


def app_option(*, help: str | None = None) -> Callable[[F], F]:
    """`--app APP`, optional, passed as `app`."""
    return click.option("--app", metavar="APP", type=APP, help=help)


# `--app` where it narrows a setting to one app within the environment.
app_scope_option = app_option(help="Scope to one app (overrides the env's).")
