"""亮证: a short-lived presentation token the holder shows (QR) and a counter officer's system verifies.

亮证令牌：由枢纽亮证密钥（Ed25519，部门代码 HUB-PRESENTATION）签名，几分钟内有效；
核验结果：有效 / 已过期 / 被篡改 / 证照已吊销（或注销、过期）。

Token: `HP1.<base64url(JCS claims)>.<base64url(signature)>`. Claims: licence id, licence name, masked
holder name, issuer, the sealed licence's key id and a hash of its seal value (so a token names one
sealed version), issued-at and expiry (Unix seconds), a random nonce, and the presentation key id.
No clear personal ID is in a token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature

from hub.crypto import mask_name
from hub.models import Licence
from licences import keys, status
from licences.canonical import canonical_bytes
from licences.verify import verify_licence

PREFIX = "HP1"
DEFAULT_MINUTES = 5
MAX_MINUTES = 60
_licence = Licence.__table__


class PresentationError(ValueError):
    """A token cannot be issued (licence unknown, unsealed or not in force)."""


@dataclass(frozen=True)
class PresentationCheck:
    """Outcome for the counter officer: valid / expired / tampered / revoked (licence not in force) / unknown_key."""

    outcome: str
    ok: bool
    reason: str
    licence_id: str | None = None
    claims: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def presentation_key_id(engine: sa.Engine, at: datetime) -> str:
    """The hub's current presentation key id (created on first use)."""
    return keys.ensure_keys(engine, [keys.PRESENTATION_OWNER], at)[keys.PRESENTATION_OWNER]


def present(engine: sa.Engine, licence_id: str, now: datetime, minutes: int = DEFAULT_MINUTES) -> str:
    """Issue a token for a licence that is sealed and in force on `now`'s date; valid for `minutes`."""
    if not 0 < minutes <= MAX_MINUTES:
        raise PresentationError(f"有效分钟数应在 1–{MAX_MINUTES} 之间")
    verdict = verify_licence(engine, licence_id, now.date())
    if not verdict.ok:
        raise PresentationError(f"不能亮证：{verdict.reason}")
    with engine.connect() as connection:
        row = connection.execute(sa.select(_licence).where(_licence.c.licence_id == licence_id)).one()
    person = row.holder_person_id is not None and row.holder_code is None
    key_id = presentation_key_id(engine, now)
    issued = int(now.timestamp())
    claims = {
        "lid": licence_id, "name": row.licence_name, "holder": mask_name(row.holder_name) if person else row.holder_name,
        "issuer": row.issuer, "seal_kid": row.seal_key_id,
        "seal_hash": keys.b64url(hashlib.sha256(bytes(row.seal_value)).digest()[:16]),
        "iat": issued, "exp": issued + 60 * minutes, "nonce": secrets.token_hex(8), "kid": key_id,
    }
    body = canonical_bytes(claims)
    signature = keys.store_for(engine).private(key_id).sign(body)
    return f"{PREFIX}.{keys.b64url(body)}.{keys.b64url(signature)}"


def check_presentation(token: str, public_keys: dict[str, keys.PublicKey], now: datetime,
                       engine: sa.Engine | None = None) -> PresentationCheck:
    """Verify a token: signature, expiry, and — given the hub database — that the licence is still in force and unchanged."""
    try:
        prefix, body_text, signature_text = token.strip().split(".")
        if prefix != PREFIX:
            raise ValueError(prefix)
        body, signature = keys.unb64url(body_text), keys.unb64url(signature_text)
        claims = json.loads(body)
        key_id = claims["kid"]
    except (ValueError, KeyError, TypeError):
        return PresentationCheck("tampered", False, "亮证码格式错误或已被篡改")
    public = public_keys.get(key_id)
    if public is None:
        return PresentationCheck("tampered", False, f"亮证码签名密钥未知（{key_id}），不能确认来源", claims.get("lid"))
    try:
        public.key.verify(signature, body)
    except InvalidSignature:
        return PresentationCheck("tampered", False, "亮证码已被篡改（签名不符）", claims.get("lid"))
    moment = int(now.astimezone(timezone.utc).timestamp())
    if moment >= int(claims["exp"]):
        expired_at = datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
        return PresentationCheck("expired", False, f"亮证码已过期（{expired_at:%Y-%m-%d %H:%M:%S} UTC 失效），请持证人重新亮证",
                                 claims["lid"], claims)
    if moment < int(claims["iat"]) - 120:
        return PresentationCheck("tampered", False, "亮证码签发时间在未来，请核对系统时间", claims["lid"], claims)
    if engine is not None:
        with engine.connect() as connection:
            row = connection.execute(sa.select(_licence.c.status, _licence.c.valid_until, _licence.c.seal_value)
                                     .where(_licence.c.licence_id == claims["lid"])).first()
        if row is None:
            return PresentationCheck("revoked", False, "证照不存在（枢纽未收录该证照标识）", claims["lid"], claims)
        code = status.status_code(row.status)
        if code in (status.REVOKED, status.CANCELLED, status.WITHDRAWN, status.EXPIRED) or (
                row.valid_until is not None and row.valid_until < now.date()):
            name = "过期" if code in (None, status.VALID) else status.short_name(row.status)
            return PresentationCheck("revoked", False, f"证照已{name}，亮证无效", claims["lid"], claims)
        current = keys.b64url(hashlib.sha256(bytes(row.seal_value or b"")).digest()[:16])
        if current != claims["seal_hash"]:
            return PresentationCheck("revoked", False, "证照已变更或重新签章，亮证码对应的版本已失效", claims["lid"], claims)
    return PresentationCheck("valid", True, f"亮证有效：{claims['name']}（{claims['holder']}）", claims["lid"], claims)
