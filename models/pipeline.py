"""The pipeline file: its schema, its references, and parsing with line numbers.

The same file runs in every environment; only the values behind its references differ.
A file is validated once, when its release is created, so a promotion never meets a
malformed pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.errors import BadInput, error_text
from models.names import check_key, check_resource_name, header_problem, shown

REFERENCE = re.compile(r"\$\{\{(.*?)\}\}")
_REFERENCE_BODY = re.compile(
    r"^(?:(?P<scope>vars|secrets)\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)"
    r"|tools\.(?P<tool>[a-z][a-z0-9-]*)\.url"
    r"|release\.(?P<release>version|app|artifact)"
    r"|env\.(?P<env>name))$"
)
REFERENCE_FORMS = (
    "vars.NAME, secrets.NAME, tools.NAME.url, release.version, release.app, "
    "release.artifact, env.name"
)


class Reference(BaseModel):
    """One `${{ ... }}` reference, e.g. `secrets.DATABASE_URL` or `tools.deploy-hook.url`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["vars", "secrets", "tools", "release", "env"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.name}"

    @classmethod
    def parse(cls, body: str) -> Reference:
        match = _REFERENCE_BODY.fullmatch(body.strip())
        if match is None:
            written = "${{ " + body.strip() + " }}"
            raise ValueError(
                f"reference {shown(written)} has an unknown form; use one of {REFERENCE_FORMS}"
            )
        if match["scope"]:
            return cls(kind=match["scope"], name=match["key"])
        if match["tool"]:
            return cls(kind="tools", name=match["tool"])
        if match["release"]:
            return cls(kind="release", name=match["release"])
        return cls(kind="env", name=match["env"])


def find_references(text: str) -> list[Reference]:
    if "${{" in text and text.count("${{") != len(REFERENCE.findall(text)):
        raise ValueError(f"unclosed reference in {shown(text)}: write '${{{{ vars.NAME }}}}'")
    return [Reference.parse(body) for body in REFERENCE.findall(text)]


def substitute(text: str, lookup: Callable[[Reference], str]) -> str:
    """Replace every reference in `text` by what `lookup` returns for it."""
    return REFERENCE.sub(lambda m: lookup(Reference.parse(m.group(1))), text)


