"""Verifying licences: integrity of the seal and current status; offline exports and QR payloads.

验证：签章完整性（内容未被篡改、密钥已公布且在签章时有效）与当前状态（有效、注销、吊销、撤销、过期）。

- `verify_licence(engine, licence_id, today)` — the hub's answer for one licence.
- `export_licence(engine, licence_id)` — an offline-verifiable JSON: the sealed document (GB/T 36903
  element names), the seal (algorithm, key id, base64url value), the issuer's public JWK and a QR payload.
  It is the holder's copy: for a natural person it contains the ID number as the licence face shows it
  (the database never stores it in clear).
- `qr_payload(export)` — `HL1.<base64url(deflate(canonical document))>.<base64url(signature)>`: compact
  and self-contained (the key id is inside the signed document).
- `verify_export(export_or_qr, public_keys, today, status_of=None)` — offline check against a published
  JWKS; with `status_of` (e.g. the hub's status lookup) it also checks the current status.
Reasons are Chinese sentences a counter officer can read out.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import date, datetime
from multiprocessing import get_context
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature

from hub.models import Licence
from licences import keys, status
from licences.canonical import FORMAT, SEAL, canonical_bytes, document_bytes, licence_from_document, sealed_document
from licences.seal import ALL_COLUMNS, clear_licence, key_ranges, read_chunk

QR_PREFIX = "HL1"
EXPORT_FORMAT = "hub-elicence-export/1"
MAX_DOCUMENT_BYTES = 256 * 1024
_table = Licence.__table__


@dataclass(frozen=True)
class Verdict:
    """The answer of a verification: passed or not, the current status, a Chinese reason."""

    ok: bool
    licence_id: str | None
    status: str  # 有效 / 注销 / 吊销 / 撤销 / 过期 / 未知
    reason: str
    key_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def seal_problem(document_bytes_: bytes, signature: bytes | None, key_id: str | None, algorithm: str | None,
                 sealed_at: Any, public: keys.PublicKey | None) -> str | None:
    """Why a seal does not hold (a Chinese reason), or None when it does."""
    if not signature:
        return "证照未签章"
    if public is None:
        return f"签章密钥未公布或未知（密钥标识 {key_id}），无法确认签章"
    if algorithm != public.algorithm:
        return f"签章算法 {algorithm} 与密钥算法 {public.algorithm} 不符"
    if public.retired_at is not None and sealed_at is not None:
        when = sealed_at if isinstance(sealed_at, datetime) else datetime.fromisoformat(str(sealed_at).replace("Z", "+00:00"))
        if when > public.retired_at:
            return f"签章时间晚于密钥停用时间（密钥 {key_id} 已于 {public.retired_at:%Y-%m-%d} 停用）"
    try:
        public.key.verify(bytes(signature), document_bytes_)
    except InvalidSignature:
        return "签章验证失败：证照内容已被篡改或签章无效"
    return None


def status_problem(stored_status: str | None, valid_until: Any, today: date) -> tuple[str, str | None]:
    """(short status name, Chinese reason if the licence is not in force today)."""
    code = status.status_code(stored_status)
    name = status.short_name(stored_status)
    if isinstance(valid_until, str):
        valid_until = date.fromisoformat(valid_until)
    if code in (status.REVOKED, status.CANCELLED, status.WITHDRAWN):
        return name, f"证照已{name}，不再有效"
    if code == status.EXPIRED or (valid_until is not None and valid_until < today):
        return "过期", f"证照已过期（有效期截止 {valid_until}）" if valid_until else "证照已过期"
    if code is None:
        return name, f"证照状态未知（{stored_status}）"
    return name, None


def _verdict_for_row(row: Any, store: keys.KeyStore, today: date, cipher: Any = None, in_place: bool = False) -> Verdict:
    """Verify one licence row: seal first, then status (in_place: row is a dict the caller owns, see clear_licence)."""
    licence = clear_licence(row, cipher, in_place)
    problem = seal_problem(
        document_bytes(licence) if licence.get("seal_value") else b"", licence.get("seal_value"),
        licence.get("seal_key_id"), licence.get("seal_algorithm"), licence.get("sealed_at"),
        store.public(licence["seal_key_id"]) if licence.get("seal_key_id") else None,
    )
    name, status_reason = status_problem(licence.get("status"), licence.get("valid_until"), today)
    if problem:
        return Verdict(False, licence["licence_id"], name, problem, licence.get("seal_key_id"))
    if status_reason:
        return Verdict(False, licence["licence_id"], name, status_reason, licence.get("seal_key_id"))
    return Verdict(True, licence["licence_id"], name, "签章有效，证照有效", licence.get("seal_key_id"))


def verify_licence(engine: sa.Engine, licence_id: str, today: date) -> Verdict:
    """Integrity of the stored licence's seal and its status on `today`."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(*ALL_COLUMNS).where(_table.c.licence_id == licence_id)).first()
    if row is None:
        return Verdict(False, licence_id, "未知", "证照不存在（枢纽未收录该证照标识）")
    return _verdict_for_row(row, keys.store_for(engine), today)


