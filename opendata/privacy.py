"""De-identification and the privacy gate of open-data releases (GB/T 37964-2019, GB/T 42460-2023).

开放数据去标识化与隐私闸门。

De-identification (used by the builders):
- `age_bands`, `regions_at`: generalise birth dates to age bands and region codes to city or province level;
- `k_anonymise`: climb a generalisation ladder until few enough rows are in classes smaller than k, then suppress
  those rows; `suppress_small_cells`: blank aggregate cells below k; `Pseudonymiser`: keyed HMAC pseudonyms.

The gate (run on the finished files of a release, before anything is published) fails the release with a Chinese
error naming dataset, file, column, row and rule when any output file holds:
- a resident ID number (18-digit with a valid ISO 7064 check character, or a 15-digit legacy number with a real birth
  date and known region; schemas.identifiers decides, so random digit runs are not flagged) — every cell of every file;
- a mobile phone number (1[3-9]x xxxx xxxx, optionally +86 and separators) — every cell of every file;
- a natural person's name from the population library: every cell of a person-level table (whole cell, or contained
  when the name has three characters or more), and the columns a dataset declares in `name_checks` (whole cell);
- a k-anonymity violation on the quasi-identifiers of a person-level table, or an unsuppressed aggregate cell below k.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import hmac
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import sqlalchemy as sa

from schemas import identifiers

PSEUDONYM_LABEL = "hub-opendata-pseudonym/1"
UNKNOWN = "未知"

# Patterns run on NFKC-normalised text (full-width digits become ASCII first).
RESIDENT_ID_PATTERN = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9])")
# A phone number stands alone or beside non-Latin text (电话13812345678); eleven digits inside a longer code of
# letters and digits (a licence number like PDYMA81MB3X14228230129) are part of that code, not a phone number.
PHONE_PATTERN = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}(?![0-9A-Za-z])")
SEPARATOR = "\x00"
DATA_SUFFIXES = (".parquet", ".csv", ".json", ".jsonld")
CSV_BLOCK_BYTES = 16 << 20  # Arrow's CSV reader block (a row must fit in one)


# ---------------------------------------------------------------------------------------------
# De-identification
# ---------------------------------------------------------------------------------------------


def age_bands(birth_dates: Iterable[date | None], as_of: date, width: int = 5, top: int = 85) -> list[str]:
    """Age on `as_of` in bands of `width` years ('20-24'), everyone from `top` up in one band ('85+'); unknown → 未知."""
    out: list[str] = []
    for born in birth_dates:
        if born is None or pd.isna(born):
            out.append(UNKNOWN)
            continue
        age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
        if age < 0:
            out.append(UNKNOWN)
        elif age >= top:
            out.append(f"{top}+")
        else:
            low = age // width * width
            out.append(f"{low}-{low + width - 1}")
    return out


def widen_age_band(band: str, width: int) -> str:
    """A 5-year band widened to `width` years ('20-24' → '20-29' for 10); '85+' and 未知 stay."""
    if "-" not in band:
        return band
    low = int(band.split("-")[0]) // width * width
    return f"{low}-{low + width - 1}"


def regions_at(codes: Iterable[str | None], level: str) -> list[str]:
    """Region codes generalised to 'city' (prefecture, xxxx00) or 'province' (xx0000); unknown → ''."""
    keep = {"county": 6, "city": 4, "province": 2}[level]
    return [(str(c)[:keep].ljust(6, "0") if c and len(str(c)) == 6 else "") for c in codes]


def region_names(codes: Iterable[Any]) -> list[str]:
    """Full names of GB/T 2260 codes (江西省南昌市, 江西省南昌市东湖区); empty or missing → 未知."""
    from schemas.code_tables import load_table

    table = load_table("regions")
    cache: dict[str, str] = {}
    out = []
    for code in codes:
        code = code if isinstance(code, str) and len(code) == 6 else ""
        if code not in cache:
            if not code:
                cache[code] = UNKNOWN
            else:
                parts = [code[:2] + "0000"]
                if not code.endswith("0000"):
                    parts.append(code[:4] + "00")
                if not code.endswith("00"):
                    parts.append(code)
                found = [table.label(p) for p in dict.fromkeys(parts)]
                cache[code] = "".join(f for f in found if f and f not in ("市辖区", "县", "省直辖县级行政区划")) or code
        out.append(cache[code])
    return out


def labels(values: Iterable[Any], table_name: str, missing: str = UNKNOWN) -> list[str]:
    """Code-table labels of codes (the code itself when the table lacks it, `missing` for None)."""
    from schemas.code_tables import load_table

    table = load_table(table_name)
    return [missing if v is None or v == "" else (table.label(str(v)) or str(v)) for v in values]


class Pseudonymiser:
    """Stable keyed pseudonyms (HMAC-SHA256 under a key derived from the hub's index key), so releases link up
    without exposing the internal person_id; nobody without the key ring can recompute them."""

    def __init__(self, key: bytes | None = None) -> None:
        """Use the given key, or derive one from the hub key ring's index key."""
        if key is None:
            from hub.crypto import get_cipher

            key = bytes.fromhex(get_cipher().index_hash(PSEUDONYM_LABEL))
        self._key = key

    def __repr__(self) -> str:
        """Never the key."""
        return "Pseudonymiser()"

    def of(self, value: str | None) -> str | None:
        """The pseudonym of one internal identifier (24 hex characters), None for None."""
        if value is None:
            return None
        return hmac.new(self._key, value.encode("utf-8"), "sha256").hexdigest()[:24]


@dataclass(frozen=True)
class Step:
    """One rung of a generalisation ladder: what it does, to which column, and how."""

    column: str
    description: str
    apply: Callable[[pd.Series], pd.Series]


def _small_rows(frame: pd.DataFrame, qis: list[str], k: int, weight: str | None = None) -> pd.Series:
    """Rows whose quasi-identifier combination occurs fewer than k times (each row counting `weight` people)."""
    if frame.empty:
        return pd.Series([], dtype=bool)
    if weight is None:
        sizes = frame.groupby(qis, dropna=False, sort=False)[qis[0]].transform("size")
    else:
        sizes = frame.groupby(qis, dropna=False, sort=False)[weight].transform("sum")
    return sizes < k


def k_anonymise(frame: pd.DataFrame, qis: list[str], k: int, ladder: list[Step],
                max_suppressed: float = 0.05, weight: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Generalise along the ladder until at most `max_suppressed` of the rows sit in classes below k, then drop those.

    With `weight`, each row of the frame stands for that many people (counts per combination: the same decisions
    as on one row per person, in memory that does not grow with the population). Returns the k-anonymous frame and
    a report of what was generalised and how many rows (people) were suppressed.
    """
    def people(mask: pd.Series | None = None) -> int:
        """Rows (or people, with a weight) in the frame or under a mask."""
        if weight is None:
            return int(len(current)) if mask is None else int(mask.sum())
        values = current[weight] if mask is None else current.loc[mask.to_numpy(), weight]
        return int(values.sum())

    current = frame.copy()
    report: dict[str, Any] = {"k": k, "quasi_identifiers": qis, "rows_in": people(), "generalised": []}
    total = report["rows_in"]
    for step in ladder:
        small = people(_small_rows(current, qis, k, weight))
        if small <= max_suppressed * total:
            break
        current[step.column] = step.apply(current[step.column])
        report["generalised"].append({"column": step.column, "rule": step.description, "rows_below_k_before": small})
    small_mask = _small_rows(current, qis, k, weight)
    report["suppressed_rows"] = people(small_mask) if len(current) else 0
    out = current[~small_mask.to_numpy()] if len(current) else current
    report["rows_out"] = int(out[weight].sum()) if weight is not None else int(len(out))
    report["classes"] = int(out.groupby(qis, dropna=False).ngroups) if len(out) else 0
    return out.reset_index(drop=True), report


def suppress_small_cells(frame: pd.DataFrame, count_column: str, k: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Blank every aggregate cell whose count is below k (the `suppressed` column says which); returns a report."""
    out = frame.copy()
    small = out[count_column] < k
    out["suppressed"] = small.to_numpy()
    out[count_column] = out[count_column].astype("Int64").mask(small)
    return out, {"k": k, "count_column": count_column, "cells": int(len(out)), "suppressed_cells": int(small.sum()),
                 "suppressed_persons": int(frame.loc[small, count_column].sum()) if len(frame) else 0}


# ---------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------

RULE_LABELS = {
    "resident_id": "含公民身份号码",
    "phone": "含手机号码",
    "person_name": "含自然人姓名",
    "k_anonymity": "不满足 k-匿名",
    "small_cell": "小单元格未抑制",
}


@dataclass(frozen=True)
class Violation:
    """One finding of the gate; `detail` is masked (never the identifier in clear)."""

    dataset: str
    file: str
    column: str
    row: int | None
    rule: str
    detail: str

    def message(self) -> str:
        """One Chinese line naming dataset, file, column, row and rule."""
        where = f"第 {self.row + 1} 行" if self.row is not None else "整表"
        return (f"开放数据集 {self.dataset} 文件 {self.file} 列 {self.column} {where}：{RULE_LABELS.get(self.rule, self.rule)}"
                f"（规则 {self.rule}）— {self.detail}")


class PrivacyGateError(Exception):
    """A release failed the privacy gate: nothing was published."""

    def __init__(self, dataset: str, violations: list[Violation]) -> None:
        self.dataset = dataset
        self.violations = violations
        shown = "\n".join(v.message() for v in violations[:20])
        more = f"\n…另有 {len(violations) - 20} 处" if len(violations) > 20 else ""
        super().__init__(f"隐私闸门未通过，开放数据集 {dataset} 未发布（{len(violations)} 处问题）：\n{shown}{more}")


class NameIndex:
    """Names of natural persons (person.name, in clear in the population library), for set lookups."""

    def __init__(self, names: Iterable[str]) -> None:
        """Index names of at least two characters, NFKC-normalised and trimmed."""
        cleaned = {unicodedata.normalize("NFKC", n).strip() for n in names if n}
        self.names = frozenset(n for n in cleaned if len(n) >= 2)
        self.long_lengths = sorted({len(n) for n in self.names if len(n) >= 3})

    @classmethod
    def from_engine(cls, engine: sa.Engine) -> "NameIndex":
        """Every distinct person name of the hub database."""
        from hub.models import Person

        with engine.connect() as connection:
            names = connection.execute(sa.select(Person.__table__.c.name).distinct()).scalars().all()
        return cls(names)

    def __len__(self) -> int:
        return len(self.names)

    def exact(self, text: str) -> str | None:
        """The name the whole cell is, or None."""
        value = unicodedata.normalize("NFKC", text).strip()
        return value if value in self.names else None

    def contained(self, text: str) -> str | None:
        """A name the cell is or contains (names of three characters or more inside longer text), or None."""
        value = unicodedata.normalize("NFKC", text).strip()
        if value in self.names:
            return value
        names = self.names
        for length in self.long_lengths:
            for start in range(0, len(value) - length + 1):
                if value[start:start + length] in names:
                    return value[start:start + length]
        return None


def _mask(text: str) -> str:
    """A finding shown in an error: first three and last two characters."""
    return text[:3] + "*" * max(len(text) - 5, 0) + text[-2:] if len(text) > 5 else "*" * len(text)


# --- reading every cell of a file, column by column ------------------------------------------------


def _cell(value: Any) -> str | None:
    """A cell as text (None for empty)."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _walk(value: Any, path: str, out: dict[str, list[str | None]]) -> None:
    """Strings and numbers of a JSON document, grouped by their key path (array indices dropped)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _walk(inner, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for inner in value:
            _walk(inner, path, out)
    elif value is not None and not isinstance(value, bool):
        out.setdefault(path or "$", []).append(str(value))


def columns_of(path: Path) -> dict[str, list[str | None]]:
    """Every cell of an output file as text, by column (JSON: by key path; records arrays by field name)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
        return {name: [_cell(v) for v in table.column(name).to_pylist()] for name in table.column_names}
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows:
            return {}
        header, body = rows[0], rows[1:]
        return {name: [(r[i] if i < len(r) and r[i] != "" else None) for r in body] for i, name in enumerate(header)}
    document = json.loads(text)
    out: dict[str, list[str | None]] = {}
    if isinstance(document, list) and all(isinstance(r, dict) for r in document):
        names = list(dict.fromkeys(n for r in document for n in r))
        return {name: [_cell(r.get(name)) for r in document] for name in names}
    _walk(document, "", out)
    return out


# --- detectors -----------------------------------------------------------------------------------


def _scan_text(cells: list[str | None], pattern: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    """(row, match) of a pattern over a column; cells are NFKC-normalised, each distinct value scanned once."""
    unique = list(dict.fromkeys(c for c in cells if c))
    if not unique:
        return
    normalised = unicodedata.normalize("NFKC", SEPARATOR.join(unique))
    starts: list[int] | None = None
    first_row: dict[str, int] | None = None
    for match in pattern.finditer(normalised):
        if starts is None:
            starts = [0] + [m.end() for m in re.finditer(SEPARATOR, normalised)]
            first_row = {}
            for row, c in enumerate(cells):
                if c and c not in first_row:
                    first_row[c] = row
        value = unique[bisect.bisect_right(starts, match.start()) - 1]
        yield first_row[value], match.group(0)


def find_resident_ids(cells: list[str | None]) -> list[tuple[int, str]]:
    """(row, number) of every valid resident ID number in a column (valid USCCs that look alike are not IDs)."""
    return _only_resident_ids(list(_scan_text(cells, RESIDENT_ID_PATTERN)))


def _only_resident_ids(hits: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The hits that are valid resident ID numbers and not valid USCCs that look alike."""
    if not hits:
        return []
    candidates = np.array([h[1] for h in hits], dtype=object)
    person = identifiers.check_resident_ids(candidates).valid
    company = identifiers.check_usccs(candidates).valid
    return [hit for hit, p, c in zip(hits, person.tolist(), company.tolist()) if p and not c]


def find_phones(cells: list[str | None]) -> list[tuple[int, str]]:
    """(row, number) of every mobile phone number in a column."""
    return list(_scan_text(cells, PHONE_PATTERN))


@dataclass
class GateReport:
    """What the gate checked and found, for the manifest's provenance."""

    files: int = 0
    cells: int = 0
    checks: dict[str, Any] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The provenance record: passed, what ran, over how many files and cells."""
        return {"passed": not self.violations, "files_scanned": self.files, "cells_scanned": self.cells,
                "checks": self.checks, "violations": len(self.violations)}


def _row_filter(columns: dict[str, list[str | None]], where: dict[str, list[str]] | None, n: int) -> list[bool]:
    """Which rows a name check applies to (all when there is no filter; none when the filter column is absent)."""
    if not where:
        return [True] * n
    keep = [True] * n
    for column, values in where.items():
        cells = columns.get(column)
        if cells is None:
            return [False] * n
        allowed = set(values)
        keep = [k and c in allowed for k, c in zip(keep, cells)]
    return keep


def scan_file(path: Path, name: str, spec: Any, names: NameIndex | None, report: GateReport, data_file: bool) -> None:
    """Run every cell detector over one file, adding findings to the report.

    Tabular files (Parquet, CSV, a JSON array of records) are read back with Arrow and scanned column by column over
    their distinct values (the detectors decide per value, so a value repeated in many rows is checked once and
    reported at its first row); other files (descriptors) cell by cell as before.
    """
    table = read_tabular(path)
    if table is None:
        _scan_columns(columns_of(path), name, spec, names, report, data_file)
        return
    report.files += 1
    for column in table.column_names:
        report.cells += table.num_rows
        texts = _text_column(table.column(column))
        unique = pc.drop_null(pc.unique(texts))
        unique = pc.filter(unique, pc.not_equal(unique, ""))
        if not len(unique):
            continue
        values = unique.to_pylist()
        hits = [("resident_id", i, f) for i, f in find_resident_ids_unique(values)]
        hits += [("phone", i, f) for i, f in _scan_unique(values, PHONE_PATTERN)]
        if not hits:
            continue
        first = _first_rows(texts, unique)
        for rule, i, found in hits:
            label = "疑似公民身份号码" if rule == "resident_id" else "疑似手机号码"
            report.violations.append(Violation(spec.id, name, column, first[i], rule, f"{label} {_mask(found)}"))
    if not data_file or names is None:
        return
    if spec.person_level:
        for column in table.column_names:
            texts = _text_column(table.column(column))
            unique = pc.drop_null(pc.unique(texts))
            unique = pc.filter(unique, pc.not_equal(unique, ""))
            found_at = [(i, names.contained(v)) for i, v in enumerate(unique.to_pylist())]
            found_at = [(i, f) for i, f in found_at if f]
            if found_at:  # each distinct value once: person-level columns are categorical
                first = _first_rows(texts, unique)
                for i, found in found_at:
                    report.violations.append(Violation(spec.id, name, column, first[i], "person_name", f"自然人姓名 {found[0]}**"))
    for check in spec.name_checks:
        column = check["column"]
        if column not in table.column_names:
            continue
        texts = _text_column(table.column(column))
        applies = _applies(table, check.get("where"))
        candidates = pc.drop_null(pc.unique(pc.filter(texts, applies)))
        named = {v: names.exact(v) for v in candidates.to_pylist() if v}
        named = {v: f for v, f in named.items() if f}
        if not named:
            continue
        rows = np.flatnonzero(pc.and_(applies, pc.fill_null(pc.is_in(texts, pa.array(list(named))), False))
                              .to_numpy(zero_copy_only=False))
        values = pc.take(texts, pa.array(rows, type=pa.int64())).to_pylist()
        for row, value in zip(rows.tolist(), values):
            report.violations.append(Violation(spec.id, name, column, row, "person_name", f"自然人姓名 {named[value][0]}**"))


def _scan_columns(columns: dict[str, list[str | None]], name: str, spec: Any, names: NameIndex | None,
                  report: GateReport, data_file: bool) -> None:
    """The detectors over a file read cell by cell (descriptors and JSON that is not an array of records)."""
    report.files += 1
    for column, cells in columns.items():
        report.cells += len(cells)
        for row, found in find_resident_ids(cells):
            report.violations.append(Violation(spec.id, name, column, row, "resident_id", f"疑似公民身份号码 {_mask(found)}"))
        for row, found in find_phones(cells):
            report.violations.append(Violation(spec.id, name, column, row, "phone", f"疑似手机号码 {_mask(found)}"))
    if not data_file or names is None:
        return
    if spec.person_level:
        for column, cells in columns.items():
            first: dict[str, int] = {}
            for row, cell in enumerate(cells):
                if cell and cell not in first:
                    first[cell] = row
            for cell, row in first.items():
                found = names.contained(cell)
                if found:
                    report.violations.append(Violation(spec.id, name, column, row, "person_name", f"自然人姓名 {found[0]}**"))
    for check in spec.name_checks:
        column = check["column"]
        cells = columns.get(column)
        if cells is None:
            continue
        for row, (cell, applies) in enumerate(zip(cells, _row_filter(columns, check.get("where"), len(cells)))):
            found = applies and cell and names.exact(cell)
            if found:
                report.violations.append(Violation(spec.id, name, column, row, "person_name", f"自然人姓名 {found[0]}**"))


# --- reading tabular files with Arrow --------------------------------------------------------------


def read_tabular(path: Path) -> pa.Table | None:
    """A Parquet, CSV or JSON-records file as an Arrow table (CSV: every cell text, empty → null); None otherwise.

    data.json is one JSON array of flat records in a fixed column order; it is split into JSON lines at the record
    boundaries (`},{"<first column>":` cannot occur inside a string: its quotes would be escaped) and parsed with the
    column types of its Parquet twin. Anything else (or a parse error) returns None: the cell-by-cell path reads it.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
        if not header or len(set(header)) != len(header):
            return None
        try:
            return pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                  parse_options=pacsv.ParseOptions(newlines_in_values=True),
                                  convert_options=pacsv.ConvertOptions(
                                      column_types={n: pa.string() for n in header}, strings_can_be_null=True,
                                      quoted_strings_can_be_null=True, null_values=[""]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None  # ragged rows, a row longer than a block: the cell-by-cell reader decides
    if suffix == ".json" and path.with_suffix(".parquet").exists():
        return _read_records_json(path, pq.read_schema(path.with_suffix(".parquet")))
    return None


def _read_records_json(path: Path, schema: pa.Schema) -> pa.Table | None:
    """A compact JSON array of records (as formats.json_bytes writes it) read as JSON lines; None if it is not one."""
    data = path.read_bytes()
    if data.strip() == b"[]":
        return schema.empty_table()
    if not (data.startswith(b"[{") and data.endswith(b"}]")) or not schema.names:
        return None
    first = json.dumps(schema.names[0], ensure_ascii=False).encode("utf-8")
    body = data[1:-1].replace(b"},{" + first + b":", b"}\n{" + first + b":")
    del data
    types = pa.schema([(f.name, pa.string() if pa.types.is_temporal(f.type) else f.type) for f in schema])
    try:
        table = pajson.read_json(io.BytesIO(body), parse_options=pajson.ParseOptions(
            explicit_schema=types, unexpected_field_behavior="error"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table


def _text_column(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as the text the detectors read (as str() of the Python value: ISO dates, repr of floats)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_integer(kind) or pa.types.is_date(kind):
        return column.cast(pa.string())
    unique = pc.unique(column)
    texts = [_cell(v) for v in unique.to_pylist()]
    return pc.take(pa.array(texts, type=pa.string()), pc.index_in(column, value_set=unique))


def _first_rows(texts: pa.Array, unique: pa.Array) -> list[int]:
    """The first row of each value of `unique` in the column."""
    index = pc.index_in(texts, value_set=unique).to_numpy(zero_copy_only=False)
    index = np.where(np.isnan(index.astype(float)), -1, index).astype(np.int64) if index.dtype.kind == "f" else index
    first = np.full(len(unique), -1, dtype=np.int64)
    present = np.flatnonzero(index >= 0)
    values, at = np.unique(index[present], return_index=True)
    first[values] = present[at]
    return first.tolist()


def _applies(table: pa.Table, where: dict[str, list[str]] | None) -> pa.Array:
    """Which rows a name check applies to (all without a filter; none when the filter column is absent)."""
    keep = pa.array(np.ones(table.num_rows, dtype=bool))
    for column, values in (where or {}).items():
        if column not in table.column_names:
            return pa.array(np.zeros(table.num_rows, dtype=bool))
        inside = pc.fill_null(pc.is_in(_text_column(table.column(column)), pa.array(list(values), type=pa.string())), False)
        keep = pc.and_(keep, inside)
    return keep


def find_resident_ids_unique(values: list[str]) -> list[tuple[int, str]]:
    """(index, number) of every valid resident ID number among distinct values (USCCs that look alike are not IDs)."""
    return _only_resident_ids(list(_scan_unique(values, RESIDENT_ID_PATTERN)))


_SCANNED: dict[tuple[str, str], list[tuple[int, str]]] = {}  # (pattern, digest of the values) → findings
_SCANNED_MAX = 256


def _scan_unique(unique: list[str], pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """(index, match) of a pattern over distinct non-empty values, NFKC-normalised, in one regex pass.

    A release holds the same column several times (data.parquet, .csv, .json, the first release's diff/added), so the
    findings are remembered by a digest of the joined values: the same values are scanned once.
    """
    if not unique:
        return []
    joined = SEPARATOR.join(unique)
    key = (pattern.pattern, hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest())
    if key in _SCANNED:
        return _SCANNED[key]
    normalised = unicodedata.normalize("NFKC", joined)
    starts: list[int] | None = None
    found = []
    for match in pattern.finditer(normalised):
        if starts is None:
            starts = [0] + [m.end() for m in re.finditer(SEPARATOR, normalised)]
        found.append((bisect.bisect_right(starts, match.start()) - 1, match.group(0)))
    if len(_SCANNED) >= _SCANNED_MAX:
        _SCANNED.clear()
    _SCANNED[key] = found
    return found


def check_k_anonymity(table: pa.Table, spec: Any, name: str) -> tuple[list[Violation], dict[str, Any]]:
    """Every combination of the quasi-identifiers present occurs at least k times."""
    qis = [q for q in spec.quasi_identifiers if q in table.column_names]
    missing = [q for q in spec.quasi_identifiers if q not in table.column_names]
    violations: list[Violation] = []
    classes, smallest, below = 0, None, 0
    if qis and table.num_rows:
        rows = table.select(qis).append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        groups = (rows.group_by(qis, use_threads=False).aggregate([("__row", "min"), ("__row", "count")])
                  .sort_by("__row_min"))
        sizes = groups.column("__row_count").to_numpy()
        classes, smallest = len(sizes), int(sizes.min())
        small = np.flatnonzero(sizes < spec.k)
        below = len(small)
        firsts = groups.column("__row_min").to_numpy()
        violations = [Violation(spec.id, name, "+".join(qis), int(firsts[i]), "k_anonymity",
                                f"准标识符组合仅出现 {int(sizes[i])} 次，少于 k={spec.k}") for i in small[:20]]
    if missing:
        violations.append(Violation(spec.id, name, "+".join(missing), None, "k_anonymity", "输出缺少声明的准标识符列"))
    return violations, {"k": spec.k, "quasi_identifiers": qis, "classes": classes,
                        "smallest_class": smallest, "classes_below_k": below}


def check_small_cells(table: pa.Table, spec: Any, name: str) -> tuple[list[Violation], dict[str, Any]]:
    """Every published aggregate count is at least k (suppressed cells are empty)."""
    if spec.count_column not in table.column_names:
        return [], {"k": spec.k, "count_column": spec.count_column, "cells": 0, "suppressed_cells": 0, "cells_below_k": 0}
    counts = table.column(spec.count_column)
    values = counts.to_numpy(zero_copy_only=False).astype(float)
    bad = np.flatnonzero((values > 0) & (values < spec.k))
    violations = [Violation(spec.id, name, spec.count_column, int(i), "small_cell",
                            f"单元格人数 {int(values[i])} 少于 k={spec.k} 未抑制") for i in bad[:20]]
    return violations, {"k": spec.k, "count_column": spec.count_column, "cells": len(counts),
                        "suppressed_cells": counts.null_count, "cells_below_k": len(bad)}


def run_gate(folder: Path, spec: Any, names: NameIndex | None, data_files: Iterable[str]) -> GateReport:
    """The gate over every file of a release folder; `data_files` = relative names of the tabular outputs."""
    report = GateReport()
    tabular = set(data_files)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.suffix.lower() in DATA_SUFFIXES:
            scan_file(path, relative, spec, names, report, relative in tabular)
    report.checks["identifiers"] = {"rules": ["resident_id", "phone"], "scope": "所有文件的所有单元格"}
    report.checks["names"] = {"names_indexed": len(names) if names is not None else 0,
                              "person_level": bool(spec.person_level),
                              "columns": [c["column"] for c in spec.name_checks]}
    data = folder / "data.parquet"
    if data.exists():
        table = pq.read_table(data)
        if spec.person_level:
            found, checked = check_k_anonymity(table, spec, "data.parquet")
            report.violations += found
            report.checks["k_anonymity"] = checked
        if spec.count_column:
            found, checked = check_small_cells(table, spec, "data.parquet")
            report.violations += found
            report.checks["small_cells"] = checked
    return report


def digest(text: str) -> str:
    """SHA-256 hex of a text (content hashes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = ["NameIndex", "PrivacyGateError", "Pseudonymiser", "Step", "Violation", "age_bands", "check_k_anonymity",
           "check_small_cells", "find_phones", "find_resident_ids", "k_anonymise", "labels", "region_names",
           "regions_at", "run_gate", "suppress_small_cells", "widen_age_band"]
