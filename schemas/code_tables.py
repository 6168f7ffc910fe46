"""Code tables (代码表) of the national standards, read from CSV data files. 代码表。

Every table is a UTF-8 CSV file ``<name>.csv`` with at least the columns ``code`` and ``label``;
optional ``valid_from``/``valid_to`` (years, inclusive, empty = open) record codes that were retired
or reissued, as GB/T 2260 region codes are. ``tables.yaml`` next to them gives each table a title and
its standard. A directory in ``HUB_CODE_TABLE_DIR`` overrides the built-in files one table at a time,
so a table is updated by dropping in a new CSV, without a code change.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from schemas._columns import as_str_array

CODE_TABLE_DIR_ENV = "HUB_CODE_TABLE_DIR"
BUILTIN_DIR = Path(__file__).resolve().parent / "data" / "code_tables"
INDEX_FILE = "tables.yaml"
# Years outside this span are clamped to it when checking validity periods (no boundary lies outside).
YEAR_MIN, YEAR_MAX = 1900, 2100


class CodeTableError(LookupError):
    """A code table that does not exist or cannot be read."""


def table_dirs() -> list[Path]:
    """Directories searched for tables, in order: $HUB_CODE_TABLE_DIR (if set), then the built-in one."""
    override = os.environ.get(CODE_TABLE_DIR_ENV, "").strip()
    return ([Path(override).expanduser()] if override else []) + [BUILTIN_DIR]


def table_path(name: str) -> Path:
    """The CSV file that currently defines table ``name``."""
    for directory in table_dirs():
        candidate = directory / f"{name}.csv"
        if candidate.is_file():
            return candidate
    raise CodeTableError(f"代码表不存在 unknown code table: {name!r} (searched {', '.join(map(str, table_dirs()))})")


def table_names() -> list[str]:
    """Names of every available table (built-in and overriding)."""
    return sorted({path.stem for directory in table_dirs() if directory.is_dir() for path in directory.glob("*.csv")})


def table_index() -> dict[str, dict[str, str]]:
    """Title, standard and notes of each table from tables.yaml (an override's entries win)."""
    index: dict[str, dict[str, str]] = {}
    for directory in reversed(table_dirs()):
        path = directory / INDEX_FILE
        if path.is_file():
            index.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return index


def _year(text: str, open_value: int) -> int:
    """A validity year from the CSV ('' = open-ended)."""
    return int(text) if text.strip() else open_value


@dataclass(frozen=True, eq=False)  # identity equality: rows hold dicts, and a table is loaded once per file version
class CodeTable:
    """One code table: its rows in file order and fast lookups over them."""

    name: str
    title: str
    standard: str
    source: Path
    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]

    @cached_property
    def codes(self) -> tuple[str, ...]:
        """Distinct codes in file order."""
        return tuple(dict.fromkeys(row["code"] for row in self.rows))

    @cached_property
    def _latest(self) -> dict[str, dict[str, str]]:
        """Code → its most recent row (the last one in file order)."""
        return {row["code"]: row for row in self.rows}

    @cached_property
    def _by_label(self) -> dict[str, str]:
        """Label → code (first occurrence wins)."""
        mapping: dict[str, str] = {}
        for row in self.rows:
            mapping.setdefault(row["label"], row["code"])
        return mapping

    @property
    def has_periods(self) -> bool:
        """Whether rows carry validity years."""
        return "valid_from" in self.columns and "valid_to" in self.columns

    def row(self, code: str, year: int | None = None) -> dict[str, str] | None:
        """The row for ``code`` (valid in ``year`` if given, else the most recent), or None."""
        if year is None or not self.has_periods:
            return self._latest.get(code)
        for row in reversed(self.rows):
            if row["code"] == code and _year(row["valid_from"], -10**9) <= year <= _year(row["valid_to"], 10**9):
                return row
        return None

    def label(self, code: str, year: int | None = None) -> str | None:
        """Chinese label of ``code`` (in ``year`` if given), or None if unknown."""
        row = self.row(code, year)
        return row["label"] if row else None

    def code_for_label(self, label: str) -> str | None:
        """The code whose label is ``label``, or None."""
        return self._by_label.get(label)

    def column(self, name: str) -> tuple[str, ...]:
        """One column of the latest row of each code, in code order."""
        return tuple(self._latest[code].get(name, "") for code in self.codes)

    def __contains__(self, code: object) -> bool:
        """Whether ``code`` is in the table (any period)."""
        return code in self._latest

    def __len__(self) -> int:
        """Number of distinct codes."""
        return len(self.codes)

    @cached_property
    def sorted_codes(self) -> np.ndarray:
        """Distinct codes, sorted, as a numpy unicode array (the order of ``year_bitmap`` rows)."""
        return np.sort(np.array(self.codes, dtype=str)) if self.codes else np.zeros(0, dtype="<U1")

    @cached_property
    def year_bitmap(self) -> np.ndarray:
        """[sorted code index, year − YEAR_MIN] → valid in that year."""
        bitmap = np.zeros((len(self.sorted_codes), YEAR_MAX - YEAR_MIN + 1), dtype=bool)
        position = {code: index for index, code in enumerate(self.sorted_codes.tolist())}
        for row in self.rows:
            start = max(_year(row["valid_from"], YEAR_MIN), YEAR_MIN) - YEAR_MIN
            end = min(_year(row["valid_to"], YEAR_MAX), YEAR_MAX) - YEAR_MIN
            bitmap[position[row["code"]], start : end + 1] = True
        return bitmap

    def index_vector(self, values: Any) -> np.ndarray:
        """Position of each value among the sorted codes, −1 where unknown (vectorised)."""
        text, missing = as_str_array(values)
        codes = self.sorted_codes
        if codes.size == 0:
            return np.full(text.shape, -1, dtype=np.int64)
        position = np.searchsorted(codes, text)
        clipped = np.minimum(position, codes.size - 1)
        return np.where((codes[clipped] == text) & ~missing, clipped, -1)

    def contains_vector(self, values: Any, years: Any = None) -> np.ndarray:
        """Whether each value is a known code (valid in the matching year, if ``years`` is given)."""
        index = self.index_vector(values)
        known = index >= 0
        if years is None or not self.has_periods:
            return known
        offset = np.clip(np.asarray(years, dtype=np.int64), YEAR_MIN, YEAR_MAX) - YEAR_MIN
        offset = np.broadcast_to(offset, index.shape)
        return known & self.year_bitmap[np.maximum(index, 0), offset]

    def labels_vector(self, values: Any) -> np.ndarray:
        """Latest label of each value (object array, None where unknown)."""
        index = self.index_vector(values)
        labels = np.array([None] + [self._latest[code]["label"] for code in self.sorted_codes.tolist()], dtype=object)
        return labels[index + 1]


