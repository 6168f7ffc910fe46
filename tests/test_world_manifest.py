"""The ground-truth manifest: every entry really is a defect, and rows outside it really are clean."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.code_tables import load_table
from schemas.identifiers import check_licence_ids, check_resident_ids, check_usccs
from schemas.normalize import date as _date
from world import generate
from world.audit import audit

KINDS = {
    "bad_check_char", "id_birth_mismatch", "id_gender_mismatch", "unknown_region", "future_date", "missing_required",
    "duplicate", "cross_source_conflict", "orphan_holder", "orphan_subject", "expired_still_valid", "invalid_code",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world with twice the default defect rates (more entries to check)."""
    out = tmp_path_factory.mktemp("world") / "w"
    generate(out, scale=0.003, seed=21, defect_rate=2.0, workers=1)
    return out


@pytest.fixture(scope="module")
def manifest(world: Path) -> pd.DataFrame:
    """The manifest as a DataFrame."""
    return pq.read_table(world / "manifest.parquet").to_pandas()


@pytest.fixture(scope="module")
def hjrk(world: Path) -> pd.DataFrame:
    """公安 hjrk as stored."""
    with sqlite3.connect(world / "gongan" / "gongan.sqlite") as connection:
        return pd.read_sql_query("SELECT * FROM hjrk ORDER BY rkid", connection)


def parse_dates(values: list[str]) -> tuple[pa.Array, pa.Array]:
    """The schemas date normaliser over a list of texts."""
    return _date(pa.array(values, pa.string()))


def _entries(manifest: pd.DataFrame, source: str, kind: str) -> pd.DataFrame:
    """Manifest rows of one source and kind."""
    return manifest[(manifest.source == source) & (manifest.defect_kind == kind)]


def _halfwidth(values: pd.Series) -> np.ndarray:
    """Identifier cells as half-width, trimmed, upper-case text."""
    import unicodedata

    return np.array([unicodedata.normalize("NFKC", v).strip().upper() if isinstance(v, str) else "" for v in values], dtype=object)


