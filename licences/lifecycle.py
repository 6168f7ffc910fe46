"""Life cycle of a licence: revocation (吊销), cancellation (注销), renewal (换发); every step recorded with reason and actor.

生命周期：吊销同时写入信用库一条行政处罚记录（自然人主体只存 HMAC 与密文，从不存明文身份号码）；
换发生成新版本证照（版本号加一，重算校验位，关联原证照标识），原证照注销。
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from hub.models import CreditRecord, Licence, LicenceEvent
from licences import status
from schemas import identifiers

SOURCE_ID = "hub-licences"  # provenance of rows the hub writes itself (credit records of revocations)
PENALTY_CATEGORY = "暂扣或者吊销许可证、暂扣或者吊销执照"  # code table penalty_categories, 05
_licence = Licence.__table__
_event = LicenceEvent.__table__


class LifecycleError(ValueError):
    """A life-cycle step that does not apply (unknown licence, already revoked…); the message is Chinese."""


def _load(connection: sa.Connection, licence_id: str) -> Any:
    """The licence row, or LifecycleError."""
    row = connection.execute(sa.select(_licence).where(_licence.c.licence_id == licence_id)).first()
    if row is None:
        raise LifecycleError(f"证照不存在：{licence_id}")
    return row


def _require_in_force(row: Any, action: str) -> None:
    """Refuse to act on a licence that is already revoked, cancelled or withdrawn."""
    code = status.status_code(row.status)
    if code in (status.REVOKED, status.CANCELLED, status.WITHDRAWN):
        raise LifecycleError(f"证照已{status.short_name(row.status)}，不能{action}：{row.licence_id}")


def _record_event(connection: sa.Connection, **values: Any) -> int:
    """Insert one licence_event row; returns its id."""
    return connection.execute(_event.insert().values(**values).returning(_event.c.id)).scalar_one()


def subject_kind(row: Any) -> str:
    """行政相对人类别 of a licence holder: 01 自然人, 04 个体工商户 (USCC 92…), 03 非法人组织 (USCC 93…, 51…), else 02 法人."""
    if row.holder_code_type == "111" or row.holder_person_id is not None:
        return "01"
    code = row.holder_code or ""
    if code.startswith("92"):
        return "04"
    if code[:2] in {"93", "51", "52", "53", "59"} and not code.startswith("91"):
        return "03"
    return "02"


def credit_record_id(licence_id: str) -> str:
    """Deterministic id of the credit record a licence's revocation writes (one per licence)."""
    return "licence-revocation-" + hashlib.sha256(licence_id.encode("utf-8")).hexdigest()[:40]


def revoke(engine: sa.Engine, licence_id: str, reason: str, actor: str, at: datetime,
           decision_no: str | None = None) -> dict[str, Any]:
    """吊销: status 已吊销, a licence_event, and a 行政处罚 credit record on the holder (IDs of persons stay encrypted)."""
    if not reason.strip():
        raise LifecycleError("吊销必须说明原因")
    with engine.begin() as connection:
        row = _load(connection, licence_id)
        _require_in_force(row, "吊销")
        record_id = credit_record_id(licence_id)
        person = subject_kind(row) == "01"
        connection.execute(CreditRecord.__table__.insert().values(
            record_id=record_id, record_type="行政处罚", subject_name=row.holder_name, subject_kind=subject_kind(row),
            subject_code=None if person else row.holder_code,
            subject_person_id=row.holder_person_id if person else None,
            subject_id_enc=row.holder_code_enc if person else None,
            decision_no=decision_no, decision_date=at.date(), authority=row.issuer, authority_code=row.issuer_code,
            content={"处罚类别": PENALTY_CATEGORY, "处罚内容": f"吊销{row.licence_name}（证照标识 {licence_id}）",
                     "违法事实": reason, "证照标识": licence_id, "证照编号": row.licence_number},
            valid_until=None, status="1", source_id=SOURCE_ID, run_id=f"revoke:{licence_id}"[:128], updated_at=at,
        ))
        connection.execute(_licence.update().where(_licence.c.licence_id == licence_id).values(status=status.REVOKED))
        event_id = _record_event(connection, licence_id=licence_id, event_type="revoke", reason=reason, actor=actor, at=at,
                                 old_status=row.status, new_status=status.REVOKED, credit_record_id=record_id)
    return {"licence_id": licence_id, "event_id": event_id, "status": "吊销", "credit_record_id": record_id}


