"""Signing keys of the issuing departments: create, rotate, load, publish (JWKS).

签章密钥：每个颁发部门一把当前密钥（Ed25519），轮换后旧密钥停用但保留，用于验证旧签章。

- A department is named by its code — the issuer's USCC (颁发机构代码) for licences; the hub's own
  presentation key (亮证) is kept under the code `HUB-PRESENTATION`.
- The key id is the RFC 7638 JWK thumbprint of the public key (base64url SHA-256, 43 characters), so
  anyone holding the public key can recompute it.
- The private key is stored encrypted: the raw 32-byte seed is sealed with AES-256-GCM under the
  hub key ring's primary data key (hub.crypto, `settings.keyring_file` or $HUB_KEYRING) — the key
  ring is the key-encryption key. The column is named `private_key_enc`, so `hub keys rewrap`
  re-encrypts it after a key-ring rotation like every other ciphertext.
- A department that seals its licences itself registers its public key only (private_key_enc NULL).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.models import LicenceSigningKey

ALGORITHM = "Ed25519"
PRESENTATION_OWNER = "HUB-PRESENTATION"
JWKS_FORMAT = "hub-licence-jwks/1"


class SigningKeyError(LookupError):
    """No usable key: unknown key id, or a department without a signing key."""


def b64url(raw: bytes) -> str:
    """base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Inverse of b64url (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(public_raw: bytes) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 public key (RFC 8037 member set), base64url."""
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(public_raw)}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(members.encode("ascii")).digest())


def jwk(row: LicenceSigningKey | dict[str, Any]) -> dict[str, Any]:
    """Public JWK of a key row (never the private part), with the department and validity period."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    retired = get("retired_at")
    return {
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
        "kid": get("key_id"), "x": b64url(bytes(get("public_key"))),
        "department_code": get("department_code"), "hub_algorithm": get("algorithm"),
        "created_at": get("created_at").isoformat() if get("created_at") else None,
        "retired_at": retired.isoformat() if retired else None,
    }


def _encrypt_private(private_key: Ed25519PrivateKey) -> bytes:
    """The private key's raw seed, encrypted under the hub key ring (key-encryption key)."""
    from hub.crypto import get_cipher

    seed = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return get_cipher().encrypt(b64url(seed))


def decrypt_private(token: bytes) -> Ed25519PrivateKey:
    """Open an encrypted private key (raises hub.crypto.DecryptionError when tampered or under an unknown key)."""
    from hub.crypto import get_cipher

    return Ed25519PrivateKey.from_private_bytes(unb64url(get_cipher().decrypt(bytes(token))))


def create_key(engine: sa.Engine, department_code: str, at: datetime) -> str:
    """Add a new current key for the department, retiring its previous one at `at`; returns the new key id."""
    private_key = Ed25519PrivateKey.generate()
    public = raw_public(private_key.public_key())
    key_id = thumbprint(public)
    table = LicenceSigningKey.__table__
    with engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.department_code == department_code, table.c.retired_at.is_(None))
            .values(retired_at=at)
        )
        connection.execute(table.insert().values(
            key_id=key_id, department_code=department_code, algorithm=ALGORITHM, public_key=public,
            private_key_enc=_encrypt_private(private_key), created_at=at, retired_at=None,
        ))
    _cache_clear()
    return key_id


rotate_key = create_key  # rotation = a new current key; the old one stays, retired, for verification


def register_public_key(engine: sa.Engine, department_code: str, public_raw: bytes, at: datetime) -> str:
    """Record the public key of a department that seals its own licences (no private key here); returns its id."""
    Ed25519PublicKey.from_public_bytes(public_raw)  # refuse anything that is not an Ed25519 key
    key_id = thumbprint(public_raw)
    table = LicenceSigningKey.__table__
    with engine.begin() as connection:
        if connection.execute(sa.select(table.c.key_id).where(table.c.key_id == key_id)).first() is None:
            connection.execute(table.insert().values(
                key_id=key_id, department_code=department_code, algorithm=ALGORITHM, public_key=public_raw,
                private_key_enc=None, created_at=at, retired_at=None,
            ))
    _cache_clear()
    return key_id