def test_manifest_layout(world: Path, manifest: pd.DataFrame) -> None:
    """Columns, kinds, JSONL twin, one defect per record, keys that exist."""
    assert list(manifest.columns) == ["source", "record_key", "field", "defect_kind", "detail"]
    assert set(manifest.defect_kind) <= KINDS
    assert len(manifest) > 300
    assert not manifest.duplicated(["source", "record_key"]).any()
    lines = (world / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == manifest.to_dict("records")
    description = json.loads((world / "world.json").read_text(encoding="utf-8"))
    assert description["manifest"]["entries"] == len(manifest)
    assert set(manifest.source) <= {s["id"] for s in description["sources"]}


def test_every_kind_is_injected(manifest: pd.DataFrame) -> None:
    """At this scale and rate every defect kind occurs somewhere."""
    assert set(manifest.defect_kind) == KINDS


def test_audit_agrees_with_manifest(world: Path) -> None:
    """An independent re-detection over every row of every source finds exactly the manifest."""
    report = audit(world)
    assert not report.notes
    assert not report.missing, sorted(report.missing)[:10]
    assert not report.unexpected, sorted(report.unexpected)[:10]


def test_gongan_entries_are_defects(world: Path, manifest: pd.DataFrame, hjrk: pd.DataFrame) -> None:
    """Checked straight with the schemas' functions, not through the audit."""
    ref = dt.date(2026, 11, 1)
    by_key = hjrk.set_index(hjrk.rkid.astype(str))
    bad = _entries(manifest, "gongan_hjrk", "bad_check_char")
    result = check_resident_ids(_halfwidth(by_key.loc[bad.record_key, "gmsfhm"]), today=ref)
    assert not result.valid.any()
    assert all("校验位" in r for r in result.reason)
    regions = _entries(manifest, "gongan_hjrk", "unknown_region")
    assert not load_table("regions").contains_vector(by_key.loc[regions.record_key, "hjdz_xzqh"].to_numpy(dtype=object)).any()
    future = _entries(manifest, "gongan_hjrk", "future_date")
    parsed, _ = parse_dates(by_key.loc[future.record_key, "swrq"].astype(str).to_numpy().tolist())
    assert all(d > ref for d in parsed.to_pylist())
    missing = _entries(manifest, "gongan_hjrk", "missing_required")
    assert all(pd.isna(by_key.loc[k, f]) or not str(by_key.loc[k, f]).strip() for k, f in zip(missing.record_key, missing.field))
    mismatch = _entries(manifest, "gongan_hjrk", "id_gender_mismatch")
    checked = check_resident_ids(_halfwidth(by_key.loc[mismatch.record_key, "gmsfhm"]), today=ref)
    assert checked.valid.all()
    assert (checked.gender != by_key.loc[mismatch.record_key, "xb"].replace({"男": "1", "女": "2"}).to_numpy()).all()


def test_clean_gongan_rows_are_clean(world: Path, manifest: pd.DataFrame, hjrk: pd.DataFrame) -> None:
    """Rows outside the manifest: valid IDs (region valid in the birth year), birth date and gender agree."""
    ref = dt.date(2026, 11, 1)
    flagged = set(manifest[manifest.source == "gongan_hjrk"].record_key)
    clean = hjrk[~hjrk.rkid.astype(str).isin(flagged)]
    result = check_resident_ids(_halfwidth(clean.gmsfhm), today=ref, region_rule="birth_year")
    assert result.valid.all(), clean.gmsfhm[~result.valid].head().tolist()
    assert (result.gender == clean.xb.replace({"男": "1", "女": "2"}).to_numpy()).all()
    parsed, errors = parse_dates(clean.csrq.astype(str).tolist())
    assert errors.null_count == len(clean)
    assert (parsed.to_numpy(zero_copy_only=False).astype("datetime64[D]") == result.birth_date).all()
    assert load_table("regions").contains_vector(clean.hjdz_xzqh.to_numpy(dtype=object)).all()
    assert not pd.Series(result.normalised).duplicated().any()
    assert (pd.to_datetime(hjrk.gxsj).dt.date <= ref).all()
    legacy = clean[clean.gmsfhm.str.len() == 15]
    assert len(legacy) > 0 and legacy.csrq.notna().all()


def test_licence_and_credit_entries(world: Path, manifest: pd.DataFrame) -> None:
    """Licence identifiers with bad check characters fail; expired licences marked valid are expired."""
    rows = []
    for path in sorted((world / "licences").rglob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    for path in sorted((world / "licences").rglob("*.csv")):
        rows.extend(pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records"))
    licences = pd.DataFrame(rows).set_index("证照标识")
    bad = manifest[manifest.source.str.startswith("licence_") & (manifest.defect_kind == "bad_check_char")]
    assert len(bad) and not check_licence_ids(bad.record_key.to_numpy(dtype=object)).valid.any()
    flagged = set(manifest[manifest.source.str.startswith("licence_")].record_key)
    clean_ids = [k for k in licences.index if k not in flagged]
    assert check_licence_ids(np.array(clean_ids, dtype=object)).valid.all()
    expired = manifest[manifest.defect_kind == "expired_still_valid"]
    for key in expired.record_key:
        row = licences.loc[key]
        assert row["证照状态"] == "有效"
        parsed, _ = parse_dates([row["有效期截止日期"]])
        assert parsed[0].as_py() < dt.date(2026, 11, 1)
    authority = manifest[(manifest.source == "credit_xzcf") & (manifest.defect_kind == "bad_check_char")]
    xzcf = pd.concat([pd.read_csv(p, dtype=str) for p in sorted((world / "credit").glob("*/xzcf.csv"))]).set_index("记录编号")
    assert not check_usccs(xzcf.loc[authority.record_key, "处罚机关代码"].to_numpy(dtype=object)).valid.any()


def test_defect_rate_zero_gives_a_clean_world(tmp_path: Path) -> None:
    """--defect-rate 0: empty manifest, and the audit finds nothing anywhere."""
    description = generate(tmp_path / "clean", scale=0.002, seed=5, defect_rate=0.0, workers=1)
    assert description["manifest"]["entries"] == 0
    assert pq.read_table(tmp_path / "clean" / "manifest.parquet").num_rows == 0
    assert (tmp_path / "clean" / "manifest.jsonl").read_text(encoding="utf-8") == ""
    report = audit(tmp_path / "clean")
    assert report.ok and not report.found and not report.notes
