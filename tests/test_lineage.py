"""Field lineage stored compact (hub/lineage.py): the per-field dict comes back from either stored form, on SQLite
and PostgreSQL, through the ORM, the merge's bulk writers and the release's provenance query."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from hub.db import engine_for, upgrade
from hub.lineage import compact, compact_text, expand
from hub.models import GoldenVersion, Person
from libraries.bulk import JsonText, insert_rows
from opendata.builders import read_lineage

AT = dt.datetime(2026, 12, 1, 1, tzinfo=dt.timezone.utc)
FIELDS = ["id_number", "name", "gender", "birth_date", "ethnicity", "region_code", "address", "phone", "marital_status"]


def claim_entry(source: str, key: str, ruleset: str = "rs-1") -> dict:
    return {"source_id": source, "source_key": key, "run_id": f"{source}-r1", "extracted_at": AT.isoformat(),
            "ruleset_version": ruleset, "valid_from": "2026-10-22T09:44:21+00:00"}


entries = st.one_of(
    st.builds(claim_entry, st.sampled_from(["gongan_hjrk", "minzheng_hydj", "renshe_sbcb"]), st.text(max_size=8)),
    st.builds(lambda n: {"override": n, "steward": "张三", "at": AT.isoformat()}, st.integers(1, 99)),
)


@given(st.lists(entries, min_size=1, max_size=4), st.lists(st.integers(0, 3), min_size=0, max_size=len(FIELDS)))
def test_compact_round_trips_and_writes_each_entry_once(pool: list[dict], picks: list[int]) -> None:
    # fields share entry objects as survivorship shares them: one per winning claim or override
    lineage = {FIELDS[i]: pool[p % len(pool)] for i, p in enumerate(picks)}
    stored = compact(lineage)
    assert expand(stored) == lineage
    assert list(expand(stored)) == [name for group in stored for name in group["fields"]]
    assert len(stored) == len({id(e) for e in lineage.values()})
    assert compact_text(lineage) == json.dumps(stored, ensure_ascii=False)
    assert expand(json.loads(compact_text(lineage))) == lineage


def test_a_single_claim_lineage_is_a_fraction_of_the_per_field_form() -> None:
    entry = claim_entry("gongan_hjrk", "12617")
    lineage = dict.fromkeys(FIELDS, entry)
    per_field = json.dumps(lineage, ensure_ascii=False)
    assert len(compact_text(lineage)) * 4 < len(per_field)  # measured: 2,019 → 333 bytes for a person


def test_per_field_rows_read_as_they_are() -> None:
    lineage = {"name": claim_entry("gongan_hjrk", "1")}
    assert expand(lineage) is lineage and expand(None) is None


def person(key: str, run: str) -> dict:
    return {"person_id": key, "id_number_enc": b"sealed", "id_number_masked": "360102********0011", "name": "张三", "source_id": "gongan_hjrk",
            "run_id": run, "updated_at": AT}


def test_both_stored_forms_read_per_field_on_each_database(hub_db_url: str) -> None:
    upgrade(hub_db_url)
    engine = engine_for(hub_db_url)
    table = Person.__table__
    shared = claim_entry("gongan_hjrk", "k1", "rs-new")
    merged = {**dict.fromkeys(FIELDS[:8], shared), "marital_status": claim_entry("minzheng_hydj", "m1", "rs-new")}
    through_orm = {"name": {"override": 3, "steward": "李四", "at": AT.isoformat()}, "gender": claim_entry("renshe_sbcb", "s1", "rs-orm")}
    legacy = {"name": claim_entry("gongan_hjrk", "k3", "rs-old")}
    with engine.begin() as connection:
        insert_rows(connection, table, [{**person("p-merge", "r1"), "lineage": JsonText(compact_text(merged))}])
        connection.execute(sa.insert(table), [{**person("p-orm", "r1"), "lineage": through_orm}])
        # a row written before the compact form: the per-field JSON text, as the engines wrote it then
        connection.execute(sa.insert(table), [{**person("p-legacy", "r0")}])
        value = "CAST(:text AS JSON)" if engine.dialect.name == "postgresql" else ":text"
        connection.execute(sa.text(f"UPDATE person SET lineage = {value} WHERE person_id = 'p-legacy'"),
                           {"text": json.dumps(legacy, ensure_ascii=False)})
        insert_rows(connection, GoldenVersion.__table__, [{
            "library": "population", "entity_key": "p-merge", "version": 1, "valid_from": AT, "recorded_at": AT,
            "tombstone": False, "record_hash": "0" * 64, "lineage": JsonText(compact_text(merged)), "run_id": "r1"}])
    with engine.connect() as connection:
        read = dict(connection.execute(sa.select(table.c.person_id, table.c.lineage)).all())
        raw = dict(connection.execute(sa.text("SELECT person_id, CAST(lineage AS TEXT) FROM person")).all())
        version = connection.execute(sa.select(GoldenVersion.__table__.c.lineage)).scalar_one()
    assert read == {"p-merge": merged, "p-orm": through_orm, "p-legacy": legacy}
    assert version == merged
    assert isinstance(json.loads(raw["p-merge"]), list) and isinstance(json.loads(raw["p-orm"]), list)
    assert len(json.loads(raw["p-merge"])) == 2  # the shared entry once, the marital status's own
    assert isinstance(json.loads(raw["p-legacy"]), dict)
    # the release's provenance reads rule-set versions out of both forms in SQL
    summary = read_lineage(engine, sa.select(table), "population")
    assert summary["ruleset_versions"] == ["rs-new", "rs-old", "rs-orm"]
    assert summary["rows_read"] == 3
    engine.dispose()