def ensure_keys(engine: sa.Engine, department_codes: set[str] | list[str], at: datetime) -> dict[str, str]:
    """The current signing key id of each department, creating a key for those that have none."""
    table = LicenceSigningKey.__table__
    with engine.connect() as connection:
        current = dict(connection.execute(
            sa.select(table.c.department_code, table.c.key_id)
            .where(table.c.retired_at.is_(None), table.c.private_key_enc.is_not(None))
            .order_by(table.c.created_at)
        ).all())
    for code in sorted(set(department_codes) - set(current)):
        current[code] = create_key(engine, code, at)
    return {code: current[code] for code in department_codes}


def list_keys(engine: sa.Engine, department_code: str | None = None) -> list[dict[str, Any]]:
    """Every key (public part only), oldest first, optionally of one department."""
    table = LicenceSigningKey.__table__
    query = sa.select(table.c.key_id, table.c.department_code, table.c.algorithm, table.c.public_key,
                      table.c.created_at, table.c.retired_at, table.c.private_key_enc.is_not(None).label("has_private"))
    if department_code:
        query = query.where(table.c.department_code == department_code)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(table.c.created_at, table.c.key_id))]


def jwks(engine: sa.Engine, department_code: str | None = None) -> dict[str, Any]:
    """The published public keys (JWKS-like JSON), current and retired, of one or every department."""
    return {"format": JWKS_FORMAT, "keys": [jwk(row) for row in list_keys(engine, department_code)]}


@dataclass(frozen=True)
class PublicKey:
    """A verification key: id, owner, algorithm, the key object, when it was retired."""

    key_id: str
    department_code: str
    algorithm: str
    key: Ed25519PublicKey
    retired_at: datetime | None


def public_keys_from_jwks(document: dict[str, Any]) -> dict[str, PublicKey]:
    """Verification keys by id from a published JWKS (for offline verifiers)."""
    out: dict[str, PublicKey] = {}
    for entry in document.get("keys", []):
        raw = unb64url(entry["x"])
        if thumbprint(raw) != entry["kid"]:
            continue  # a key whose id does not match its bytes is not trusted
        retired = entry.get("retired_at")
        out[entry["kid"]] = PublicKey(entry["kid"], entry.get("department_code", ""), entry.get("hub_algorithm", ALGORITHM),
                                      Ed25519PublicKey.from_public_bytes(raw),
                                      datetime.fromisoformat(retired) if retired else None)
    return out


class KeyStore:
    """Keys of one database, loaded lazily and cached per process (private keys decrypted once per process)."""

    def __init__(self, engine: sa.Engine) -> None:
        """Bind to a database."""
        self.engine = engine
        self._public: dict[str, PublicKey] = {}
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._lock = threading.Lock()

    def public(self, key_id: str) -> PublicKey | None:
        """The verification key of a key id (None if the hub never published it)."""
        found = self._public.get(key_id)
        if found is None:
            table = LicenceSigningKey.__table__
            with self.engine.connect() as connection:
                row = connection.execute(sa.select(table).where(table.c.key_id == key_id)).first()
            if row is None:
                return None
            found = PublicKey(row.key_id, row.department_code, row.algorithm,
                              Ed25519PublicKey.from_public_bytes(bytes(row.public_key)), row.retired_at)
            with self._lock:
                self._public[key_id] = found
        return found

    def private(self, key_id: str) -> Ed25519PrivateKey:
        """The signing key of a key id (decrypted under the key ring)."""
        found = self._private.get(key_id)
        if found is None:
            table = LicenceSigningKey.__table__
            with self.engine.connect() as connection:
                token = connection.execute(sa.select(table.c.private_key_enc).where(table.c.key_id == key_id)).scalar()
            if token is None:
                raise SigningKeyError(f"没有该密钥的私钥 no private key for key id {key_id}")
            found = decrypt_private(token)
            with self._lock:
                self._private[key_id] = found
        return found

    def current_key_id(self, department_code: str) -> str | None:
        """The department's current signing key id (None if it has none)."""
        table = LicenceSigningKey.__table__
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(table.c.key_id)
                .where(table.c.department_code == department_code, table.c.retired_at.is_(None),
                       table.c.private_key_enc.is_not(None))
                .order_by(table.c.created_at.desc()).limit(1)
            ).scalar()


_stores: dict[str, KeyStore] = {}


def store_for(engine: sa.Engine) -> KeyStore:
    """The process-wide key store of a database."""
    key = engine.url.render_as_string(hide_password=False)
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = KeyStore(engine)
    return store


def _cache_clear() -> None:
    """Forget cached keys (after a key was created or rotated)."""
    _stores.clear()
