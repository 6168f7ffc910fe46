"""Differential extract of a release against the previous one: rows added, changed and removed, by the dataset's key.

差分数据。Row datasets compare rows by key; aggregate and person-level datasets compare cells (the key is the cell's
dimensions; duplicate rows of a person-level table become one cell with a `records` count).

The comparison runs in Arrow: a hash join of the two tables on the key and a column-by-column equality test, so a
release of a million rows is compared without a Python object per row. Tables the join cannot compare the same way
(a key that repeats or holds nulls, a previous release with other columns or types) take the row-by-row path, which
defines the semantics: added (new keys), changed (same key, any value differs; new values), removed (old values).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KINDS: tuple[str, ...] = ("added", "changed", "removed")
COUNT = "records"
ROW = "__row"


def _numbered(table: pa.Table) -> pa.Table:
    """The table with its row numbers in a column (to keep the original order through joins and groupings)."""
    return table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _groups(table: pa.Table, key: list[str]) -> pa.Table:
    """One row per distinct key: the first row number and the row count, in order of first appearance."""
    return (_numbered(table).group_by(key, use_threads=False)
            .aggregate([(ROW, "min"), (ROW, "count")]).sort_by(f"{ROW}_min"))


def cells_view(table: pa.Table, key: list[str]) -> pa.Table:
    """A table whose key is not unique, as cells: one row per key with the first values and a `records` count."""
    groups = _groups(table, key)
    first = table.take(groups.column(f"{ROW}_min"))
    return first.append_column(COUNT, groups.column(f"{ROW}_count").cast(pa.int64()))


def _key_unique(table: pa.Table, key: list[str]) -> bool:
    """Whether every key occurs once."""
    return table.num_rows == 0 or _groups(table, key).num_rows == table.num_rows


def comparable(table: pa.Table, key: list[str], mode: str) -> pa.Table:
    """The table as the diff sees it (cells mode collapses duplicate keys)."""
    if mode == "cells" and table.num_rows and not _key_unique(table, key):
        return cells_view(table, key)
    return table


def _by_key(table: pa.Table, key: list[str]) -> dict[tuple, dict[str, Any]]:
    """Rows by key (the last row wins if a key repeats)."""
    return {tuple(r[k] for k in key): r for r in table.to_pylist()}


def _canonical(row: dict[str, Any]) -> str:
    """Row values as comparable text."""
    return json.dumps(row, ensure_ascii=False, sort_keys=True, default=str)


def _joinable(before: pa.Table, current: pa.Table, key: list[str]) -> bool:
    """Whether the Arrow join gives the row-by-row result: same columns and types, unique keys without nulls."""
    if before.schema != current.schema or ROW in current.column_names or not key:
        return False
    if any(t.column(k).null_count for t in (before, current) for k in key):
        return False
    return _key_unique(before, key) and _key_unique(current, key)


def _diff_join(before: pa.Table, current: pa.Table, key: list[str]) -> dict[str, pa.Table]:
    """added / changed / removed by a full outer join on the key; rows keep their original order."""
    others = [n for n in current.column_names if n not in key]
    old = _numbered(before).rename_columns([n if n in key else f"__old_{n}" for n in before.column_names] + ["__old"])
    new = _numbered(current).rename_columns(current.column_names + ["__new"])
    joined = new.join(old, keys=key, join_type="full outer", use_threads=False)
    new_at, old_at = joined.column("__new"), joined.column("__old")
    both = pc.and_(pc.is_valid(new_at), pc.is_valid(old_at))
    differs = pa.array(np.zeros(joined.num_rows, dtype=bool))
    for name in others:
        a, b = joined.column(name), joined.column(f"__old_{name}")
        same = pc.or_(pc.and_(pc.is_null(a), pc.is_null(b)), pc.fill_null(pc.equal(a, b), False))
        differs = pc.or_(differs, pc.invert(same))

    def rows(mask: Any, at: pa.ChunkedArray) -> np.ndarray:
        """Sorted row numbers of one side where the mask holds."""
        picked = pc.filter(at, mask).to_numpy()
        return np.sort(picked.astype(np.int64))

    added = rows(pc.is_null(old_at), new_at)
    changed = rows(pc.and_(both, differs), new_at)
    removed = rows(pc.is_null(new_at), old_at)
    return {"added": current.take(pa.array(added)), "changed": current.take(pa.array(changed)),
            "removed": before.take(pa.array(removed))}


def _diff_rows(before: pa.Table, current: pa.Table, key: list[str]) -> dict[str, pa.Table]:
    """added / changed / removed row by row (any columns, repeated or null keys: the last row of a key wins)."""
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


def diff_tables(old: pa.Table | None, new: pa.Table, key: list[str], mode: str = "rows") -> dict[str, pa.Table]:
    """added (new keys), changed (same key, other values; new values), removed (keys gone; old values)."""
    current = comparable(new, key, mode)
    empty = current.schema.empty_table()
    if old is None:
        return {"added": current, "changed": empty, "removed": empty}
    before = comparable(old, key, mode)
    if _joinable(before, current, key):
        return _diff_join(before, current, key)
    return _diff_rows(before, current, key)


__all__ = ["COUNT", "KINDS", "cells_view", "comparable", "diff_tables"]
