"""SQLAlchemy tables. Configuration rows are append-only versions: the current value of a
variable, secret or tool profile is its highest version, and older versions stay for
rollbacks and for the record of what each deployment ran with. Deleting a variable or a
secret adds a version too, a tombstone (`deleted`): while it is the highest version the key
is absent, and setting it again adds the next version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Workspace(Base):
    __tablename__ = "workspace"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Environment(Base):
    __tablename__ = "environment"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(63))
    # 0-based place in the promotion chain; the service keeps positions dense.
    position: Mapped[int] = mapped_column(Integer)
    required_approvals: Mapped[int] = mapped_column(default=0)
    reviewers: Mapped[list[Any]] = mapped_column(default=list)
    allow_self_review: Mapped[bool] = mapped_column(Boolean, default=False)
    wait_minutes: Mapped[int] = mapped_column(default=0)
    # 0: wait for approvals forever.
    approval_timeout_minutes: Mapped[int] = mapped_column(default=7 * 24 * 60)
    # Every reviewer decision must be signed by a key registered for its reviewer.
    require_signed_approvals: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only requests the stageline server signed for someone who signed in pass the gates.
    require_verified_requester: Mapped[bool] = mapped_column(Boolean, default=False)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class App(Base):
    __tablename__ = "app"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppEnvironment(Base):
    """An app points to an environment; it never owns it."""

    __tablename__ = "app_environment"

    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="CASCADE"), primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="RESTRICT"), primary_key=True
    )


class Variable(Base):
    __tablename__ = "variable"
    __table_args__ = (UniqueConstraint("environment_id", "scope", "key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    # "env" or "app:<id>": a non-null column so the unique constraint holds on every backend.
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    value: Mapped[str] = mapped_column(Text)
    # A tombstone: this version says the key was deleted (its value is empty).
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Secret(Base):
    __tablename__ = "secret"
    __table_args__ = (UniqueConstraint("environment_id", "scope", "key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # A tombstone: this version says the key was deleted (no ciphertext).
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # For a certificate: when the first certificate in it stops being valid. Not secret.
    expires_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tool(Base):
    __tablename__ = "tool"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ToolProfile(Base):
    __tablename__ = "tool_profile"
    __table_args__ = (UniqueConstraint("tool_id", "environment_id", "scope", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tool_id: Mapped[int] = mapped_column(ForeignKey("tool.id", ondelete="RESTRICT"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    scope: Mapped[str] = mapped_column(String(32))
    version: Mapped[int]
    url: Mapped[str] = mapped_column(Text)
    auth_secret: Mapped[str | None] = mapped_column(String(128))
    # How the auth secret is sent: bearer token, basic credentials ("user:password"), or
    # as the value of a custom header named `auth_header`.
    auth_scheme: Mapped[str] = mapped_column(String(10), default="bearer")
    auth_header: Mapped[str | None] = mapped_column(String(100))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout_seconds: Mapped[float] = mapped_column(default=10.0)
    retries: Mapped[int] = mapped_column(default=3)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Release(Base):
    """Immutable once created: app, version, artifact and the pipeline as validated."""

    __tablename__ = "release"
    __table_args__ = (UniqueConstraint("app_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    version: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[str | None] = mapped_column(Text)
    pipeline: Mapped[dict[str, Any]] = mapped_column()
    pipeline_source: Mapped[str] = mapped_column(Text)
    pipeline_digest: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Promotion(Base):
    """One run of PromotionWorkflow: what was asked, by whom, and how it ended."""

    __tablename__ = "promotion"
    __table_args__ = (UniqueConstraint("workflow_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id", ondelete="RESTRICT"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="RESTRICT"))
    requested_by: Mapped[str] = mapped_column(String(200))
    # The stageline server signed the request for `requested_by`, who signed in to it; else
    # the name is what the start input claims.
    requester_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    gates: Mapped[list[Any]] = mapped_column(default=list)
    # What protection asked of this run when its gates ran, and the reviewers whose approvals
    # counted (recorded by the run itself): a deployment begins only when they add up.
    required_approvals: Mapped[int | None] = mapped_column()
    approved_by: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class Deployment(Base):
    """A change of an environment's release for an app: promotion, rollback or compensation."""

    __tablename__ = "deployment"
    __table_args__ = (
        UniqueConstraint("workflow_id", "run_id", "kind"),
        Index("ix_deployment_app_env", "app_id", "environment_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="RESTRICT"))
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id", ondelete="RESTRICT"))
    previous_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("release.id", ondelete="RESTRICT")
    )
    kind: Mapped[str] = mapped_column(String(20))  # promotion | rollback | compensation
    promotion_id: Mapped[int | None] = mapped_column(
        ForeignKey("promotion.id", ondelete="RESTRICT")
    )
    # For a rollback: the earlier deployment whose release and configuration it restores.
    restores_deployment_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployment.id", ondelete="RESTRICT")
    )
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    # As on Promotion: a promotion's deployment copies its record's; a rollback's is its own.
    requester_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    # Names and versions of what was injected, never values: {"vars": {"X": 3}, ...}.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()


