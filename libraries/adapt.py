"""Small helpers the library specs share to turn staged Arrow columns into claims."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from schemas import identifiers
from schemas.code_tables import load_table

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")  # departments write local wall-clock times and calendar days


def column(table: pa.Table, name: str) -> list[Any]:
    """A column as Python values, or Nones when the source does not carry it."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [None] * table.num_rows


def local_utc(value: Any) -> dt.datetime | None:
    """A source time (naive local datetime, or a calendar day = its local midnight) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=LOCAL_ZONE)
        return aware.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=LOCAL_ZONE).astimezone(dt.timezone.utc)
    raise TypeError(f"无法识别的时间 not a date or datetime: {type(value).__name__}")


def resident_ids(values: list[Any]) -> list[str | None]:
    """Resident ID numbers in their normalised 18-character form (legacy 15-digit converted), None where invalid."""
    if not values:
        return []
    check = identifiers.check_resident_ids(np.array(values, dtype=object))
    return [n if ok else None for n, ok in zip(check.normalised.tolist(), check.valid.tolist())]


def standard_codes(values: list[Any], table_name: str) -> list[Any]:
    """Code-table values as codes: a label the quality rules accepted (e.g. 男) becomes its code (1)."""
    table = load_table(table_name)
    return [v if v is None or v in table else (table.code_for_label(v) or v) for v in values]


def is_deleted(table: pa.Table) -> list[bool]:
    """Rows of a snapshot landing that say the record is gone (`_change = delete`)."""
    return [c == "delete" for c in column(table, "_change")]


def plain(value: Any) -> Any:
    """Trimmed text; empty text is no value (a null never beats a value, and neither does '')."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value
