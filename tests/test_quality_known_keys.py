"""Duplicates across runs: KnownKeys finds the record that first sent a natural key, on SQLite and PostgreSQL,
whether it looks the batch's keys up by the index (a small run against a large source) or scans (a full reload);
rows_of_keys does the same for a source's earlier defects, conflicts and held rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from hub.crypto import get_cipher
from hub.db import engine_for, upgrade
from hub.models import QualityConflict, QualityNaturalKey
from quality import store
from quality.store import KnownKeys


def _record(engine: sa.Engine, keys: list[str], source_keys: list[str], run_id: str) -> int:
    known = KnownKeys(engine, "gongan_hjrk", get_cipher().index_hash_many)
    batch = pa.array(keys, pa.string())
    known.hashes(batch, np.ones(len(keys), dtype=bool))
    with engine.begin() as connection:
        return known.record(connection, np.array(source_keys, dtype=object), np.ones(len(keys), dtype=bool), run_id)


def _earlier(engine: sa.Engine, keys: list[str | None]) -> list[str | None]:
    known = KnownKeys(engine, "gongan_hjrk", get_cipher().index_hash_many)
    complete = np.array([k is not None for k in keys])
    return known.first_keys(pa.array(keys, pa.string()), complete).tolist()


def test_small_run_looks_up_its_keys_and_a_reload_scans(hub_settings, hub_db_url, monkeypatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", hub_db_url)
    monkeypatch.setattr(store, "RECORD_CHUNK", 7)  # the 40 first keys go in 6 chunks
    upgrade(hub_db_url)
    engine = engine_for(hub_db_url)
    first = [f"k{i}" for i in range(40)]
    assert _record(engine, first, [f"s{i}" for i in range(40)], "run-1") == 40
    # a small batch (40 stored > 4 × 2 keys): looked up by the index
    assert _earlier(engine, ["k7", "new", None]) == ["s7", None, None]
    # a reload-sized batch (40 stored ≤ 4 × 20 keys): one scan, the same answers
    batch = [f"k{i}" for i in range(0, 40, 2)]
    assert _earlier(engine, batch) == [f"s{i}" for i in range(0, 40, 2)]
    # keys sent before are not recorded again; new ones are, once
    assert _record(engine, ["k3", "k99", "k99"], ["t3", "t99", "t99b"], "run-2") == 1
    with engine.connect() as connection:
        table = QualityNaturalKey.__table__
        stored = {r.source_key: r.first_run_id for r in connection.execute(sa.select(table.c.source_key, table.c.first_run_id))}
    assert len(stored) == 41 and stored["s3"] == "run-1" and stored["t99"] == "run-2"
    # another source's keys are not this source's
    other = KnownKeys(engine, "minzheng_hydj", get_cipher().index_hash_many)
    assert other.first_keys(pa.array(["k7"]), np.array([True])).tolist() == [None]


def test_rows_of_keys_reads_the_same_rows_by_lookup_and_by_scan(hub_settings, hub_db_url, monkeypatch) -> None:
    upgrade(hub_db_url)
    engine = engine_for(hub_db_url)
    table = QualityConflict.__table__
    rows = [{"rule_id": f"R{r}", "field": "name", "subject_key": f"p{i}", "source_id": source, "source_key": f"k{i}", "value": "v",
             "reference_source_id": "x", "reference_key": "y", "reference_value": "w", "status": "open",
             "first_run_id": "run-1", "last_run_id": "run-1"}
            for source in ("gongan_hjrk", "minzheng_hydj") for i in range(30) for r in range(2)]
    with engine.begin() as connection:
        connection.execute(sa.insert(table), rows)
    asked = {"k1", "k7", "k29", "absent", None, 7}  # only text can be a source key

    def read() -> list[tuple[str, str, str]]:
        with engine.connect() as connection:
            found = store.rows_of_keys(connection, table, "gongan_hjrk", asked, [table.c.source_id, table.c.source_key, table.c.rule_id])
        return sorted(tuple(r) for r in found)

    expected = sorted(("gongan_hjrk", f"k{i}", f"R{r}") for i in (1, 7, 29) for r in range(2))
    assert read() == expected  # 60 stored > 4 × 4 keys: looked up
    monkeypatch.setattr(store, "SCAN_FROM", 10**9)
    assert read() == expected  # one scan, the same rows
    with engine.connect() as connection:
        assert store.rows_of_keys(connection, table, "gongan_hjrk", {None}) == []