def _verify_chunk(url: str, first: Any, last: Any, today: date) -> dict[str, Any]:
    """Verify the sealed licences with first <= row key <= last (seal.row_key); counts by outcome and by reason."""
    from hub.db import engine_for

    engine = engine_for(url)
    store = keys.store_for(engine)
    with engine.connect() as connection:
        rows = read_chunk(connection, first, last, sealed=True)
    counts: dict[str, Any] = {"checked": 0, "seal_ok": 0, "in_force": 0, "reasons": {}, "failed_ids": []}
    cipher = None
    for row in rows:
        if cipher is None and (row["holder_code_enc"] is not None or row["face_content_enc"] is not None):
            from hub.crypto import get_cipher

            cipher = get_cipher()
        verdict = _verdict_for_row(row, store, today, cipher, in_place=True)
        counts["checked"] += 1
        if verdict.ok:
            counts["seal_ok"] += 1
            counts["in_force"] += 1
            continue
        if verdict.reason.startswith("证照已") or verdict.reason.startswith("证照状态"):
            counts["seal_ok"] += 1  # seal holds, licence not in force
        else:
            if len(counts["failed_ids"]) < 100:
                counts["failed_ids"].append(verdict.licence_id)
        reason = verdict.reason.split("（")[0]  # the kind of failure, without the licence's own details
        counts["reasons"][reason] = counts["reasons"].get(reason, 0) + 1
    return counts


def verify_stored(engine: sa.Engine, today: date, workers: int = 1, chunk_rows: int = 5_000) -> dict[str, Any]:
    """Verify every sealed licence (seal and status), in worker processes when workers > 1; totals and reasons."""
    url = engine.url.render_as_string(hide_password=False)
    ranges = key_ranges(engine, _table.c.seal_value.is_not(None), chunk_rows)
    total: dict[str, Any] = {"checked": 0, "seal_ok": 0, "in_force": 0, "reasons": {}, "failed_ids": []}

    def add(part: dict[str, Any]) -> None:
        for name in ("checked", "seal_ok", "in_force"):
            total[name] += part[name]
        for reason, n in part["reasons"].items():
            total["reasons"][reason] = total["reasons"].get(reason, 0) + n
        total["failed_ids"] = (total["failed_ids"] + part["failed_ids"])[:100]

    if workers <= 1:
        for first, last in ranges:
            add(_verify_chunk(url, first, last, today))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_verify_chunk, url, first, last, today) for first, last in ranges]):
                add(future.result())
    total["seal_failed"] = total["checked"] - total["seal_ok"]
    return total