class HttpCheck(BaseModel):
    """An HTTP request whose status must match, retried until a deadline."""

    model_config = ConfigDict(extra="forbid")

    url: str
    method: Literal["GET", "HEAD", "POST", "PUT"] = "GET"
    expect_status: int = Field(default=200, ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    interval_seconds: float = Field(default=2, ge=0, le=300)
    deadline_seconds: float = Field(default=60, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not (value.startswith(("http://", "https://")) or value.startswith("${{")):
            raise ValueError(
                f"url {shown(value)} must start with http:// or https:// (or a reference)"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _header_shape(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if (problem := header_problem(name, text)) is not None:
                raise ValueError(problem)
        return value


class Step(BaseModel):
    """One step: a subprocess (`run`), a webhook tool call (`tool`) or an HTTP check (`http`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    run: list[str] | None = Field(default=None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    tool: str | None = None
    with_: dict[str, str] = Field(default_factory=dict, alias="with")
    http: HttpCheck | None = None
    timeout_seconds: int = Field(default=600, gt=0, le=86_400)

    @field_validator("run", mode="before")
    @classmethod
    def _run_is_argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                'run must be a list of arguments, e.g. ["python", "migrate.py"]; '
                "steps never run through a shell"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            check_key(key, "environment variable name")
        return value

    @field_validator("tool")
    @classmethod
    def _tool_name(cls, value: str | None) -> str | None:
        return None if value is None else check_resource_name(value, "tool name")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [k for k in ("run", "tool", "http") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"step {self.name!r} must have exactly one of run, tool or http "
                f"(it has {', '.join(kinds) or 'none'})"
            )
        if self.with_ and self.tool is None:
            raise ValueError(f"step {self.name!r}: 'with' only goes with a tool step")
        if self.env and self.run is None:
            raise ValueError(f"step {self.name!r}: 'env' only goes with a run step")
        for field, text in self.texts():
            where = field if len(field) <= 60 else f"{field[:57]}..."
            if "\0" in text:
                raise ValueError(
                    f"step {self.name!r} {where}: has a NUL character (\\0), which no program "
                    "argument, environment value or request can carry"
                )
            try:
                refs = find_references(text)
            except ValueError as exc:
                raise ValueError(f"step {self.name!r} {where}: {exc}") from None
            if field.startswith("run[") and any(r.kind == "secrets" for r in refs):
                raise ValueError(
                    f"step {self.name!r} {where}: a secret must not be a command-line "
                    "argument (other processes can read it); pass it through env:"
                )
        return self

    @property
    def kind(self) -> Literal["run", "tool", "http"]:
        if self.run is not None:
            return "run"
        return "tool" if self.tool is not None else "http"

    def texts(self) -> Iterator[tuple[str, str]]:
        """Every string that may hold references, with the field it sits in."""
        for i, arg in enumerate(self.run or []):
            yield f"run[{i}]", arg
        for key, value in self.env.items():
            yield f"env.{key}", value
        for key, value in self.with_.items():
            yield f"with.{key}", value
        if self.http is not None:
            yield "http.url", self.http.url
            for key, value in self.http.headers.items():
                yield f"http.headers.{key}", value


class Exposed(BaseModel):
    """Something a release offers once deployed: an endpoint or an augmentation."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    path: str = Field(min_length=1, max_length=500)


class Exposes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[Exposed] = Field(default_factory=list)
    augmentations: list[Exposed] = Field(default_factory=list)


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(min_length=1)
    activate: list[Step] = Field(default_factory=list)
    verify: list[Step] = Field(default_factory=list)
    # What the release exposes; the environment view lists it where the release runs.
    exposes: Exposes = Field(default_factory=Exposes)

    @model_validator(mode="after")
    def _check(self) -> Pipeline:
        for section in ("steps", "activate", "verify"):
            seen: set[str] = set()
            for step in getattr(self, section):
                if step.name in seen:
                    raise ValueError(f"{section}: two steps are named {step.name!r}")
                seen.add(step.name)
        return self

    def sections(self) -> Iterator[tuple[str, list[Step]]]:
        yield "steps", self.steps
        yield "activate", self.activate
        yield "verify", self.verify

    def references(self) -> set[Reference]:
        """Everything the target environment must provide for this pipeline to run."""
        found: set[Reference] = set()
        for _, steps in self.sections():
            for step in steps:
                if step.tool is not None:
                    found.add(Reference(kind="tools", name=step.tool))
                for _, text in step.texts():
                    found.update(find_references(text))
        return found


class PipelineError(BadInput):
    """A pipeline file that cannot be used, with the line or field at fault."""


# A pipeline file is a few dozen lines; these bounds refuse, quickly and by name, what only
# a mistake or an attack produces: a huge file, absurd nesting, or anchors and aliases that
# expand to millions of values ("billion laughs").
MAX_PIPELINE_CHARS = 256 * 1024
MAX_DEPTH = 32
MAX_VALUES = 10_000
MAX_PROBLEMS = 10


class _Builder:
    """Turn the YAML node tree into plain data, remembering the line of every path.

    Scalars stay the text the user wrote (YAML 1.1 would turn `1.10` into 1.1, `yes` into
    True and the key `ON` into True); the schema converts what must be a number. An alias
    (`*name`) is expanded where it is used, so every expanded value counts towards
    MAX_VALUES, and an alias inside its own anchor (a cycle) goes past MAX_DEPTH.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.values = 0

    def fail(self, node: yaml.Node, problem: str, line: int | None = None) -> PipelineError:
        at = node.start_mark.line + 1 if line is None else line
        return PipelineError(f"{self.source} line {at}: {problem}")

    def build(self, node: yaml.Node, path: tuple[str | int, ...] = ()) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            # An aliased node carries the line of its anchor: name the top-level entry instead.
            raise self.fail(
                node,
                f"the file holds more than {MAX_VALUES:,} values (each use of an alias *name "
                "counting in full); a pipeline needs far fewer",
                self.lines.get(path[:1]),
            )
        if len(path) > MAX_DEPTH:
            raise self.fail(
                node,
                f"nested more than {MAX_DEPTH} levels deep, where a pipeline needs a few (an "
                "alias *name used inside its own anchor nests without end)",
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "keys must be plain names")
                key = self.text(key_node)
                if key in mapping:
                    raise self.fail(key_node, f"key {shown(key)} appears twice")
                mapping[key] = self.build(value_node, (*path, key))
            return mapping
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return None if node.tag == "tag:yaml.org,2002:null" else self.text(node)

    def text(self, node: yaml.Node) -> str:
        value = str(node.value)
        try:
            value.encode()
        except UnicodeEncodeError:
            raise self.fail(
                node,
                "a lone surrogate (an escape such as \\ud800) is not a character of any text",
            ) from None
        return value


def _allowed(loc: tuple[str | int, ...]) -> str:
    if len(loc) == 1:
        return " (allowed: steps, activate, verify, exposes)"
    if loc[0] == "exposes":
        return (
            " (exposes has endpoints and augmentations, each a list of name and path)"
            if len(loc) == 2
            else " (an endpoint or augmentation has name and path)"
        )
    if len(loc) >= 3 and loc[2] == "http":
        return " (see the http: fields in the README)"
    return " (a step has name plus one of run, tool, http)"


def _describe(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


def parse_pipeline(text: str, source: str = "pipeline file") -> Pipeline:
    """Parse and validate a pipeline file; errors name the line and field at fault."""
    if len(text) > MAX_PIPELINE_CHARS:
        raise PipelineError(
            f"{source}: is {len(text):,} characters long; a pipeline file may have at most "
            f"{MAX_PIPELINE_CHARS // 1024} KiB (move scripts into files that steps run)"
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # The context mark is where the broken construct began, usually the line to fix.
        mark = exc.context_mark or exc.problem_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        what = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise PipelineError(f"{source}{where}: not valid YAML ({what})") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{source}: not valid YAML ({exc})") from None
    except RecursionError:
        raise PipelineError(
            f"{source}: nested too deeply to read (brackets or indentation hundreds of levels "
            "deep); a pipeline is a few levels deep"
        ) from None
    if not isinstance(node, yaml.MappingNode):
        raise PipelineError(f"{source}: expected a mapping with a 'steps:' list at the top level")
    builder = _Builder(source)
    data = builder.build(node)
    lines = builder.lines
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for error in errors[:MAX_PROBLEMS]:
            loc = _data_location(data, error["loc"])
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            message = error_text(error)
            if error["type"] == "extra_forbidden":
                message = f"unknown field {shown(str(loc[-1] if loc else ''))}" + _allowed(loc)
            problems.append(f"line {line} ({_short(_describe(loc))}): {message}")
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"and {len(errors) - MAX_PROBLEMS} more")
        raise PipelineError(f"{source}: " + "; ".join(problems)) from None


def _data_location(data: Any, loc: tuple[int | str, ...]) -> tuple[str | int, ...]:
    """The error's location in the file's data. pydantic adds parts of its own to some
    locations (a union member such as `list[str]`); they are dropped, but a key the user
    wrote is kept even when it looks like one (a key `[`)."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        elif isinstance(part, str) and "[" in part:
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _short(where: str) -> str:
    return where if len(where) <= 80 else f"{where[:77]}..."