class CurrentRelease(Base):
    """The pointer: which release an app runs in an environment. Rollback moves only this."""

    __tablename__ = "current_release"

    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"), primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="RESTRICT"), primary_key=True
    )
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id", ondelete="RESTRICT"))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id", ondelete="RESTRICT"))
    since: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Append-only: a database trigger refuses updates and deletes."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str | None] = mapped_column(String(63))
    app: Mapped[str | None] = mapped_column(String(63))
    subject: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class StepRun(Base):
    """One execution of a pipeline step, with its masked output: the timeline of a deployment."""

    __tablename__ = "step_run"
    __table_args__ = (UniqueConstraint("deployment_id", "section", "position", "attempt"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id", ondelete="RESTRICT"))
    section: Mapped[str] = mapped_column(String(20))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))
    attempt: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(20))
    exit_code: Mapped[int | None] = mapped_column()
    output: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class DeploymentTicket(Base):
    """A place in the queue of one app and environment: one deployment runs at a time, the
    others wait in order. The holding ticket is the earliest one in state `holding`."""

    __tablename__ = "deployment_ticket"
    __table_args__ = (UniqueConstraint("workflow_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="RESTRICT"))
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))  # waiting | holding | done
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewerGroup(Base):
    """A named group of people, written `@name` in an environment's reviewer list."""

    __tablename__ = "reviewer_group"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(63))
    members: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FreezeWindow(Base):
    """A time during which promotions into an environment wait, unless overridden."""

    __tablename__ = "freeze_window"

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()  # None: until lifted
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column()
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class DataRecord(Base):
    """An app's data (threads, sources, memory, artifacts) in one namespace: its environment's
    own (`<env>/<app>`) or, where the app shares that kind, `shared/<app>`."""

    __tablename__ = "data_record"
    __table_args__ = (UniqueConstraint("workspace_id", "namespace", "kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="RESTRICT"))
    # None for shared data, which belongs to no single environment.
    environment_id: Mapped[int | None] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE")
    )
    namespace: Mapped[str] = mapped_column(String(140))
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DataSharing(Base):
    """An app's explicit choice to share one kind of data across its environments."""

    __tablename__ = "data_sharing"

    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)


class ReviewerKey(Base):
    """A reviewer's Ed25519 public key. Never deleted: a revoked key stays, so old audit
    entries can still name it and it can never be registered again."""

    __tablename__ = "reviewer_key"
    __table_args__ = (
        # One key, one person: a shared key could sign as either.
        UniqueConstraint("workspace_id", "fingerprint"),
        Index("ix_reviewer_key_reviewer", "workspace_id", "reviewer"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    reviewer: Mapped[str] = mapped_column(String(200))
    # "ed25519:" and the base64 of the 32 raw bytes, as `stageline reviewer key generate` prints.
    public_key: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the raw key, hex.
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class Principal(Base):
    """Who acts through the server: a person (who logs in with a password) or a CI job (which
    holds a token). Never deleted: a disabled principal stays, so the audit log's names keep
    meaning one principal, and a name is never given to someone else."""

    __tablename__ = "principal"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(10))  # person | ci
    name: Mapped[str] = mapped_column(String(100))
    # argon2id, as argon2-cffi encodes it (parameters and salt included); people only.
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column()
    disabled_by: Mapped[str | None] = mapped_column(String(200))


class RoleGrant(Base):
    """A principal's role in one environment, or in every one (`*`)."""

    __tablename__ = "role_grant"
    __table_args__ = (UniqueConstraint("principal_id", "environment", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principal.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(63))  # an environment's name, or "*"
    role: Mapped[str] = mapped_column(String(16))  # viewer | deployer | reviewer | admin


class AccessToken(Base):
    """A bearer token: a CI job's (scoped to apps and environments, until it expires or is
    revoked) or a person's session (from a login). Only its SHA-256 is stored: a token is 256
    random bits, so a fast hash is enough, and a copy of the database gives no usable token."""

    __tablename__ = "access_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principal.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # ci | session
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, shown in lists so a person can tell which one leaked.
    prefix: Mapped[str] = mapped_column(String(16))
    # Empty: every app (environment) the principal's roles reach.
    apps: Mapped[list[Any]] = mapped_column(default=list)
    environments: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class NotificationTarget(Base):
    """Where an environment's notifications go: a webhook that takes Slack-compatible JSON.
    Its URL is a credential (a Slack webhook URL is its own token), so it is stored sealed
    with the environment's data key, as secrets are; only its `scheme://host` is plain."""

    __tablename__ = "notification_target"
    __table_args__ = (UniqueConstraint("environment_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="RESTRICT"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    url_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    url_host: Mapped[str] = mapped_column(String(300))
    events: Mapped[list[Any]] = mapped_column(default=list)
    # Every audit entry up to this id has been looked at for this target (a delivery made, or
    # not one of its events); it starts at the log's last entry when the target is added, so
    # a new target never receives what happened before it.
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationDelivery(Base):
    """One audit entry sent (or being sent) to one target. The unique pair is the claim: of
    several workers that find the same entry, the one whose insert lands sends it."""

    __tablename__ = "notification_delivery"
    __table_args__ = (
        UniqueConstraint("target_id", "audit_event_id"),
        Index("ix_notification_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("notification_target.id", ondelete="CASCADE"))
    audit_event_id: Mapped[int] = mapped_column(ForeignKey("audit_event.id", ondelete="RESTRICT"))
    event: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(10))  # pending | sent | failed
    # Attempts begun; a claim adds one before the message is sent.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Pending: when it may be tried (again). A claim moves it past the time a send can take,
    # so a worker that died mid-send leaves it to another once that has passed.
    next_attempt_at: Mapped[datetime] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
