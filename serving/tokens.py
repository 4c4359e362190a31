"""API tokens of the prediction service: issued once, kept only as a hash, revocable.

A token reads ``tsk_<id>_<secret>``: ``id`` (12 hex digits) names it in listings and the
audit trail, ``secret`` is 32 random bytes (URL-safe base64). The coordinator store keeps
the id, a name, the role the token acts in (a role of the access policy,
``tessera/roles.toml``; the service checks the policy's ``api ...`` entries) and the SHA-256
of the secret, never the secret: a 256-bit random secret needs no slow hash. Checking a
token compares digests in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import col, select

from common.errors import ErrorCode, TesseraError
from common.files import PRIVATE_DIR, ensure_private_file
from common.roles import Role
from common.sql import SqlStore
from common.workdir import CoordinatorDir, sqlite_url
from server.migrations import MIGRATIONS_DIR, ApiTokenRow

PREFIX = "tsk"
#: A site's prediction-service folder (inside the site folder) and its token store.
SITE_SERVING_DIR, SITE_TOKENS_DB = "serving", "serving.db"
_TOKEN = re.compile(r"^tsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.@:-]{0,127}$")


@dataclass(frozen=True)
class ApiToken:
    """A token's public record (never its secret)."""

    token_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, object]:
        return {"token_id": self.token_id, "name": self.name, "role": self.role.value,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: ``token`` is shown once and stored nowhere."""

    record: ApiToken
    token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record(row: ApiTokenRow) -> ApiToken:
    created = _utc(row.created_at)
    assert created is not None
    return ApiToken(token_id=row.token_id, name=row.name, role=Role(row.role),
                    created_at=created, revoked_at=_utc(row.revoked_at))


class TokenStore(SqlStore):
    """The API tokens of one coordinator folder (its ``coordinator.db``), or of a site's
    prediction service (:meth:`at_site`)."""

    def __init__(self, coordinator_dir: Path, *, url: str | None = None) -> None:
        super().__init__(url or CoordinatorDir(Path(coordinator_dir)).db_url, MIGRATIONS_DIR)

    @classmethod
    def at_site(cls, site_root: Path) -> TokenStore:
        """The tokens of a site's service: ``SITE/serving/serving.db`` (the coordinator store's
        schema, of which a site uses only the token table)."""
        folder = Path(site_root) / SITE_SERVING_DIR
        folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        ensure_private_file(folder / SITE_TOKENS_DB)
        return cls(folder, url=sqlite_url(folder / SITE_TOKENS_DB))

    def create(self, *, name: str, role: Role) -> IssuedToken:
        """Issue a token for ``role``; the returned ``token`` is the only copy of its secret."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "name: 1-128 letters, digits, spaces "
                               "or '_.@:-', starting with a letter or digit")
        if not isinstance(role, Role):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "role: not a role of the policy")
        token_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
        row = ApiTokenRow(token_id=token_id, name=name, role=role.value,
                          secret_sha256=_digest(secret), created_at=datetime.now(UTC))
        with self._transaction(write=True) as session:
            session.add(row)
            session.flush()
            record = _record(row)
        return IssuedToken(record=record, token=f"{PREFIX}_{token_id}_{secret}")

    def revoke(self, token_id: str) -> ApiToken:
        """Revoke a token by its id (NOT_FOUND if unknown; revoking twice is a no-op)."""
        with self._transaction(write=True) as session:
            row = session.exec(select(ApiTokenRow).where(ApiTokenRow.token_id == token_id)
                               ).first()
            if row is None:
                raise TesseraError(ErrorCode.NOT_FOUND, f"token id {token_id!r}: no such token")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                session.add(row)
                session.flush()
            return _record(row)

    def list(self) -> list[ApiToken]:
        """Every token ever issued, oldest first."""
        with self._transaction() as session:
            rows = session.exec(select(ApiTokenRow).order_by(col(ApiTokenRow.id))).all()
            return [_record(r) for r in rows]

    def verify(self, token: str) -> ApiToken | None:
        """The active token ``token`` stands for, or None (malformed, unknown, revoked)."""
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            return None
        token_id, secret = match.groups()
        with self._transaction() as session:
            row = session.exec(select(ApiTokenRow).where(ApiTokenRow.token_id == token_id)
                               ).first()
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
                return None
            return _record(row)
