"""The hub's open-data release key: Ed25519, private key encrypted at rest (licences.keys, owner HUB-OPENDATA).

发布签名密钥。The key lives in `licence_signing_key` like every other signing key of the hub (key id = RFC 7638 JWK
thumbprint; private seed sealed under the key ring; `hub keys rewrap` re-encrypts it). manifest.sig is
{"algorithm": "Ed25519", "key_id", "signature" (base64 of the signature over the exact bytes of manifest.json)};
keys.json publishes every public key (current and retired), so anyone can verify offline.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature

from licences import keys as key_store

OWNER = "HUB-OPENDATA"
ALGORITHM = "Ed25519"
KEYS_FORMAT = "hub-opendata-keys/1"


def release_key_id(engine: sa.Engine, at: datetime) -> str:
    """The current release key id (created, encrypted under the key ring, on first use)."""
    return key_store.ensure_keys(engine, [OWNER], at)[OWNER]


def rotate_release_key(engine: sa.Engine, at: datetime) -> str:
    """A new current release key; the old one stays, retired, for verifying old releases."""
    return key_store.rotate_key(engine, OWNER, at)


def sign(engine: sa.Engine, key_id: str, data: bytes) -> dict[str, str]:
    """manifest.sig of the given bytes."""
    private = key_store.store_for(engine).private(key_id)
    return {"algorithm": ALGORITHM, "key_id": key_id, "signature": base64.b64encode(private.sign(data)).decode("ascii")}


def public_keys(engine: sa.Engine) -> dict[str, Any]:
    """keys.json: every release public key as a JWK (kid = thumbprint, x = base64url raw key)."""
    document = key_store.jwks(engine, OWNER)
    return {"format": KEYS_FORMAT, "owner": OWNER, "algorithm": ALGORITHM, "keys": document["keys"]}


def verify(signature: dict[str, Any], data: bytes, keys_document: dict[str, Any]) -> tuple[bool, str]:
    """Check a manifest.sig against keys.json; (ok, reason in Chinese)."""
    if signature.get("algorithm") != ALGORITHM:
        return False, f"不支持的签名算法 {signature.get('algorithm')!r}"
    trusted = key_store.public_keys_from_jwks(keys_document)
    public = trusted.get(str(signature.get("key_id")))
    if public is None:
        return False, f"公钥集中没有签名密钥 {signature.get('key_id')}"
    try:
        raw = base64.b64decode(str(signature.get("signature", "")), validate=True)
        public.key.verify(raw, data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False, "签名无效（manifest.json 被篡改或签名不符）"
    return True, "签名有效"


def dumps(document: dict[str, Any]) -> bytes:
    """The JSON bytes written for manifest.json / manifest.sig / keys.json (UTF-8, stable order)."""
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


__all__ = ["ALGORITHM", "OWNER", "dumps", "public_keys", "release_key_id", "rotate_release_key", "sign", "verify"]
