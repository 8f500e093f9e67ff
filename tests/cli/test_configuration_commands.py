"""The configuration commands, run as real subprocesses against a real SQLite file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli, assert_only_refusal_recorded, make_cli, snapshot

PROD_SECRET = "pr0d-S3cret-value-9d8e7f"
DEV_SECRET = "dev-secret-value-1a2b3c"
PIPELINE = """\
steps:
  - name: migrate
    run: ["python", "-c", "print('migrating')"]
    env: {DATABASE_URL: "${{ secrets.DATABASE_URL }}", FEATURE: "${{ vars.FEATURE }}"}
  - name: notify
    tool: deploy-hook
    with: {version: "${{ release.version }}"}
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace built through the CLI per module; each test gets its own copy."""
    root = tmp_path_factory.mktemp("template")
    (root / "home").mkdir()
    cli = make_cli(root)
    cli.ok("env", "create", "dev")
    cli.ok("env", "create", "production", "--required-approvals", "1", "--reviewer", "alice")
    cli.ok("env", "create", "staging", "--after", "dev")
    cli.ok("app", "create", "web", "--env", "dev", "--env", "staging", "--env", "production")
    cli.ok("secret", "set", "DATABASE_URL", "--env", "production", input=PROD_SECRET + "\n")
    cli.ok("secret", "set", "DATABASE_URL", "--env", "dev", input=DEV_SECRET)
    cli.ok("var", "set", "FEATURE", "on", "--env", "dev")
    cli.ok("tool", "create", "deploy-hook", "--kind", "webhook")
    cli.ok(
        "tool",
        "profile",
        "deploy-hook",
        "--env",
        "dev",
        "--url",
        "http://127.0.0.1:9/dev",
        "--auth-secret",
        "DATABASE_URL",
        "--header",
        "X-Env=dev",
    )
    (root / "pipeline.yaml").write_text(PIPELINE)
    cli.ok(
        "release",
        "create",
        "web",
        "1.0.0",
        "--pipeline",
        str(root / "pipeline.yaml"),
        "--artifact",
        "registry/web:1.0.0",
    )
    return root / "home"


@pytest.fixture
def workspace(template: Path, cli: Cli, tmp_path: Path) -> Path:
    home = Path(cli.env["STAGELINE_HOME"])
    shutil.rmtree(home)
    shutil.copytree(template, home)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    return home


def test_environment_chain_and_apps_through_the_cli(cli: Cli, workspace: Path) -> None:
    envs = json.loads(cli.ok("env", "list", "--json").out)
    assert [e["name"] for e in envs] == ["dev", "staging", "production"]
    assert envs[2]["protection"] == {
        "required_approvals": 1,
        "reviewers": ["alice"],
        "allow_self_review": False,
        "wait_minutes": 0,
        "approval_timeout_minutes": 10080,
        "require_signed_approvals": False,
        "require_verified_requester": False,
    }
    assert all(e["apps"] == ["web"] for e in envs)
    human = cli.ok("env", "list").out
    assert "1 approval(s) from alice; approval timeout 7d" in human  # units, always
    cli.ok(
        "env", "create", "audit", "--required-approvals", "1", "--reviewer", "bob",
        "--require-signed-approvals",
    )  # fmt: skip
    shown = json.loads(cli.ok("env", "show", "audit", "--json").out)
    assert shown["protection"]["require_signed_approvals"] is True
    assert "1 approval(s) from bob; signed approvals" in cli.ok("env", "show", "audit").out
    apps = json.loads(cli.ok("app", "list", "--json").out)
    assert apps[0]["environments"] == ["dev", "staging", "production"]


def test_secret_list_shows_names_kinds_and_versions_only(cli: Cli, workspace: Path) -> None:
    cli.ok("secret", "set", "DATABASE_URL", "--env", "production", input="second-value")
    listed = json.loads(cli.ok("secret", "list", "--env", "production", "--json").out)
    assert [(s["key"], s["kind"], s["version"]) for s in listed] == [("DATABASE_URL", "api-key", 2)]
    assert "value" not in listed[0]


def test_no_output_or_stored_row_contains_a_secret_value(cli: Cli, workspace: Path) -> None:
    outputs = [
        cli("env", "list"),
        cli("env", "show", "production"),
        cli("env", "show", "dev", "--json"),
        cli("secret", "list", "--env", "production"),
        cli("secret", "list", "--env", "dev", "--json"),
        cli("var", "list", "--env", "dev"),
        cli("tool", "list"),
        cli("release", "list", "web"),
        cli("audit"),
        cli("audit", "--json"),
        # Mistakes too: error messages must not quote the value.
        cli("secret", "set", "DATABASE_URL", "--env", "nowhere", input=PROD_SECRET),
        cli("secret", "set", "TLS", "--env", "dev", "--kind", "certificate", input=PROD_SECRET),
        cli("secret", "set", "DATABASE_URL", PROD_SECRET, "--env", "dev"),
    ]
    for result in outputs:
        assert PROD_SECRET not in result.out + result.err
        assert DEV_SECRET not in result.out + result.err
    raw = (workspace / "stageline.db").read_bytes()
    for wal in workspace.glob("stageline.db-wal"):
        raw += wal.read_bytes()
    assert PROD_SECRET.encode() not in raw and DEV_SECRET.encode() not in raw


def test_secret_value_as_an_argument_is_refused_with_the_safe_way(
    cli: Cli, workspace: Path
) -> None:
    before = snapshot(workspace)
    result = cli("secret", "set", "API_KEY", "s3cr3t-on-the-command-line", "--env", "dev")
    assert result.code == 3
    assert "never taken as arguments" in result.err and "--from-file" in result.err
    assert "s3cr3t-on-the-command-line" not in result.err
    assert snapshot(workspace) == before


def test_secret_from_file_and_certificate_kind(cli: Cli, workspace: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.internal")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cli.ok(
        "secret",
        "set",
        "TLS_CERT",
        "--env",
        "dev",
        "--kind",
        "certificate",
        "--from-file",
        str(pem),
    )
    listed = json.loads(cli.ok("secret", "list", "--env", "dev", "--json").out)
    assert ("TLS_CERT", "certificate") in [(s["key"], s["kind"]) for s in listed]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["env", "create", "dev"], None, "environment 'dev' already exists"),
        (["env", "create", "Prod"], None, "environment name 'Prod' is not valid"),
        (
            ["env", "create", "qa", "--after", "nowhere"],
            None,
            "environment 'nowhere' does not exist",
        ),
        (["app", "create", "web", "--env", "dev"], None, "app 'web' already exists"),
        (
            ["app", "create", "api", "--env", "dev", "--env", "qa"],
            None,
            "environment 'qa' does not exist",
        ),
        (["var", "set", "X", "1", "--env", "qa"], None, "environment 'qa' does not exist"),
        (
            ["var", "list", "--env", "prodution"],
            None,
            "environment 'prodution' does not exist (did you mean production?)",
        ),
        (["promote", "web", "1.0.0", "--to", "stagin"], None, "(did you mean staging?)"),
        (
            ["var", "set", "BAD-KEY", "1", "--env", "dev"],
            None,
            "variable name 'BAD-KEY' is not valid",
        ),
        (
            ["var", "set", "X", "1", "--env", "dev", "--app", "nope"],
            None,
            "app 'nope' does not exist",
        ),
        (["secret", "set", "EMPTY", "--env", "dev"], "", "secret 'EMPTY' is empty"),
        (["secret", "set", "EMPTY", "--env", "dev"], "\n", "secret 'EMPTY' is empty"),
        (
            ["secret", "set", "PIN", "--env", "dev"],
            "Q7x\n",
            "secret 'PIN' is shorter than 8 characters, too easy to guess",
        ),
        (
            ["secret", "set", "X", "--env", "dev", "--kind", "password"],
            "v",
            "Invalid value for '--kind'",
        ),
        (
            ["secret", "set", "X", "--env", "dev", "--from-file", "/nonexistent/file"],
            None,
            "cannot read /nonexistent/file",
        ),
        (
            ["tool", "create", "deploy-hook", "--kind", "webhook"],
            None,
            "tool 'deploy-hook' already exists",
        ),
        (
            ["tool", "profile", "nohook", "--env", "dev", "--url", "http://x"],
            None,
            "tool 'nohook' does not exist",
        ),
        (
            ["tool", "profile", "deploy-hook", "--env", "dev", "--url", "ftp://x"],
            None,
            "must start with http:// or https://",
        ),
        (
            [
                "tool",
                "profile",
                "deploy-hook",
                "--env",
                "dev",
                "--url",
                "http://x",
                "--header",
                "nokv",
            ],
            None,
            "--header 'nokv' is not of the form KEY=VALUE",
        ),
        (
            [
                "tool",
                "profile",
                "deploy-hook",
                "--env",
                "dev",
                "--url",
                "http://x",
                "--auth-scheme",
                "header",
                "--auth-secret",
                "DATABASE_URL",
            ],
            None,
            "needs --auth-header NAME",
        ),
        (["tool", "delete", "deploy-hook"], None, "release(s) web@1.0.0 use it"),
        (
            ["release", "create", "web", "1.0.0", "--pipeline", "PIPELINE"],
            None,
            "release web@1.0.0 already exists and releases are immutable",
        ),
        (
            ["release", "create", "web", "2.0.0", "--pipeline", "BAD_YAML"],
            None,
            "line 3: not valid YAML",
        ),
        (
            ["release", "create", "web", "2.0.0", "--pipeline", "BAD_KIND"],
            None,
            "unknown field 'docker'",
        ),
        (
            ["release", "create", "web", "2.0.0", "--pipeline", "/nonexistent.yaml"],
            None,
            "cannot read pipeline file",
        ),
        (
            ["release", "create", "web", "bad version", "--pipeline", "PIPELINE"],
            None,
            "version 'bad version' is not valid",
        ),
        (
            ["release", "create", "nope", "2.0.0", "--pipeline", "PIPELINE"],
            None,
            "app 'nope' does not exist",
        ),
        (["env", "delete", "dev"], None, "app(s) web point to it"),
        (["app", "delete", "web"], None, "it has releases"),
        # Names that could escape a directory, reach a shell or pass for another.
        (["env", "create", "../../etc"], None, "environment name '../../etc' is not valid"),
        (["env", "create", "qa\n"], None, "environment name 'qa\\n' is not valid"),
        (["app", "create", "web;id", "--env", "dev"], None, "app name 'web;id' is not valid"),
        (["env", "show", "$(id)"], None, "environment name '$(id)' is not valid"),
        (["var", "set", "X", "1", "--env", "d\u0435v"], None, "(U+0435), which is not an ASCII"),
        (["var", "set", "A B", "1", "--env", "dev"], None, "variable name 'A B' is not valid"),
        # `data` takes names through the same parameter types as every other command.
        (
            ["data", "put", "Web", "threads", "t-1", "--env", "dev", "--value", "x"],
            None,
            "Invalid value for 'APP': app name 'Web' is not valid (it has upper case letters)",
        ),
        (
            ["data", "get", "web", "threads", "t-1", "--env", "../dev"],
            None,
            "Invalid value for '--env': environment name '../dev' is not valid",
        ),
        (
            ["data", "copy", "web", "memory", "--from", "dev", "--to", "st\u0430ging"],
            None,
            "(U+0430), which is not an ASCII",
        ),
        (["data", "share", "web;id", "sources"], None, "app name 'web;id' is not valid"),
        # Keys that differ only by case from one the same app sees.
        (
            ["var", "set", "database_url", "x", "--env", "dev"],
            None,
            "variable 'database_url' differs only by case from the existing secret "
            "'DATABASE_URL' in dev",
        ),
        (
            ["secret", "set", "Feature", "--env", "dev", "--app", "web"],
            "v-secret-value",
            "secret 'Feature' differs only by case from the existing variable 'FEATURE'",
        ),
        (["env", "create"], None, "Missing argument 'NAME'"),
        (["env", "frobnicate"], None, "No such command 'frobnicate'"),
    ],
)
def test_user_mistakes_exit_non_zero_with_one_sentence_and_change_nothing(
    cli: Cli, workspace: Path, tmp_path: Path, args: list[str], stdin: str | None, message: str
) -> None:
    (tmp_path / "bad.yaml").write_text("steps:\n  - name: a\n    run: [x\n")
    (tmp_path / "kind.yaml").write_text("steps:\n  - name: a\n    docker: x\n")
    files = {"PIPELINE": "pipeline.yaml", "BAD_YAML": "bad.yaml", "BAD_KIND": "kind.yaml"}
    args = [str(tmp_path / files[a]) if a in files else a for a in args]
    before = snapshot(workspace)
    result = cli(*args, input=stdin)
    refusals = ("point to it", "use it", "has releases")
    assert result.code == (2 if message.endswith(refusals) else 3), result.err
    assert message in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert_only_refusal_recorded(before, snapshot(workspace), result.code)


def test_no_master_key_refuses_and_stores_nothing(cli: Cli, workspace: Path) -> None:
    before = snapshot(workspace)
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    result = Cli(env)("env", "create", "qa")
    assert result.code == 3 and "no master key is configured" in result.err
    result = Cli(env)("secret", "set", "X", "--env", "dev", input="a-secret-value")
    assert result.code == 3 and "no master key is configured" in result.err
    bad_key = Cli({**env, "STAGELINE_MASTER_KEY": "short"})("env", "create", "qa")
    assert bad_key.code == 3 and "not a base64-encoded 32-byte key" in bad_key.err
    wrong_key = Cli({**env, "STAGELINE_MASTER_KEY": "A" * 43 + "="})
    result = wrong_key("secret", "set", "X", "--env", "dev", input="a-secret-value")
    assert result.code != 0 and "another master key" in result.err
    assert snapshot(workspace) == before
    # Commands that touch no secret still work without a key.
    assert Cli(env)("var", "list", "--env", "dev").code == 0


def test_unreachable_database_exits_5(cli: Cli) -> None:
    env = {**cli.env, "STAGELINE_DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/none"}
    result = Cli(env)("env", "list")
    assert result.code == 5 and "cannot reach the database" in result.err


def test_vault_rotation_through_the_cli(cli: Cli, workspace: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "new.key"
    key_file.write_text(cli.ok("vault", "generate-key").out)
    key_file.chmod(0o600)
    assert (
        "re-wrapped the data keys of 3 environment(s)"
        in cli.ok("vault", "rotate", "--new-key-file", str(key_file)).out
    )
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    rotated = Cli({**env, "STAGELINE_MASTER_KEY_FILE": str(key_file)})
    assert rotated("secret", "set", "NEW", "--env", "dev", input="x-secret-value").code == 0
    assert cli("secret", "set", "NEW", "--env", "dev", input="y-secret-value").code != 0


def test_diff_names_every_differing_key_and_never_a_secret_value(cli: Cli, workspace: Path) -> None:
    cli.ok("var", "set", "REGION", "eu", "--env", "dev")
    cli.ok("var", "set", "REGION", "us", "--env", "production")
    cli.ok("var", "set", "SAME", "x", "--env", "dev")
    cli.ok("var", "set", "SAME", "x", "--env", "production")
    result = cli.ok("diff", "web", "--from", "dev", "--to", "production", "--json")
    diff = json.loads(result.out)
    assert {(v["key"], v["source"], v["target"]) for v in diff["vars"]} == {
        ("FEATURE", "on", None),
        ("REGION", "eu", "us"),
    }
    assert [(s["key"], s["source_version"], s["target_version"]) for s in diff["secrets"]] == [
        ("DATABASE_URL", 1, 1)
    ]
    assert [(t["tool"], t["target"]) for t in diff["tools"]] == [("deploy-hook", None)]
    assert diff["tools"][0]["source"]["url"] == "http://127.0.0.1:9/dev"
    assert diff["release"] == {"key": "release", "source": None, "target": None}
    human = cli.ok("diff", "web", "--from", "dev", "--to", "production")
    for output in (result.out, human.out):
        assert PROD_SECRET not in output and DEV_SECRET not in output
    assert "REGION" in human.out and "(no profile)" in human.out
    assert cli("diff", "web", "--from", "dev", "--to", "nowhere").code == 3
