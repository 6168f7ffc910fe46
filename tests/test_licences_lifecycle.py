"""E-licence life cycle: revocation (with a credit record), cancellation, renewal; expiry reminders exactly once; 亮证 tokens."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from hub.models import CreditRecord, Licence, LicenceEvent, LicenceReminder
from licences import keys, lifecycle, presentation, reminders, verify
from licences.seal import seal_pending
from schemas.identifiers import check_licence_ids
from test_licences_seal import (AT, COMPANY_ID, PERSON_ID, PERSON_LICENCE_ID, TODAY, company_row, licence_db, licence_id,  # noqa: F401
                                stored, update, ISSUER_A)


@pytest.fixture
def sealed_db(licence_db):
    """The two licences, sealed."""
    seal_pending(licence_db, AT)
    return licence_db


# --- revoke, cancel, renew ------------------------------------------------------------------------


def test_revoke_writes_event_and_credit_record(sealed_db) -> None:
    result = lifecycle.revoke(sealed_db, COMPANY_ID, "使用过期原料生产食品", "市场监管局执法人员 王某", AT, "江市监罚〔2026〕12号")
    assert stored(sealed_db, COMPANY_ID)["status"] == "3"
    verdict = verify.verify_licence(sealed_db, COMPANY_ID, TODAY)
    assert not verdict.ok and verdict.status == "吊销"
    with sealed_db.connect() as connection:
        record = connection.execute(sa.select(CreditRecord.__table__)).one()
        event = connection.execute(sa.select(LicenceEvent.__table__)).one()
    assert record.record_id == result["credit_record_id"] and record.record_type == "行政处罚"
    assert record.subject_code == "91420100MA4K00002Y" and record.subject_kind == "02"
    assert record.content["处罚类别"] == "暂扣或者吊销许可证、暂扣或者吊销执照" and record.decision_no == "江市监罚〔2026〕12号"
    assert (event.event_type, event.reason, event.actor, event.new_status) == ("revoke", "使用过期原料生产食品", "市场监管局执法人员 王某", "3")
    with pytest.raises(lifecycle.LifecycleError, match="已吊销"):
        lifecycle.revoke(sealed_db, COMPANY_ID, "再次", "x", AT)


def test_revoking_a_person_licence_keeps_the_id_encrypted(sealed_db) -> None:
    lifecycle.revoke(sealed_db, PERSON_LICENCE_ID, "骗取登记", "民政局 李某", AT)
    with sealed_db.connect() as connection:
        record = connection.execute(sa.select(CreditRecord.__table__)).one()
    assert record.subject_kind == "01" and record.subject_code is None
    assert record.subject_person_id == stored(sealed_db, PERSON_LICENCE_ID)["holder_person_id"]
    from hub.crypto import get_cipher

    assert get_cipher().decrypt(record.subject_id_enc) == PERSON_ID
    assert PERSON_ID not in json.dumps(dict(record._mapping), default=str, ensure_ascii=False)


def test_cancel_needs_a_reason_and_is_recorded(sealed_db) -> None:
    with pytest.raises(lifecycle.LifecycleError, match="原因"):
        lifecycle.cancel(sealed_db, COMPANY_ID, " ", "x", AT)
    lifecycle.cancel(sealed_db, COMPANY_ID, "企业申请注销", "窗口 赵某", AT)
    assert verify.verify_licence(sealed_db, COMPANY_ID, TODAY).status == "注销"
    assert [e["event_type"] for e in lifecycle.events(sealed_db, COMPANY_ID)] == ["cancel"]


def test_renewal_is_a_new_sealed_version_linked_to_the_old(sealed_db) -> None:
    result = lifecycle.renew(sealed_db, COMPANY_ID, date(2029, 3, 1), date(2034, 2, 28), "到期延续", "窗口 赵某", AT)
    new_id = result["new_licence_id"]
    assert new_id.split(".")[-2] == "002" and bool(check_licence_ids([new_id]).valid[0])
    new = stored(sealed_db, new_id)
    assert new["related_licence_id"] == COMPANY_ID and new["valid_until"] == date(2034, 2, 28)
    assert verify.verify_licence(sealed_db, new_id, TODAY).ok
    assert verify.verify_licence(sealed_db, COMPANY_ID, TODAY).status == "注销"
    assert lifecycle.events(sealed_db, COMPANY_ID)[0]["related_licence_id"] == new_id


def test_renewing_a_person_licence_keeps_face_encrypted(sealed_db) -> None:
    result = lifecycle.renew(sealed_db, PERSON_LICENCE_ID, date(2026, 12, 1), None, "补领", "x", AT,
                             face_content={"持证人": "张伟", "配偶": "李娜", "备注": "补发"})
    new = stored(sealed_db, result["new_licence_id"])
    assert new["face_content"] is None and new["holder_code"] is None and new["face_content_enc"]
    assert verify.verify_licence(sealed_db, result["new_licence_id"], TODAY).ok


@settings(max_examples=200, deadline=None)
@given(org=st.text("0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=8, max_size=8),
       serial=st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=20),
       version=st.integers(1, 998))
def test_next_version_ids_are_valid_gbt_36904(org: str, serial: str, version: int) -> None:
    from stdnum.iso7064 import mod_37_36

    from schemas.identifiers import org_code_check_char, uscc_check_char

    body = "11420100" + org + org_code_check_char(org)
    old = licence_id(body + uscc_check_char(body), serial, f"{version:03d}")
    new = lifecycle.next_version_id(old)
    parts = new.split(".")
    assert parts[-2] == f"{version + 1:03d}" and parts[:-2] == old.split(".")[:-2]
    assert mod_37_36.is_valid("".join(parts[5:]))  # payload + check character, stdnum's oracle
    assert bool(check_licence_ids([new]).valid[0])


# --- reminders ------------------------------------------------------------------------------------


def _add_expiring(engine, days_left: list[int], today: date) -> list[str]:
    """Company licences expiring in the given numbers of days."""
    rows = [company_row(licence_id=licence_id(ISSUER_A, f"R{d + 1000:04d}{i}"), valid_until=today + timedelta(days=d))
            for i, d in enumerate(days_left)]
    with engine.begin() as connection:
        connection.execute(Licence.__table__.insert(), rows)
    return [r["licence_id"] for r in rows]


def test_reminders_once_per_threshold_across_reruns(licence_db, tmp_path) -> None:
    today = date(2026, 12, 1)
    ids = _add_expiring(licence_db, [100, 90, 45, 30, 10, 7, 1, -3], today)
    channel = reminders.JsonLinesChannel(tmp_path / "outbox")
    outbox = tmp_path / "outbox" / "outbox.jsonl"
    first = reminders.run_daily(licence_db, today, AT, channel)
    assert first["expired"] == 1 and first["sent"] == 6
    reminders.run_daily(licence_db, today, AT, channel)  # rerun of the same day: nothing new
    assert len(outbox.read_text(encoding="utf-8").splitlines()) == 6
    for day in range(1, 120):  # the following days, run daily (some twice)
        for _ in range(1 + (day % 17 == 0)):
            reminders.run_daily(licence_db, today + timedelta(days=day), AT + timedelta(days=day), channel)
    sent = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    pairs = [(m["licence_id"], m["threshold_days"]) for m in sent]
    assert len(pairs) == len(set(pairs))
    by_licence = {lid: sorted(t for l, t in pairs if l == lid) for lid in ids}
    assert by_licence[ids[0]] == by_licence[ids[1]] == by_licence[ids[2]] == [7, 30, 90]
    assert by_licence[ids[3]] == by_licence[ids[4]] == [7, 30]  # first seen within 30 days: the 90-day one is superseded
    assert by_licence[ids[5]] == by_licence[ids[6]] == [7]
    assert by_licence[ids[7]] == []  # already expired
    with licence_db.connect() as connection:
        statuses = dict(connection.execute(sa.select(Licence.licence_id, Licence.status)).all())
        superseded = connection.execute(sa.select(sa.func.count()).select_from(LicenceReminder)
                                        .where(LicenceReminder.status == "superseded")).scalar()
    assert all(statuses[lid] == "5" for lid in ids)  # all expired by the end
    assert superseded == 1 + 1 + 2 + 2  # 90 of the 30- and 10-day ones; 90 and 30 of the 7- and 1-day ones
    assert "9142" in sent[0]["holder_key"] and "text" in sent[0]


def test_person_reminders_carry_no_clear_id(licence_db, tmp_path) -> None:
    update(licence_db, PERSON_LICENCE_ID, valid_until=date(2026, 12, 20))
    channel = reminders.JsonLinesChannel(tmp_path)
    assert reminders.run_daily(licence_db, TODAY, AT, channel)["sent"] == 1
    text = (tmp_path / "outbox.jsonl").read_text(encoding="utf-8")
    assert PERSON_ID not in text and "张*" in text and "张伟" not in text


class FailingChannel:
    """A channel whose gateway is down."""

    name = "sms"

    def send(self, messages):
        raise ConnectionError("gateway down")


def test_a_failed_delivery_is_retried_not_lost(licence_db, tmp_path) -> None:
    _add_expiring(licence_db, [5], TODAY)
    with pytest.raises(ConnectionError):
        reminders.run_daily(licence_db, TODAY, AT, FailingChannel())
    result = reminders.run_daily(licence_db, TODAY, AT, reminders.JsonLinesChannel(tmp_path))
    assert result["sent"] == 1 and result["raised"] == 0


# --- 亮证 presentation tokens ---------------------------------------------------------------------


def test_presentation_token_valid_expired_tampered_revoked(sealed_db) -> None:
    token = presentation.present(sealed_db, COMPANY_ID, AT, minutes=5)
    published = keys.public_keys_from_jwks(keys.jwks(sealed_db))
    check = presentation.check_presentation(token, published, AT + timedelta(minutes=4), sealed_db)
    assert check.ok and check.outcome == "valid" and "食品经营许可证" in check.reason
    assert presentation.check_presentation(token, published, AT + timedelta(minutes=5, seconds=1), sealed_db).outcome == "expired"
    prefix, body, signature = token.split(".")
    claims = json.loads(keys.unb64url(body))
    forged = keys.b64url(json.dumps({**claims, "exp": claims["exp"] + 3600}, separators=(",", ":")).encode())
    tampered = presentation.check_presentation(f"{prefix}.{forged}.{signature}", published, AT, sealed_db)
    assert tampered.outcome == "tampered" and "篡改" in tampered.reason
    assert presentation.check_presentation("garbage", published, AT).outcome == "tampered"
    assert presentation.check_presentation(token, {}, AT).outcome == "tampered"
    lifecycle.revoke(sealed_db, COMPANY_ID, "违法经营", "执法人员", AT)
    revoked = presentation.check_presentation(token, published, AT + timedelta(minutes=1), sealed_db)
    assert revoked.outcome == "revoked" and "吊销" in revoked.reason
    with pytest.raises(presentation.PresentationError, match="吊销"):
        presentation.present(sealed_db, COMPANY_ID, AT)


def test_person_presentation_shows_masked_name_only(sealed_db) -> None:
    token = presentation.present(sealed_db, PERSON_LICENCE_ID, AT)
    claims = json.loads(keys.unb64url(token.split(".")[1]))
    assert claims["holder"] == "张*" and PERSON_ID not in token and PERSON_ID not in json.dumps(claims)
