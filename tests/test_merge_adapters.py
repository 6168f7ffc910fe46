"""Library specs turning staged rows into claims; snapshot deletes reaching the merge as withdrawn claims."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from connectors.registry import get_source
from hub.crypto import get_cipher
from hub.db import engine_for, upgrade
from libraries.history import history
from libraries.merge import merge_claims, withdrawals
from libraries.registry import available, get_library
from schemas.identifiers import resident_id_check_char
from schemas.mapping import standardise


def rid(sequence: int) -> str:
    body = f"42010219900102{sequence:03d}"
    return body + resident_id_check_char(body)


def registrations() -> pa.Table:
    return pa.table({
        "registration_no": ["J1"], "husband_name": ["张伟"], "husband_resident_id": [rid(11)], "wife_name": ["王芳"],
        "wife_resident_id": [rid(22)], "marital_status": ["20"], "registration_date": [dt.date(2026, 3, 8)],
        "_source_id": ["minzheng_hydj"], "_run_id": ["r1"], "_source_key": ["J1"]})


def test_registry_has_population_and_legal_entity() -> None:
    assert {"population", "legal_entity"} <= set(available())
    assert get_library("population").key_column == "person_id"


def test_registration_gives_two_claims_valid_from_the_registration_day() -> None:
    claims = get_library("population").claims(registrations(), "minzheng_hydj")
    cipher = get_cipher()
    assert claims.keys == [cipher.index_hash(rid(11)), cipher.index_hash(rid(22))]
    assert claims.fields[1] == {"id_number": rid(22), "name": "王芳", "marital_status": "20"}
    assert claims.valid_from[0] == dt.datetime(2026, 3, 7, 16, tzinfo=dt.timezone.utc)  # local midnight, Beijing time
    assert claims.source_keys == ["J1", "J1"]


def test_partial_source_claims_only_what_it_carries() -> None:
    rows = pa.table({"insured_no": ["S1"], "name": ["張偉"], "resident_id": [rid(11)], "updated_at": [dt.datetime(2026, 1, 2, 8)],
                     "_source_id": ["renshe_sbcb"], "_run_id": ["r1"], "_source_key": ["S1"]})
    claims = get_library("population").claims(rows, "renshe_sbcb")
    assert {k: v for k, v in claims.fields[0].items() if v is not None} == {"id_number": rid(11), "name": "張偉"}
    assert claims.valid_from[0] == dt.datetime(2026, 1, 2, 0, tzinfo=dt.timezone.utc)


def test_standardise_carries_the_snapshot_change_column() -> None:
    spec = get_source("minzheng_shzz")
    landed = pa.table({"序号": ["1", "2"], "统一社会信用代码": ["X", None], "_change": ["update", "delete"]})
    assert standardise(landed, spec, "r1").column("_change").to_pylist() == ["update", "delete"]


@pytest.mark.parametrize("hub_db_url", ["sqlite"], indirect=True)
def test_a_deleted_source_record_withdraws_both_claims_of_an_event(hub_settings, hub_db_url) -> None:
    upgrade(hub_db_url)
    engine = engine_for(hub_db_url)
    at = dt.datetime(2026, 3, 9, tzinfo=dt.timezone.utc)
    claims = get_library("population").claims(registrations(), "minzheng_hydj")
    merge_claims(engine, "population", claims, source_id="minzheng_hydj", run_id="r1", extracted_at=at, ruleset_version=None)
    gone = withdrawals(engine, "population", "minzheng_hydj", ["J1"])
    assert sorted(gone.keys) == sorted(claims.keys) and all(gone.deleted)
    counts = merge_claims(engine, "population", gone, source_id="minzheng_hydj", run_id="r2",
                          extracted_at=at + dt.timedelta(days=1), ruleset_version=None)
    assert counts["tombstones"] == 2
    assert history(engine, "population", claims.keys[0])[-1]["tombstone"] is True


def test_quality_stage_lets_a_snapshot_delete_row_load_without_rules() -> None:
    from quality.catalogue import load_catalogue
    from quality.engine import LOAD, QUARANTINE, evaluate
    from quality.frame import RuleContext

    spec = get_source("minzheng_shzz")
    landed = pa.table({"序号": ["1", "2"], "统一社会信用代码": ["BAD", None], "社会组织名称": ["x", None], "_change": ["update", "delete"]})
    staged = standardise(landed, spec, "r1")
    outcome = evaluate(staged, RuleContext("minzheng_shzz", "r1", dt.date(2026, 1, 1), load_catalogue("legal_entity"), None))
    assert outcome.verdict.tolist() == [QUARANTINE, LOAD]