def cancel(engine: sa.Engine, licence_id: str, reason: str, actor: str, at: datetime) -> dict[str, Any]:
    """注销: status 已注销 with a licence_event (no credit record: cancellation is not a penalty)."""
    if not reason.strip():
        raise LifecycleError("注销必须说明原因")
    with engine.begin() as connection:
        row = _load(connection, licence_id)
        _require_in_force(row, "注销")
        connection.execute(_licence.update().where(_licence.c.licence_id == licence_id).values(status=status.CANCELLED))
        event_id = _record_event(connection, licence_id=licence_id, event_type="cancel", reason=reason, actor=actor, at=at,
                                 old_status=row.status, new_status=status.CANCELLED)
    return {"licence_id": licence_id, "event_id": event_id, "status": "注销"}


def next_version_id(licence_id: str) -> str:
    """The identifier of the next version: 版本号 + 1 and a recomputed MOD 37,36 check character."""
    parsed = identifiers.check_licence_ids([licence_id])
    if not bool(parsed.valid[0]):
        raise LifecycleError(f"证照标识不符合 GB/T 36904，不能换发：{licence_id}")
    type_code, issuer, serial = str(parsed.licence_type_code[0]), str(parsed.issuer_code[0]), str(parsed.serial[0])
    version = int(str(parsed.version[0])) + 1
    if version > 999:
        raise LifecycleError(f"版本号已达上限 999：{licence_id}")
    payload = f"{type_code}{issuer}{serial}{version:03d}"
    check = identifiers.licence_id_check_char(payload)
    return f"{identifiers.LICENCE_ID_PREFIX}{type_code}.{issuer}.{serial}.{version:03d}.{check}"


def renew(engine: sa.Engine, licence_id: str, valid_from: date, valid_until: date | None, reason: str, actor: str,
          at: datetime, face_content: dict[str, Any] | None = None, seal: bool = True) -> dict[str, Any]:
    """换发: a new version linked to the old one (related_licence_id), the old one cancelled; sealed at once by default."""
    with engine.begin() as connection:
        row = _load(connection, licence_id)
        _require_in_force(row, "换发")
        new_id = next_version_id(licence_id)
        if connection.execute(sa.select(_licence.c.licence_id).where(_licence.c.licence_id == new_id)).first():
            raise LifecycleError(f"新版本证照已存在：{new_id}")
        values = {c: getattr(row, c) for c in row._fields}
        values.update(
            licence_id=new_id, issue_date=at.date(), valid_from=valid_from, valid_until=valid_until, status=status.VALID,
            related_licence_id=licence_id, seal_signer=None, seal_name=None, seal_algorithm=None, seal_key_id=None,
            seal_value=None, sealed_at=None, source_id=SOURCE_ID, run_id=f"renew:{licence_id}"[:128], updated_at=at,
        )
        if face_content is not None:
            if row.face_content_enc is not None:
                import json

                from hub.crypto import get_cipher

                values["face_content_enc"] = get_cipher().encrypt(json.dumps(face_content, ensure_ascii=False))
            else:
                values["face_content"] = face_content
        connection.execute(_licence.insert().values(**values))
        connection.execute(_licence.update().where(_licence.c.licence_id == licence_id).values(status=status.CANCELLED))
        event_id = _record_event(connection, licence_id=licence_id, event_type="renew", reason=reason or "换发新证",
                                 actor=actor, at=at, old_status=row.status, new_status=status.CANCELLED,
                                 related_licence_id=new_id)
    result = {"licence_id": licence_id, "new_licence_id": new_id, "event_id": event_id}
    if seal:
        from licences.seal import seal_one

        result["seal_key_id"] = seal_one(engine, new_id, at)["seal_key_id"]
    return result


def events(engine: sa.Engine, licence_id: str) -> list[dict[str, Any]]:
    """The life-cycle events of a licence, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(_event).where(_event.c.licence_id == licence_id).order_by(_event.c.id)).all()
    return [dict(r._mapping) for r in rows]