def export_licence(engine: sa.Engine, licence_id: str) -> dict[str, Any]:
    """Offline-verifiable JSON of a sealed licence: document, seal, issuer's public key, QR payload."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(*ALL_COLUMNS).where(_table.c.licence_id == licence_id)).first()
    if row is None:
        raise LookupError(f"证照不存在 licence {licence_id} not found")
    licence = clear_licence(row)
    if not licence.get("seal_value"):
        raise LookupError(f"证照未签章 licence {licence_id} is not sealed yet")
    document = json.loads(canonical_bytes(sealed_document(licence)))
    public = keys.list_keys(engine)
    key = next((k for k in public if k["key_id"] == licence["seal_key_id"]), None)
    export = {
        "format": EXPORT_FORMAT,
        "canonicalization": "RFC 8785 (JCS) over `document`",
        "document": document,
        "seal": {"algorithm": licence["seal_algorithm"], "key_id": licence["seal_key_id"],
                 "value": keys.b64url(bytes(licence["seal_value"]))},
        "public_key": keys.jwk(key) if key else None,
        "status_at_export": status.short_name(licence.get("status")),
    }
    export["qr"] = qr_payload(export)
    return export


def qr_payload(export: dict[str, Any]) -> str:
    """Compact QR text of an export: HL1.<b64url(deflate(JCS document))>.<b64url(signature)>."""
    body = zlib.compress(canonical_bytes(export["document"]), 9)
    return f"{QR_PREFIX}.{keys.b64url(body)}.{export['seal']['value']}"


def _parse_qr(text: str) -> tuple[bytes, bytes]:
    """(document bytes, signature) of a QR payload; ValueError when malformed."""
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != QR_PREFIX:
        raise ValueError("二维码内容格式错误（不是本枢纽的电子证照二维码）")
    inflater = zlib.decompressobj()
    raw = inflater.decompress(keys.unb64url(parts[1]), MAX_DOCUMENT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("二维码内容过大")
    return raw, keys.unb64url(parts[2])


def verify_export(
    export_or_qr: dict[str, Any] | str,
    public_keys: dict[str, keys.PublicKey],
    today: date,
    status_of: Callable[[str], str | None] | None = None,
) -> Verdict:
    """Offline verification of an export (JSON) or a QR payload against published keys (and status, if asked)."""
    try:
        if isinstance(export_or_qr, str):
            raw, signature = _parse_qr(export_or_qr)
            document = json.loads(raw)
        else:
            document = export_or_qr["document"]
            raw = canonical_bytes(document)
            signature = keys.unb64url(export_or_qr["seal"]["value"])
            if export_or_qr["seal"].get("key_id") != (document.get(SEAL) or {}).get("密钥标识"):
                return Verdict(False, document.get("证照标识"), "未知", "签章信息与证照内容中的密钥标识不一致")
    except (ValueError, KeyError, TypeError, zlib.error) as error:
        return Verdict(False, None, "未知", f"证照数据无法解析：{error}")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return Verdict(False, None, "未知", "证照数据格式不符")
    licence = licence_from_document(document)
    key_id = licence.get("seal_key_id")
    problem = seal_problem(raw, signature, key_id, licence.get("seal_algorithm"), licence.get("sealed_at"),
                           public_keys.get(key_id) if key_id else None)
    if problem:
        return Verdict(False, licence.get("licence_id"), "未知", problem, key_id)
    stored = status_of(licence["licence_id"]) if status_of else status.VALID
    if status_of and stored is None:
        return Verdict(False, licence["licence_id"], "未知", "证照不存在（枢纽未收录该证照标识）", key_id)
    name, reason = status_problem(stored, licence.get("valid_until"), today)
    if reason:
        return Verdict(False, licence["licence_id"], name, reason, key_id)
    return Verdict(True, licence["licence_id"], name, "签章有效，证照有效", key_id)


def status_lookup(engine: sa.Engine) -> Callable[[str], str | None]:
    """A status_of function for verify_export backed by the hub database."""
    def status_of(licence_id: str) -> str | None:
        with engine.connect() as connection:
            row = connection.execute(sa.select(_table.c.status).where(_table.c.licence_id == licence_id)).first()
        return None if row is None else (row.status or "")
    return status_of


def public_keys_of(engine: sa.Engine) -> dict[str, keys.PublicKey]:
    """Every published verification key of the hub database, by key id."""
    return keys.public_keys_from_jwks(keys.jwks(engine))
