"""The merge engine on SQLite and PostgreSQL: survivorship, conflicts, overrides, history, tombstones, lineage, incrementality."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from hub.crypto import get_cipher
from hub.db import engine_for, upgrade
from hub.models import GoldenVersion, LegalEntity, LibraryClaim, Person, QualityConflict, StewardAudit
from libraries.history import as_of, history
from libraries.merge import merge_claims
from libraries.overrides import list_overrides, revoke_override, set_override, verify_audit
from libraries.spec import Claims
from schemas.identifiers import resident_id_check_char

UTC = dt.timezone.utc
T1 = dt.datetime(2026, 1, 1, tzinfo=UTC)
T2 = dt.datetime(2026, 1, 2, tzinfo=UTC)
T3 = dt.datetime(2026, 1, 3, tzinfo=UTC)
T4 = dt.datetime(2026, 1, 4, tzinfo=UTC)


def rid(sequence: int) -> str:
    body = f"420102199001{sequence:02d}011"[:17]
    return body + resident_id_check_char(body)


@pytest.fixture
def engine(hub_settings, hub_db_url):
    upgrade(hub_db_url)
    yield engine_for(hub_db_url)


def person(seq: int, **fields) -> tuple[str, dict]:
    """A person's key and a claim's fields."""
    number = rid(seq)
    return get_cipher().index_hash(number), {"id_number": number, **fields}


def claims_of(*items: tuple[str, dict], valid_from: dt.datetime | None = None, deleted: bool = False) -> Claims:
    out = Claims()
    for n, (key, fields) in enumerate(items):
        out.add(key, fields, valid_from, n, deleted=deleted, source_key=f"k{n}")
    return out


def merge(engine, source_id: str, claims: Claims, at: dt.datetime, run: str = "r", library: str = "population") -> dict:
    return merge_claims(engine, library, claims, source_id=source_id, run_id=f"{source_id}-{run}", extracted_at=at,
                        ruleset_version="rs1")


def current(engine, key: str) -> Person | None:
    with sa.orm.Session(engine) as session:
        return session.get(Person, key)


def test_authority_order_recency_completeness_and_null_never_wins(engine) -> None:
    key, gongan = person(1, name="张伟", gender="1", address="武汉市江岸区一路1号", phone="13800000001", marital_status="10")
    merge(engine, "gongan_hjrk", claims_of((key, gongan), valid_from=T1), T1)
    # 人社 says another name, later: 公安 keeps the name (authority), but the newer phone wins (phone: recency only)
    _, renshe = person(1, name="张卫", phone="13900000002")
    merge(engine, "renshe_sbcb", claims_of((key, renshe), valid_from=T2), T2)
    row = current(engine, key)
    assert row.name == "张伟" and get_cipher().decrypt(row.phone_enc) == "13900000002"
    assert row.lineage["name"]["source_id"] == "gongan_hjrk" and row.lineage["phone"]["source_id"] == "renshe_sbcb"
    # 民政 is first for marital status; a claim without a value (None) never beats 公安's value on other fields
    _, minzheng = person(1, name=None, marital_status="20")
    merge(engine, "minzheng_hydj", claims_of((key, minzheng), valid_from=T3), T3)
    row = current(engine, key)
    assert row.marital_status == "20" and row.name == "张伟" and row.gender == "1"
    assert row.lineage["marital_status"] == {"source_id": "minzheng_hydj", "source_key": "k0", "run_id": "minzheng_hydj-r",
                                             "extracted_at": T3.isoformat(), "ruleset_version": "rs1",
                                             "valid_from": T3.isoformat()}
    # completeness decides between two equally authoritative, equally recent claims of unlisted sources
    key2, sparse = person(2, name="李四", phone="111")
    _, full = person(2, name="李四", gender="1", phone="222")
    merge(engine, "x_sparse", claims_of((key2, sparse)), T1)
    merge(engine, "x_full", claims_of((key2, full)), T1)
    assert get_cipher().decrypt(current(engine, key2).phone_enc) == "222"


def test_conflicts_recorded_masked_and_resolved(engine) -> None:
    key, gongan = person(3, name="王芳", phone="13800000003")
    merge(engine, "gongan_hjrk", claims_of((key, gongan)), T1)
    _, renshe = person(3, name="王方")
    merge(engine, "renshe_sbcb", claims_of((key, renshe)), T2)
    with sa.orm.Session(engine) as session:
        found = session.scalars(sa.select(QualityConflict)).all()
    assert [(c.rule_id, c.status, c.source_id, c.value, c.reference_source_id, c.reference_value, c.subject_key)
            for c in found] == [("MERGE-population-name", "open", "renshe_sbcb", "王方", "gongan_hjrk", "王芳", key)]
    # 人社 corrects the name: the conflict is resolved
    _, fixed = person(3, name="王芳")
    merge(engine, "renshe_sbcb", claims_of((key, fixed)), T3, run="r2")
    with sa.orm.Session(engine) as session:
        assert session.scalars(sa.select(QualityConflict.status)).all() == ["resolved"]
    # personal values are masked in conflicts: two phones disagree
    _, other = person(3, name="王芳", phone="13911112222")
    merge(engine, "renshe_sbcb", claims_of((key, other), valid_from=T1), T4, run="r3")
    with sa.orm.Session(engine) as session:
        phone = session.scalars(sa.select(QualityConflict).where(QualityConflict.field == "phone")).one()
    assert "*" in phone.value and "*" in phone.reference_value and "13911112222" not in phone.value


def test_overrides_survive_recollection_and_are_audited(engine) -> None:
    key, gongan = person(4, name="赵六")
    merge(engine, "gongan_hjrk", claims_of((key, gongan)), T1)
    result = set_override(engine, "population", key, "name", "赵陆", steward="李专员", department="gongan", reason="户籍更正", at=T2)
    assert result["versions"] == 1
    assert current(engine, key).name == "赵陆"
    assert current(engine, key).lineage["name"]["override"] == result["override_id"]
    # 公安 sends the old name again (a changed claim: new address): the override still wins
    _, again = person(4, name="赵六", address="新地址")
    merge(engine, "gongan_hjrk", claims_of((key, again)), T3, run="r2")
    assert current(engine, key).name == "赵陆"
    assert [o["value"] for o in list_overrides(engine, "population", key)] == ["赵陆"]
    revoke_override(engine, result["override_id"], steward="李专员", reason="误改", at=T4)
    assert current(engine, key).name == "赵六"
    assert verify_audit(engine) == {"entries": 2, "ok": True, "first_bad_id": None}
    with engine.begin() as connection:  # tampering breaks the chain
        connection.execute(sa.update(StewardAudit.__table__).where(StewardAudit.__table__.c.id == 1).values(actor="别人"))
    assert verify_audit(engine)["ok"] is False


def test_as_of_on_both_axes_and_history(engine) -> None:
    key, first = person(5, name="孙七", marital_status="10")
    merge(engine, "gongan_hjrk", claims_of((key, first), valid_from=T1), T2)
    _, married = person(5, name="孙七", marital_status="20")
    merge(engine, "minzheng_hydj", claims_of((key, married), valid_from=T3), T4)
    assert as_of(engine, "population", key)["record"]["marital_status"] == "20"
    # as known at T2 (before the registration reached the hub): unmarried
    assert as_of(engine, "population", key, known_at=T2 + dt.timedelta(hours=1))["record"]["marital_status"] == "10"
    # known now, valid on T2 (before the registration date): unmarried; valid on T3: married
    assert as_of(engine, "population", key, valid_at=T2)["record"]["marital_status"] == "10"
    assert as_of(engine, "population", key, valid_at=T3)["record"]["marital_status"] == "20"
    assert as_of(engine, "population", key, known_at=T1) is None
    versions = history(engine, "population", key)
    assert [(v["version"], v["superseded_at"], v["valid_to"]) for v in versions] == [
        (1, T4.isoformat(), T3.isoformat()), (2, None, None)]


def test_tombstone_when_every_claim_is_withdrawn(engine) -> None:
    key, gongan = person(6, name="周八")
    merge(engine, "gongan_hjrk", claims_of((key, gongan)), T1)
    _, renshe = person(6, name="周八")
    merge(engine, "renshe_sbcb", claims_of((key, renshe)), T1)
    counts = merge(engine, "gongan_hjrk", claims_of((key, {}), deleted=True), T2, run="r2")
    assert counts["tombstones"] == 0 and current(engine, key) is not None  # 人社 still claims the person
    counts = merge(engine, "renshe_sbcb", claims_of((key, {}), deleted=True), T3, run="r2")
    assert counts["tombstones"] == 1 and current(engine, key) is None
    assert history(engine, "population", key)[-1]["tombstone"] is True
    assert as_of(engine, "population", key) is None
    assert as_of(engine, "population", key, known_at=T2)["record"]["name"] == "周八"


def test_incremental_merge_touches_only_changed_keys(engine) -> None:
    items = [person(10 + n, name=f"人{n}", gender="1") for n in range(20)]
    first = merge(engine, "gongan_hjrk", claims_of(*items), T1)
    assert first["claims_changed"] == 20 and first["versions"] == 20
    again = merge(engine, "gongan_hjrk", claims_of(*items), T2, run="r2")
    assert again == {"claims": 20, "claims_changed": 0, "claims_unchanged": 20, "keys_touched": 0, "versions": 0,
                     "tombstones": 0, "conflicts_open": 0, "conflicts_resolved": 0}
    items[7] = (items[7][0], {**items[7][1], "name": "改名"})
    one = merge(engine, "gongan_hjrk", claims_of(*items), T3, run="r3")
    assert (one["claims_changed"], one["keys_touched"], one["versions"]) == (1, 1, 1)
    with sa.orm.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(GoldenVersion)) == 21
        assert session.scalar(sa.select(sa.func.count()).select_from(LibraryClaim)) == 20
        payload = session.scalars(sa.select(LibraryClaim.payload_enc)).first()
    assert "id_number" in json.loads(get_cipher().decrypt(payload))  # stored encrypted, decrypts to canonical JSON


def test_legal_entity_scjg_first_and_types_restored(engine) -> None:
    from decimal import Decimal

    scjg = {"uscc": "91420102MA4KXXXX1X", "name": "鑫达商贸有限公司", "entity_kind": "enterprise", "registered_capital": Decimal("100.500000"),
            "established_date": dt.date(2010, 5, 6), "legal_rep_id": rid(1)}
    other = {"uscc": "91420102MA4KXXXX1X", "name": "鑫达公司", "entity_kind": "enterprise", "business_scope": "商贸"}
    merge(engine, "minzheng_shzz", claims_of(("91420102MA4KXXXX1X", other), valid_from=T3), T3, library="legal_entity")
    merge(engine, "scjg_qydj", claims_of(("91420102MA4KXXXX1X", scjg), valid_from=T1), T1, library="legal_entity")
    with sa.orm.Session(engine) as session:
        row = session.get(LegalEntity, "91420102MA4KXXXX1X")
    assert row.name == "鑫达商贸有限公司" and row.business_scope == "商贸" and row.registered_capital == Decimal("100.5")
    assert row.established_date == dt.date(2010, 5, 6) and row.legal_rep_person_id == get_cipher().index_hash(rid(1))
