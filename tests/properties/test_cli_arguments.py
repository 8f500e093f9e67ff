"""The configuration commands with arguments of any kind, through the real command line.

`run_cli` is what the `stageline` executable runs (minus its final `os._exit`): argument
parsing, the commands, and the one place where errors become exit codes. It runs here in
process, so a hundred commands cost seconds, not minutes of interpreter starts.

Whatever the arguments: the command succeeds, or exits 2 or 3 with one line on stderr, never
a traceback; a failed command changes nothing stored; what succeeds has a valid name; and no
two keys one app sees differ only by case.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cli.main import run_cli
from tests.conftest import KEY_TEXT, assert_only_refusal_recorded
from tests.properties.hostile import HOSTILE_NAMES, examples, huge_strings

RESOURCE = re.compile(r"[a-z][a-z0-9-]{0,62}")
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
PIPELINE = "steps:\n  - name: migrate\n    run: [python, -c, pass]\n"


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Stageline:
    """`stageline ARGS` in this process, with its own STAGELINE_HOME and standard streams.

    Commands run one at a time on a thread of their own, so that their `asyncio.run` never
    meets the test session's event loop."""

    def __init__(self, home: Path, pool: ThreadPoolExecutor) -> None:
        self.home = home
        self.pool = pool

    def __call__(self, *args: str, stdin: str = "") -> Ran:
        return self.pool.submit(self._run, list(args), stdin).result(timeout=120)

    def _run(self, args: list[str], stdin: str) -> Ran:
        out, err = io.StringIO(), io.StringIO()
        saved_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = run_cli(args)
                except BaseException:  # what the real executable would print as a traceback
                    return Ran(-1, out.getvalue(), traceback.format_exc())
        finally:
            sys.stdin = saved_stdin
        return Ran(code, out.getvalue(), err.getvalue())

    def snapshot(self) -> dict[str, list[tuple[object, ...]]]:
        conn = sqlite3.connect(self.home / "stageline.db")
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {
                t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables
            }
        finally:
            conn.close()

    def keys_by_view(self) -> list[list[str]]:
        """For each environment, the distinct variable and secret keys each app sees (its
        own scope and the environment's), and those of the environment scope alone."""
        conn = sqlite3.connect(self.home / "stageline.db")
        try:
            rows = conn.execute(
                "SELECT environment_id, scope, key FROM variable "
                "UNION SELECT environment_id, scope, key FROM secret"
            ).fetchall()
        finally:
            conn.close()
        views: dict[tuple[int, str], set[str]] = {}
        for env_id, scope, key in rows:
            views.setdefault((env_id, scope), set()).add(key)
        seen = []
        for (env_id, scope), keys in views.items():
            env_keys = views.get((env_id, "env"), set())
            seen.append(sorted(keys | env_keys if scope != "env" else keys))
        return seen


@contextlib.contextmanager
def workspace(home: Path) -> Iterator[Stageline]:
    """dev and production, app web, variable FEATURE and secret DATABASE_URL in dev, tool
    deploy-hook: built through the command line."""
    home.mkdir()
    (home / "pipeline.yaml").write_text(PIPELINE)
    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(max_workers=1) as pool:
        for name in [
            "STAGELINE_DATABASE_URL",
            "STAGELINE_MASTER_KEY_FILE",
            "STAGELINE_WORKSPACE",
            "TEMPORAL_ADDRESS",
            "TEMPORAL_NAMESPACE",
        ]:
            patch.delenv(name, raising=False)
        patch.setenv("STAGELINE_HOME", str(home))
        patch.setenv("STAGELINE_MASTER_KEY", KEY_TEXT)
        patch.setenv("STAGELINE_USER", "tester")
        run = Stageline(home, pool)
        for args, stdin in [
            (["env", "create", "dev"], ""),
            (["env", "create", "production", "--required-approvals", "1", "--reviewer", "a"], ""),
            (["app", "create", "web", "--env", "dev", "--env", "production"], ""),
            (["var", "set", "FEATURE", "on", "--env", "dev"], ""),
            (["secret", "set", "DATABASE_URL", "--env", "dev"], "s3cret-value"),
            (["tool", "create", "deploy-hook", "--kind", "webhook"], ""),
        ]:
            done = run(*args, stdin=stdin)
            assert done.code == 0, done.err
        yield run


@pytest.fixture(scope="module")
def stageline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stageline]:
    with workspace(tmp_path_factory.mktemp("hostile-cli") / "home") as run:
        yield run


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Stageline]:
    with workspace(tmp_path / "home") as run:
        yield run


# -- what a person might type ---------------------------------------------------------

