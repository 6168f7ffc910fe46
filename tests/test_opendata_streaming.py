"""The fast paths of the release stage give what the row-by-row definitions give; unchanged inputs skip the build.

Each vectorised path (CSV and JSON written in pieces from Arrow columns, the Arrow join diff, the gate's scan of
distinct values, k-anonymity on counts per combination) is compared with the row-by-row code that defines it, on
tables with the awkward values (formula prefixes, quotes, line breaks, nulls, floats, dates) and on real releases.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

import opendata.builders as builders
from hub.models import LegalEntity
from opendata import diff, formats, store
from opendata.datasets import get_dataset
from opendata.privacy import GateReport, NameIndex, Step, _scan_columns, columns_of, k_anonymise, scan_file
from opendata.release import release
from test_opendata_release import AT, COMPANY, PERSONS, keyring, library, uscc  # noqa: F401 - fixtures

AWKWARD = pa.table({
    "code": pa.array(["a", "b", "c", "d", "e", "f", "g"]),
    "text": pa.array(["=SUM(A1)", "+86 138", None, 'say "hi", ok', "line\nbreak", "", "-1"]),
    "amount": pa.array([1.5, None, 1e20, 1e-05, 100.0, float("nan"), 0.1]),
    "count": pa.array([1, None, 3, -4, 5, 6, 7], type=pa.int64()),
    "day": pa.array([date(2020, 1, 2), None, date(999, 1, 1), date(2026, 12, 31), None, date(2000, 2, 29), None]),
    "flag": pa.array([True, False, None, True, False, None, True]),
})


def reference_csv(table: pa.Table) -> bytes:
    """The row-by-row CSV the release wrote before (formats._csv_cell per value)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.column_names)
    strings = [pa.types.is_string(f.type) for f in table.schema]
    for row in zip(*(table.column(n).to_pylist() for n in table.column_names)):
        writer.writerow([formats._csv_cell(v, s) for v, s in zip(row, strings)])
    return (formats.BOM + out.getvalue()).encode("utf-8")


def reference_json(table: pa.Table) -> bytes:
    """The row-by-row JSON the release wrote before (formats._json_value per value)."""
    rows = [{n: formats._json_value(v) for n, v in r.items()} for r in table.to_pylist()]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 50_000])
def test_csv_and_json_in_pieces_match_row_by_row(batch_rows: int) -> None:
    assert b"".join(formats.csv_chunks(AWKWARD, batch_rows)) == reference_csv(AWKWARD)
    assert b"".join(formats.json_chunks(AWKWARD, batch_rows)) == reference_json(AWKWARD)
    empty = AWKWARD.schema.empty_table()
    assert formats.json_bytes(empty) == b"[]" and formats.csv_bytes(empty) == reference_csv(empty)


def _pairs(tables: dict[str, pa.Table]) -> dict[str, list[dict]]:
    return {kind: t.to_pylist() for kind, t in tables.items()}


def test_join_diff_matches_row_by_row_diff() -> None:
    old = AWKWARD.drop_columns(["amount"])  # NaN is not a value the releases hold
    new = pa.concat_tables([old.slice(1, 2), old.slice(4)])  # a and d removed
    new = new.set_column(1, "text", pa.array(["+86 138", "changed", "line\nbreak", "", None]))  # c and g changed
    new = pa.concat_tables([new, pa.table({"code": ["z"], "text": ["new"], "count": pa.array([1]),
                                           "day": pa.array([None], pa.date32()), "flag": [False]})])
    assert diff._joinable(old, new, ["code"])
    joined, rows = diff._diff_join(old, new, ["code"]), diff._diff_rows(old, new, ["code"])
    assert _pairs(joined) == _pairs(rows)
    assert [r["code"] for r in joined["added"].to_pylist()] == ["z"]
    assert [r["code"] for r in joined["changed"].to_pylist()] == ["c", "g"]
    assert [r["code"] for r in joined["removed"].to_pylist()] == ["a", "d"]


def test_cells_view_counts_duplicates_in_first_appearance_order() -> None:
    table = pa.table({"g": ["b", "a", "b", "c", "a", "b"], "v": [1, 2, 3, 4, 5, 6]})
    cells = diff.cells_view(table, ["g"])
    assert cells.to_pylist() == [{"g": "b", "v": 1, "records": 3}, {"g": "a", "v": 2, "records": 2},
                                 {"g": "c", "v": 4, "records": 1}]
    new = pa.table({"g": ["a", "d", "a", "c"], "v": [2, 7, 9, 5]})
    out = diff.diff_tables(table, new, ["g"], "cells")
    assert [r["g"] for r in out["added"].to_pylist()] == ["d"]
    assert [(r["g"], r["v"], r["records"]) for r in out["changed"].to_pylist()] == [("c", 5, 1)]  # a: same first row and count
    assert [r["g"] for r in out["removed"].to_pylist()] == ["b"]
    cells_old, cells_new = diff.comparable(table, ["g"], "cells"), diff.comparable(new, ["g"], "cells")
    assert _pairs(diff._diff_join(cells_old, cells_new, ["g"])) == _pairs(diff._diff_rows(cells_old, cells_new, ["g"]))