def _read_csv(path: Path) -> tuple[tuple[str, ...], tuple[dict[str, str], ...]]:
    """Columns and rows of a UTF-8 CSV code table (a BOM is tolerated)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        rows = tuple({key: (value or "").strip() for key, value in row.items() if key is not None} for row in reader)
    if "code" not in columns or "label" not in columns:
        raise CodeTableError(f"代码表缺少 code/label 列 code table lacks code/label columns: {path}")
    return columns, rows


@lru_cache(maxsize=128)
def _load(name: str, path: Path, mtime_ns: int) -> CodeTable:
    """Read one table (cached per file version, so an edited file is re-read)."""
    columns, rows = _read_csv(path)
    meta = table_index().get(name, {})
    return CodeTable(name=name, title=str(meta.get("title", name)), standard=str(meta.get("standard", "")),
                     source=path, columns=columns, rows=rows)


def load_table(name: str) -> CodeTable:
    """The code table ``name`` (e.g. 'regions', 'gender', 'ethnicity'), cached."""
    path = table_path(name)
    try:
        return _load(name, path, path.stat().st_mtime_ns)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CodeTableError(f"代码表无法读取 cannot read code table {name!r} at {path}: {error}") from error


def clear_cache() -> None:
    """Forget every loaded table (tests, or after changing HUB_CODE_TABLE_DIR)."""
    _load.cache_clear()
