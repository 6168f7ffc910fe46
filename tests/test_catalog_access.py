"""Access to shared resources on SQLite and PostgreSQL: keys, request → approve/refuse → grant, authorisation matrix."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from catalog import access
from catalog.access import AccessError, Authoriser, add_working_days, authorise
from catalog.lists import demand_list, responsibility_list
from hub import db
from hub.models import CatalogApiKey, SourceRun

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)  # a Friday (17:00 in Beijing)


@pytest.fixture
def engine(hub_db_url: str, hub_settings) -> Iterator[sa.Engine]:
    """A migrated hub database with three consumer departments."""
    from hub.crypto import get_cipher

    get_cipher.cache_clear()
    access.reset_caches()
    db.upgrade(hub_db_url)
    engine = db.engine_for(hub_db_url)
    for code in ("renshe", "gongan", "minzheng"):
        access.register_consumer(engine, code, T0)
    yield engine
    access.reset_caches()
    get_cipher.cache_clear()
    db.dispose_engines()


def _request(engine: sa.Engine, **overrides) -> int:
    """A request by 人社 for household items."""
    values = {"consumer_code": "renshe", "resource_code": "RK.household", "fields": ["household_address", "household_region"],
              "purpose_codes": ["SHBZ"], "purpose": "社会保险参保登记核实户籍", "requested_by": "人社王五", "at": T0}
    return access.submit_request(engine, **{**values, **overrides})


def test_working_days_skip_weekends_and_holidays() -> None:
    """10 working days from a Friday end on the Friday two weeks later; holidays are skipped too."""
    assert add_working_days(date(2026, 12, 4), 10) == date(2026, 12, 18)
    assert add_working_days(date(2026, 12, 5), 1) == date(2026, 12, 7)  # Saturday → Monday
    assert add_working_days(date(2026, 12, 4), 10, ["2026-12-14"]) == date(2026, 12, 21)


def test_api_keys_store_only_a_hash_and_revoke(engine: sa.Engine) -> None:
    """The full key is shown once; the database holds its SHA-256; revoked or disabled keys stop working."""
    key_id, key = access.issue_key(engine, "renshe", T0, "窗口系统")
    secret = key.split(".", 1)[1]
    assert len(secret) >= 43  # 256 bits
    with engine.connect() as connection:
        stored = connection.execute(sa.select(CatalogApiKey.secret_hash).where(CatalogApiKey.key_id == key_id)).scalar_one()
    assert secret not in stored and len(stored) == 64
    assert access.authenticate(key, engine=engine) == "renshe"
    assert access.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"), engine=engine) is None
    assert access.authenticate("garbage", engine=engine) is None
    access.revoke_key(engine, key_id, T0)
    assert access.authenticate(key, engine=engine) is None
    _, other = access.issue_key(engine, "gongan", T0)
    access.disable_consumer(engine, "gongan", T0)
    assert access.authenticate(other, engine=engine) is None
    with pytest.raises(AccessError):
        access.issue_key(engine, "nobody", T0)


def test_request_approve_grant_lifecycle(engine: sa.Engine) -> None:
    """A conditional resource: refused before, request with a deadline, provider approves, allowed within the grant."""
    before = authorise("renshe", "RK.household", ["household_address"], "SHBZ", engine=engine)
    assert not before.allowed and "有条件共享" in before.reason_zh
    request_id = _request(engine)
    row = access.list_requests(engine)[0]
    assert row["status"] == "pending" and row["deadline"] == date(2026, 12, 18)
    with pytest.raises(AccessError, match="不是资源"):
        access.approve_request(engine, request_id, decided_by="民政", at=T0, provider_code="minzheng")
    with pytest.raises(AccessError, match="超出申请范围"):
        access.approve_request(engine, request_id, decided_by="公安", at=T0, fields=["residence_address"])
    grant_id = access.approve_request(engine, request_id, decided_by="公安李四", at=T0 + timedelta(days=3),
                                      provider_code="gongan", fields=["household_address"],
                                      expires_at=T0 + timedelta(days=30))
    with pytest.raises(AccessError, match="已处理"):
        access.refuse_request(engine, request_id, decided_by="公安", reason="x", at=T0)
    now = (T0 + timedelta(days=4)).timestamp()
    decision = authorise("renshe", "RK.household", ["household_address", "household_region"], "SHBZ", engine=engine, now=now)
    assert decision.allowed and decision.fields_granted == ("household_address",)
    assert decision.fields_denied == ("household_region",) and decision.grant_ids == (grant_id,)
    assert not authorise("renshe", "RK.household", ["household_address"], "XZXK", engine=engine, now=now).allowed  # other purpose
    assert not authorise("gongan", "RK.household", ["household_address"], "SHBZ", engine=engine, now=now).allowed  # other dept
    expired = (T0 + timedelta(days=31)).timestamp()
    assert not authorise("renshe", "RK.household", ["household_address"], "SHBZ", engine=engine, now=expired).allowed
    demand = {row["request_id"]: row for row in demand_list(engine, date(2026, 12, 10))}
    assert demand[request_id]["met"] and demand[request_id]["answered_in_time"]
    access.revoke_grant(engine, grant_id, revoked_by="公安李四", reason="事项办结", at=T0 + timedelta(days=5))
    assert not authorise("renshe", "RK.household", ["household_address"], "SHBZ", engine=engine, now=now).allowed
    assert not demand_list(engine, date(2026, 12, 10))[0]["met"]


def test_refusal_needs_a_reason_and_overdue_requests_are_listed(engine: sa.Engine) -> None:
    """A refusal without a reason is rejected; a pending request past its deadline is overdue in 需求清单."""
    first, second = _request(engine), _request(engine, consumer_code="minzheng")
    with pytest.raises(AccessError, match="理由"):
        access.refuse_request(engine, first, decided_by="公安", reason=" ", at=T0)
    access.refuse_request(engine, first, decided_by="公安", reason="用途与户籍信息无关", at=T0 + timedelta(days=1))
    assert [r["id"] for r in access.overdue_requests(engine, date(2026, 12, 19))] == [second]
    assert access.overdue_requests(engine, date(2026, 12, 18)) == []
    rows = {r["request_id"]: r for r in demand_list(engine, date(2026, 12, 21))}
    assert rows[first]["status"] == "refused" and not rows[first]["met"] and rows[first]["reason"] == "用途与户籍信息无关"
    assert rows[second]["overdue"] and rows[second]["consumer_name"] == "省民政厅"


def test_configurable_deadline(engine: sa.Engine) -> None:
    """The answer period is configurable (here 5 working days)."""
    _request(engine, working_days=5)
    assert access.list_requests(engine)[0]["deadline"] == date(2026, 12, 11)


def test_never_shared_is_never_granted(engine: sa.Engine) -> None:
    """不予共享: no request, no grant, no access — whatever the purpose."""
    with pytest.raises(AccessError, match="不予共享"):
        _request(engine, resource_code="FR.contact", fields=["phone"])
    with pytest.raises(AccessError, match="不予共享"):
        access.grant_access(engine, consumer_code="renshe", resource_code="FR.contact", fields=["phone"],
                            purpose_codes=["SHBZ"], granted_by="admin", at=T0)
    decision = authorise("renshe", "FR.contact", ["phone"], "SHBZ", engine=engine)
    assert not decision.allowed and "依据" in decision.reason_zh


def test_purpose_is_required(engine: sa.Engine) -> None:
    """A call without (or with an unknown) purpose code is refused even for an unconditional resource."""
    assert not authorise("renshe", "FR.registration", ["uscc"], None, engine=engine).allowed
    assert not authorise("renshe", "FR.registration", ["uscc"], "", engine=engine).allowed
    assert "未知用途" in authorise("renshe", "FR.registration", ["uscc"], "NOPE", engine=engine).reason_zh
    assert authorise("renshe", "FR.registration", ["uscc"], "XZXK", engine=engine).allowed
    with pytest.raises(AccessError, match="用途"):
        _request(engine, purpose_codes=[])


def test_authorisation_matrix_never_exceeds_the_grant(engine: sa.Engine) -> None:
    """For every department × resource × field: a field is granted only if open to all or named by a live grant."""
    from catalog.resources import all_resources

    grant = access.grant_access(engine, consumer_code="minzheng", resource_code="RK.basic", fields=["former_name", "name"],
                                purpose_codes=["GGFW"], granted_by="admin", at=T0)
    verify = access.grant_access(engine, consumer_code="renshe", resource_code="RK.contact", fields=["phone"],
                                 purpose_codes=["HCYZ"], granted_by="admin", at=T0, verification_only=True)
    grants = {("minzheng", "RK.basic", "GGFW"): {"former_name", "name"}, ("renshe", "RK.contact", "HCYZ"): {"phone"}}
    now = T0.timestamp() + 60
    for resource in all_resources():
        items = {i["name"]: i for i in resource["items"]}
        for consumer in ("renshe", "gongan", "minzheng"):
            for purpose in ("GGFW", "HCYZ"):
                for name, item in items.items():
                    decision = authorise(consumer, resource["code"], [name], purpose, engine=engine, now=now)
                    open_to_all = resource["sharing_type"] == "无条件共享" and item["sharing"] == "无条件共享"
                    named = name in grants.get((consumer, resource["code"], purpose), set())
                    assert decision.allowed == (open_to_all or named), (consumer, resource["code"], name, purpose)
                    if decision.allowed:
                        assert decision.fields_granted == (name,)
                        assert (name in decision.masked_fields) == (not named and item["sensitivity"] >= 4)
    clear = authorise("minzheng", "RK.basic", ["name", "resident_id"], "GGFW", engine=engine, now=now)
    assert clear.masked_fields == ("resident_id",) and clear.grant_ids == (grant,)  # the grant unmasks name only
    check = authorise("renshe", "RK.contact", ["phone", "residence_address"], "HCYZ", engine=engine, now=now)
    assert check.allowed and check.verification_only and check.verify_fields == ("phone",) and check.grant_ids == (verify,)
    assert check.fields_denied == ("residence_address",)


def test_another_process_sees_changes_through_the_version_counter(engine: sa.Engine) -> None:
    """A second authoriser (another worker) picks up a revocation once it rechecks the DB version."""
    grant = access.grant_access(engine, consumer_code="renshe", resource_code="RK.marriage", fields=["marital_status"],
                                purpose_codes=["SHBZ"], granted_by="admin", at=T0)
    other = Authoriser(engine, recheck_seconds=0.0)
    assert other.authorise("renshe", "RK.marriage", ["marital_status"], "SHBZ").allowed
    version = other.snapshot().version
    access.revoke_grant(engine, grant, revoked_by="admin", reason="到期清理", at=T0)
    assert not other.authorise("renshe", "RK.marriage", ["marital_status"], "SHBZ").allowed
    assert other.snapshot().version > version


def test_authorise_is_microseconds(engine: sa.Engine) -> None:
    """The per-call path is in-memory: well under 50 µs per call once warm (part B needs ≥ 3,000 calls/s)."""
    import time

    key_id, key = access.issue_key(engine, "renshe", T0)
    authorise("renshe", "RK.basic", ["name", "gender"], "SHBZ", engine=engine)
    start = time.perf_counter()
    for _ in range(10_000):
        authorise("renshe", "RK.basic", ["name", "gender"], "SHBZ", engine=engine)
        access.authenticate(key, engine=engine)
    per_call = (time.perf_counter() - start) / 10_000
    assert per_call < 50e-6, per_call


def test_responsibility_list_measures_freshness(engine: sa.Engine) -> None:
    """责任清单: a source whose newest data is older than its promise is not fresh; one never collected is unknown."""
    with engine.begin() as connection:
        connection.execute(sa.insert(SourceRun), [
            {"source_id": "gongan_hjrk", "run_id": "r1", "status": "succeeded", "started_at": T0 - timedelta(hours=3),
             "finished_at": T0 - timedelta(hours=2), "rows_extracted": 10, "watermark_to": None},
            {"source_id": "court_sxbzxr", "run_id": "r1", "status": "succeeded", "started_at": T0 - timedelta(days=3),
             "finished_at": T0 - timedelta(days=3), "rows_extracted": 5, "watermark_to": None},
        ])
    rows = {(r["resource_code"], r["source_id"]): r for r in responsibility_list(engine, T0)}
    assert rows[("RK.basic", "gongan_hjrk")]["fresh"] is True and rows[("RK.basic", "gongan_hjrk")]["provider_name"] == "省公安厅"
    assert rows[("XY.dishonest_debtor", "court_sxbzxr")]["fresh"] is False
    assert rows[("XY.dishonest_debtor", "court_sxbzxr")]["note"] == "超过承诺更新周期"
    assert rows[("FR.registration", "scjg_qydj")]["fresh"] is None