def test_weighted_k_anonymity_equals_one_row_per_person() -> None:
    frame = pd.DataFrame({"age": ["20-24"] * 6 + ["25-29"] * 3 + ["60-64"] + ["30-34"] * 5, "g": ["男"] * 15})
    ladder = [Step("age", "10岁一组", lambda s: s.map(lambda b: {"20-24": "20-29", "25-29": "20-29"}.get(b, b)))]
    rows, report = k_anonymise(frame, ["age", "g"], 5, ladder, max_suppressed=0.01)
    counted = frame.value_counts(["age", "g"]).rename("n").reset_index()
    cells, weighted = k_anonymise(counted, ["age", "g"], 5, ladder, max_suppressed=0.01, weight="n")
    assert weighted == report
    assert sorted(rows.itertuples(index=False)) == sorted(
        tuple(r[:2]) for r in cells.itertuples(index=False) for _ in range(r[2]))


def test_gate_arrow_scan_finds_what_the_cell_scan_finds(tmp_path) -> None:
    person = PERSONS[3]
    table = pa.table({
        "uscc": [uscc(1), uscc(2), uscc(3), uscc(4)],
        "legal_representative": [person["name"], person["name"], "某某", None],
        "entity_kind": ["企业", "个体工商户", "个体工商户", "企业"],
        "business_scope": [f"身份证 {person['id_number']}", "电话13912345678", "ＩＤ" + person["id_number"], "+86 139-1234-5678"],
        "registered_capital": [13912345678.0, None, 1.5, 2.0],
    })
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "data.parquet")
    formats.write_chunks(tmp_path / "data.csv", formats.csv_chunks(table))
    formats.write_chunks(tmp_path / "data.json", formats.json_chunks(table))
    spec = get_dataset("legal-entity-registry")
    names = NameIndex([person["name"], "某某"])
    for name in ("data.parquet", "data.csv", "data.json"):
        fast, slow = GateReport(), GateReport()
        scan_file(tmp_path / name, name, spec, names, fast, True)
        _scan_columns(columns_of(tmp_path / name), name, spec, names, slow, True)
        assert fast.violations == slow.violations and (fast.files, fast.cells) == (slow.files, slow.cells)
        assert {v.rule for v in fast.violations} == {"resident_id", "phone", "person_name"}
        assert [v.row for v in fast.violations if v.rule == "person_name"] == [1, 2]


def test_batched_build_equals_single_batch(library, monkeypatch) -> None:
    engine, root = library
    ids = ["legal-entity-registry", "admin-penalty", "population-microdata"]
    release(ids, engine=engine, data_root=root / "one", at=AT)
    monkeypatch.setattr(builders, "BATCH_ROWS", 2)
    release(ids, engine=engine, data_root=root / "many", at=AT)
    for dataset_id in ids:
        for name in ("data.json", "data.csv"):
            one = store.file_path(root / "one", dataset_id, "latest", name).read_bytes()
            assert store.file_path(root / "many", dataset_id, "latest", name).read_bytes() == one


def test_unchanged_inputs_skip_the_build_and_a_change_publishes(library, monkeypatch) -> None:
    engine, root = library
    first = release(["legal-entity-registry", "population-statistics"], engine=engine, data_root=root, at=AT)
    versions = {r["dataset"]: r["version"] for r in first["results"]}

    def must_not_build(ctx):
        raise AssertionError("an unchanged dataset was rebuilt")

    with monkeypatch.context() as patched:
        patched.setitem(builders.BUILDERS, "legal_entity_registry", must_not_build)
        patched.setitem(builders.BUILDERS, "population_statistics", must_not_build)
        again = release(["legal-entity-registry", "population-statistics"], engine=engine, data_root=root,
                        at=AT + timedelta(hours=2))
    assert [r["status"] for r in again["results"]] == ["unchanged", "unchanged"]
    message = again["results"][0]["message"]
    assert f"latest stays {versions['legal-entity-registry']}" in message and "最新版本仍为" in message
    manifest = store.manifest(root, "legal-entity-registry")
    assert len(manifest["provenance"]["inputs_sha256"]) == 64

    # Ages depend on the date: five years on is a new input for the population datasets, not for the registry.
    five_years = AT + timedelta(days=5 * 365 + 2)
    later = release(["population-statistics"], engine=engine, data_root=root, at=five_years)
    assert later["results"][0]["status"] == "published"
    with monkeypatch.context() as patched:
        patched.setitem(builders.BUILDERS, "legal_entity_registry", must_not_build)
        registry = release(["legal-entity-registry"], engine=engine, data_root=root, at=five_years)
    assert registry["results"][0]["status"] == "unchanged"

    table = LegalEntity.__table__
    with engine.begin() as connection:  # a change that keeps updated_at: the rows themselves are fingerprinted
        connection.execute(sa.update(table).where(table.c.uscc == COMPANY).values(status="注销"))
    changed = release(["legal-entity-registry"], engine=engine, data_root=root, at=AT + timedelta(hours=3))["results"][0]
    assert changed["status"] == "published" and changed["previous_version"] == versions["legal-entity-registry"]
    assert store.manifest(root, "legal-entity-registry", changed["version"])["rows"]["diff_changed"] == 1
