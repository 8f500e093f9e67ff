"""Encrypted secrets, per environment (and optionally per app within it): envelope
encryption under each environment's data key, which the master key wraps; certificate
expiry; master key rotation. Values go in and are decrypted only for the steps that use
them (`services.resolution`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import cast

from cryptography import x509

from models.errors import BadInput
from models.names import check_key
from models.workspace import SECRET_KINDS, SecretKind, SecretView
from services.config_entries import DeletedKey, KeyedEntries
from services.environments import data_key_aad_of, secret_aad_of
from store import configuration as config_repo
from store import environments as env_repo
from store.tables import App, Environment, Secret, utcnow
from vault.envelope import seal, unseal, unwrap_data_key, wrap_data_key
from vault.keys import KeyProvider
from vault.secret_value import SecretValue

MAX_SECRET_BYTES = 64 * 1024
# Step output masks a secret wherever it appears: a value this short is easy to guess, and
# masking it would also hide ordinary words and numbers. Stored ones of any length are masked.
MIN_SECRET_CHARS = 8
# `secret list` and `status` warn about a certificate that expires within this many days.
CERTIFICATE_WARNING_DAYS = 30


def certificate_expiry(key: str, plain: str) -> datetime:
    """When the PEM certificate(s) in `plain` stop being valid: the soonest expiry of them
    all (a chain is as good as its first certificate to expire)."""
    try:
        certificates = x509.load_pem_x509_certificates(plain.encode())
    except ValueError:
        raise BadInput(
            f"secret {key!r} is of kind certificate but is not a PEM certificate "
            "(expected '-----BEGIN CERTIFICATE-----' ...)"
        ) from None
    return min(c.not_valid_after_utc for c in certificates)


def expiry_warning(view: SecretView, now: datetime | None = None) -> str | None:
    """One sentence when a certificate secret expires within CERTIFICATE_WARNING_DAYS."""
    if view.expires_at is None:
        return None
    now = now or utcnow()
    if view.expires_at > now + timedelta(days=CERTIFICATE_WARNING_DAYS):
        return None
    where = view.environment + (f" for app {view.app}" if view.app else "")
    when = f"{view.expires_at:%Y-%m-%d %H:%M} UTC"
    if view.expires_at <= now:
        state = f"expired on {when}"
    else:
        # Rounded up: a certificate valid for 9.5 more days "expires in 10 days".
        days = math.ceil((view.expires_at - now).total_seconds() / 86400)
        state = f"expires in {days} day{'s' if days != 1 else ''} ({when})"
    app_flag = f" --app {view.app}" if view.app else ""
    return (
        f"certificate secrets.{view.key} in {where} {state}; replace it with 'stageline secret "
        f"set {view.key} --env {view.environment}{app_flag} --kind certificate --from-file "
        "cert.pem'"
    )


def expiry_warnings(views: Iterable[SecretView], now: datetime | None = None) -> list[str]:
    return [w for v in views if (w := expiry_warning(v, now)) is not None]


def check_secret_value(key: str, kind: str, value: SecretValue) -> datetime | None:
    """Refuse values that cannot be right, without ever quoting them. Returns a
    certificate's expiry (None for other kinds)."""
    if kind not in SECRET_KINDS:
        raise BadInput(f"secret kind {kind!r} is not known; use one of {', '.join(SECRET_KINDS)}")
    plain = value.reveal()
    try:
        plain.encode()
    except UnicodeEncodeError:
        raise BadInput(
            f"secret {key!r} is not UTF-8 text; store a binary value base64-encoded"
        ) from None
    if not plain.strip():
        raise BadInput(f"secret {key!r} is empty; pipe its value on stdin or pass --from-file")
    if len(plain.strip()) < MIN_SECRET_CHARS:
        raise BadInput(
            f"secret {key!r} is shorter than {MIN_SECRET_CHARS} characters, too easy to guess "
            "and to mistake for ordinary text in step output; set a longer value"
        )
    if len(plain.encode()) > MAX_SECRET_BYTES:
        raise BadInput(f"secret {key!r} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    if kind == "certificate":
        return certificate_expiry(key, plain)
    return None


def _secret_view(row: Secret, env: Environment, app: str | None) -> SecretView:
    return SecretView(
        environment=env.name,
        app=app,
        key=row.key,
        kind=cast(SecretKind, row.kind),
        version=row.version,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def reveal(data_key: bytes, env: Environment, row: Secret) -> SecretValue:
    """The plaintext of one stored version, with the data key of its environment; its
    associated data is built as `set_secret` sealed it, so a value moved elsewhere fails."""
    plain = unseal(
        data_key,
        row.ciphertext,
        secret_aad_of(env, row.app_id, row.key, row.version),
        f"secret {row.key!r} v{row.version} of environment {env.name!r}",
    )
    return SecretValue(plain.decode())


class SecretService(KeyedEntries[Secret]):
    table = Secret
    kind = "secret"
    prefix = "secrets"

    def _tombstone(self, newest: Secret) -> Secret:
        return Secret(kind=newest.kind, ciphertext=b"")

    def data_key(self, env: Environment) -> bytes:
        """The environment's data key, unwrapped with the master key."""
        return unwrap_data_key(self.key, env.wrapped_data_key, data_key_aad_of(env), env.name)

    async def set_secret(
        self,
        environment: str,
        key: str,
        value: SecretValue,
        *,
        actor: str,
        kind: SecretKind = "api-key",
        app: str | None = None,
    ) -> SecretView:
        check_key(key, "secret name")
        expires_at = check_secret_value(key, kind, value)
        self.key  # noqa: B018  # without a master key, fail before any lookup
        slot = await self._next_slot(environment, key, app)
        ciphertext = seal(
            self.data_key(slot.env),
            value.reveal().encode(),
            secret_aad_of(slot.env, slot.app_id, key, slot.version),
        )
        row = Secret(
            environment_id=slot.env.id,
            app_id=slot.app_id,
            scope=slot.scope,
            key=key,
            version=slot.version,
            kind=kind,
            ciphertext=ciphertext,
            expires_at=expires_at,
            created_by=actor,
        )
        await self._store(
            row,
            slot,
            actor=actor,
            app=app,
            kind=kind,
            expires_at=expires_at.isoformat() if expires_at else None,
        )
        return _secret_view(row, slot.env, app)

    async def list_secrets(self, environment: str, app: str | None = None) -> list[SecretView]:
        """The secrets an app sees in an environment, by name, kind and version; never values."""
        env, rows = await self._current(environment, app)
        return [_secret_view(r, env, owner) for r, owner in rows]

    async def delete_secret(
        self, environment: str, key: str, *, actor: str, app: str | None = None
    ) -> DeletedKey:
        """Delete a secret: a tombstone version, so it is absent from now on; its old
        versions stay decryptable for past deployments and rollbacks."""
        return await self._delete(environment, key, actor=actor, app=app)

    async def certificate_warnings(
        self, environments: Sequence[Environment], only_app: App | None = None
    ) -> list[str]:
        """A warning for each current certificate secret, in any scope of `environments`
        (with `only_app`, the environment's own and that app's), that expires within
        CERTIFICATE_WARNING_DAYS or has expired."""
        names = {e.id: e for e in environments}
        rows = await config_repo.current_certificates(self.session, list(names))
        apps: dict[int, str] = {}
        views = []
        for row in rows:
            if only_app is not None and row.app_id not in (None, only_app.id):
                continue
            app = None
            if row.app_id is not None:
                if row.app_id not in apps:
                    owner = await self.session.get(App, row.app_id)
                    apps[row.app_id] = owner.name if owner is not None else "?"
                app = apps[row.app_id]
            views.append(_secret_view(row, names[row.environment_id], app))
        return expiry_warnings(views)

    async def rotate_master_key(self, new_key: KeyProvider, *, actor: str) -> int:
        """Re-wrap every environment's data key with `new_key`; secrets are not touched.
        Returns how many environments were re-wrapped. Once the unit has committed, the entry
        point switches to the new key (`Units.keys.replace`): not before, as a failed commit
        leaves the old wrapping in place."""
        old_key = self.key
        ws = await self.workspace_id()
        envs = await env_repo.chain(self.session, ws)
        for env in envs:
            data_key = self.data_key(env)
            env.wrapped_data_key = wrap_data_key(new_key, data_key, data_key_aad_of(env))
            env.master_key_id = new_key.key_id
        await self.audit(
            actor,
            "vault.rotate-master-key",
            "master key",
            detail={"from": old_key.key_id, "to": new_key.key_id, "environments": len(envs)},
        )
        return len(envs)