# A process's arguments cannot hold NUL; bytes that are not UTF-8 arrive as surrogates.
typed = st.one_of(
    st.sampled_from([n for n in HOSTILE_NAMES if "\x00" not in n]),
    st.sampled_from(["\udcff", "caf\udce9", "-", "--", "-x", "--env"]),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=20),
    huge_strings.filter(lambda s: "\x00" not in s),
)
known_names = st.one_of(
    st.sampled_from(["dev", "production", "web", "deploy-hook", "qa", "nope"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
)
known_keys = st.one_of(
    st.sampled_from(["FEATURE", "feature", "Feature", "DATABASE_URL", "database_url", "X"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
)
plain_values = st.one_of(
    st.sampled_from(["on", "", "a=b", "http://x", "X-Env=dev"]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30),
)


def command(*parts: Any) -> st.SearchStrategy[list[str]]:
    """Concatenate fixed words, drawn words and drawn option lists into one argv."""
    strategies = [p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]
    return st.tuples(*strategies).map(
        lambda items: [w for item in items for w in (item if isinstance(item, list) else [item])]
    )


def commands_from(
    names: st.SearchStrategy[str], keys: st.SearchStrategy[str], values: st.SearchStrategy[str]
) -> st.SearchStrategy[list[str]]:
    scope: st.SearchStrategy[list[str]] = st.one_of(st.just([]), command("--app", names))
    return st.one_of(
        command("env", "create", names, st.one_of(st.just([]), command("--after", names))),
        command(
            "env",
            "create",
            names,
            "--required-approvals",
            st.one_of(st.sampled_from(["0", "1", "21", "-1", "x"]), values),
            "--reviewer",
            values,
        ),
        command("env", "rename", names, names),
        command("env", "delete", names),
        command("env", "show", names),
        command(
            "app", "create", names, "--env", names, st.one_of(st.just([]), command("--env", names))
        ),
        command("app", "delete", names),
        command("var", "set", keys, values, "--env", names, scope),
        command("var", "list", "--env", names, scope),
        command("secret", "set", keys, "--env", names, scope),
        command(
            "secret",
            "set",
            keys,
            "--env",
            names,
            "--kind",
            st.one_of(st.sampled_from(["api-key", "credential", "certificate"]), values),
        ),
        command("tool", "create", names, "--kind", st.sampled_from(["webhook", "WEBHOOK", "x"])),
        command(
            "tool",
            "profile",
            names,
            "--env",
            names,
            "--url",
            st.one_of(st.sampled_from(["http://127.0.0.1:9/x", "ftp://x"]), values),
            st.one_of(st.just([]), command("--header", values), command("--param", values)),
        ),
        command("release", "create", names, values, "--pipeline", "pipeline.yaml"),
        command("audit", "--env", names),
    )


# Plausible commands (most succeed, or meet a rule) and hostile ones, about half and half.
plausible = commands_from(known_names, known_keys, plain_values)
hostile = commands_from(
    st.one_of(known_names, typed), st.one_of(known_keys, typed), st.one_of(plain_values, typed)
)
commands = st.one_of(plausible, hostile)
values = st.one_of(plain_values, typed)


def check_one(run: Stageline, args: list[str], stdin: str) -> None:
    before = run.snapshot()
    done = run(*args, stdin=stdin)
    shown = f"stageline {args!r:.300}"
    assert done.code != -1, f"{shown} raised:\n{done.err}"
    assert "Traceback" not in done.out + done.err, f"{shown}:\n{done.err}"
    assert done.code in (0, 2, 3), f"{shown} exited {done.code}: {done.err}"
    if done.code != 0:
        event(f"refused: {' '.join(args[:2])}")
        lines = done.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{shown}:\n{done.err}"
        assert len(lines[0]) < 2_000, lines[0][:300]
        assert_only_refusal_recorded(before, run.snapshot(), done.code)
        return
    event(f"done: {' '.join(args[:2])}")
    # What succeeded has a valid name.
    if args[1] == "create" and args[0] in ("env", "app", "tool"):
        assert RESOURCE.fullmatch(args[2]), f"{shown} accepted the name {args[2]!r}"
    if args[:2] in (["var", "set"], ["secret", "set"]):
        assert KEY.fullmatch(args[2]), f"{shown} accepted the key {args[2]!r}"
    if args[:2] == ["var", "set"] and "--app" not in args:
        # Exactly what was typed is stored, and listed back.
        environment = args[args.index("--env") + 1]
        listed = json.loads(run("var", "list", "--env", environment, "--json").out)
        stored = {(v["key"], v["value"]) for v in listed if v["app"] is None}
        assert (args[2], args[3]) in stored, (args, stored)


@settings(max_examples=examples(60))
@given(st.lists(st.tuples(commands, values), min_size=1, max_size=3))
def test_configuration_commands_succeed_or_refuse_in_one_line_and_change_nothing(
    stageline: Stageline, runs: list[tuple[list[str], str]]
) -> None:
    for args, stdin in runs:
        check_one(stageline, args, stdin)
    # No two keys that one app sees differ only by case.
    for keys_seen in stageline.keys_by_view():
        folded = [k.lower() for k in keys_seen]
        assert len(folded) == len(set(folded)), keys_seen


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["var", "set", "database_url", "x", "--env", "dev"], ""),
        (["var", "set", "Feature", "x", "--env", "dev"], ""),
        (["secret", "set", "feature", "--env", "dev"], "v-secret-value"),
        (["secret", "set", "Database_Url", "--env", "dev", "--app", "web"], "v-secret-value"),
        (["var", "set", "env", "x", "--env", "dev", "--app", "web"], ""),
    ],
)
def test_a_key_differing_only_by_case_is_refused_naming_the_existing_one(
    fresh: Stageline, args: list[str], stdin: str
) -> None:
    run = fresh
    # `env` at app scope clashes with nothing until `ENV` exists at environment scope.
    assert run("var", "set", "ENV", "1", "--env", "dev").code == 0
    before = run.snapshot()
    done = run(*args, stdin=stdin)
    assert done.code == 3, done
    existing = next(k for k in ("DATABASE_URL", "FEATURE", "ENV") if k.lower() == args[2].lower())
    assert "differs only by case from the existing" in done.err
    assert f"{existing!r}" in done.err and f"use {existing!r}" in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert run.snapshot() == before
    # The same key, spelled the same, is a new version as before.
    again = run(args[0], "set", existing, *args[3:], stdin=stdin)
    assert again.code == 0, again.err
