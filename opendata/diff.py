"""Differential extract of a release against the previous one: rows added, changed and removed, by the dataset's key.

差分数据。Row datasets compare rows by key; aggregate and person-level datasets compare cells (the key is the cell's
dimensions; duplicate rows of a person-level table become one cell with a `records` count).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

KINDS: tuple[str, ...] = ("added", "changed", "removed")
COUNT = "records"


def cells_view(table: pa.Table, key: list[str]) -> pa.Table:
    """A table whose key is not unique, as cells: one row per key with the first values and a `records` count."""
    names = table.column_names
    columns = [table.column(n).to_pylist() for n in names]
    index = [names.index(k) for k in key]
    cells: dict[tuple, list[Any]] = {}
    counts: dict[tuple, int] = {}
    for row in zip(*columns):
        k = tuple(row[i] for i in index)
        if k not in cells:
            cells[k] = list(row)
            counts[k] = 0
        counts[k] += 1
    rows = list(cells.values())
    arrays = [pa.array([r[i] for r in rows], type=table.schema.field(i).type) for i in range(len(names))]
    arrays.append(pa.array([counts[k] for k in cells], type=pa.int64()))
    return pa.Table.from_arrays(arrays, names=names + [COUNT])


def comparable(table: pa.Table, key: list[str], mode: str) -> pa.Table:
    """The table as the diff sees it (cells mode collapses duplicate keys)."""
    if mode == "cells":
        keys = [tuple(r) for r in zip(*(table.column(k).to_pylist() for k in key))] if table.num_rows else []
        if len(set(keys)) != len(keys):
            return cells_view(table, key)
    return table


def _by_key(table: pa.Table, key: list[str]) -> dict[tuple, dict[str, Any]]:
    """Rows by key (the last row wins if a key repeats)."""
    return {tuple(r[k] for k in key): r for r in table.to_pylist()}


def _canonical(row: dict[str, Any]) -> str:
    """Row values as comparable text."""
    return json.dumps(row, ensure_ascii=False, sort_keys=True, default=str)


def diff_tables(old: pa.Table | None, new: pa.Table, key: list[str], mode: str = "rows") -> dict[str, pa.Table]:
    """added (new keys), changed (same key, other values; new values), removed (keys gone; old values)."""
    current = comparable(new, key, mode)
    empty = current.schema.empty_table()
    if old is None:
        return {"added": current, "changed": empty, "removed": empty}
    before = comparable(old, key, mode)
    old_rows, new_rows = _by_key(before, key), _by_key(current, key)
    added = [r for k, r in new_rows.items() if k not in old_rows]
    changed = [r for k, r in new_rows.items() if k in old_rows and _canonical(r) != _canonical(old_rows[k])]
    removed = [r for k, r in old_rows.items() if k not in new_rows]
    schema = current.schema
    # Removed rows keep the old values; cast to the new schema (columns the new schema lacks are dropped).
    return {
        "added": pa.Table.from_pylist(added, schema=schema),
        "changed": pa.Table.from_pylist(changed, schema=schema),
        "removed": pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in removed], schema=schema),
    }


__all__ = ["COUNT", "KINDS", "cells_view", "comparable", "diff_tables"]
