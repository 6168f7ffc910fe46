"""Source → standard: apply a source's registered field mappings to a landed batch.

The result has one column per standard data element, the lineage columns (_source_id, _run_id,
_source_key) and _errors, where every value that could not be normalised is explained. Rows are
never dropped here: judging them is the quality stage's job.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from connectors.registry import SourceSpec
from schemas.normalize import NORMALISERS, code_map, join_messages

LINEAGE_COLUMNS = ("_source_id", "_run_id", "_source_key", "_errors")
CHANGE = "_change"  # snapshot landings: insert / update / delete (connectors.snapshot); a delete reaches the merge


def standardise(batch: pa.RecordBatch | pa.Table, spec: SourceSpec, run_id: str) -> pa.Table:
    """Map and normalise one batch of a source into standard data elements."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    rows = table.num_rows
    columns: dict[str, pa.Array] = {}
    errors: list[pa.Array] = []
    for mapping in spec.fields:
        if mapping.source not in table.column_names:
            columns[mapping.target] = pa.nulls(rows, pa.string())
            errors.append(pa.array([f"{mapping.source}: 源数据缺少该字段 column missing in source"] * rows, pa.string()))
            continue
        values = table.column(mapping.source).combine_chunks()
        for step in mapping.normalize:
            values, step_errors = NORMALISERS[step](values)
            if step_errors.null_count < rows:
                errors.append(pc.binary_join_element_wise(f"{mapping.source}: ", step_errors, ""))
        if mapping.code_map:
            values, _ = code_map(values, mapping.code_map)
        columns[mapping.target] = values
    for name, value in spec.constants.items():
        columns.setdefault(name, pa.array([value] * rows))
    columns["_source_id"] = pa.array([spec.id] * rows, pa.string())
    columns["_run_id"] = pa.array([run_id] * rows, pa.string())
    columns["_source_key"] = source_keys(table, spec.primary_key)
    columns["_errors"] = join_messages(errors, rows)
    if CHANGE in table.column_names:  # carried so the merge can withdraw a deleted record's claims
        columns[CHANGE] = pc.cast(table.column(CHANGE), pa.string()).combine_chunks()
    return pa.table(columns)


def source_keys(table: pa.Table, primary_key: tuple[str, ...]) -> pa.Array:
    """The source's own primary key of each row as text (composite keys joined with '|')."""
    missing = [name for name in primary_key if name not in table.column_names]
    if missing:
        if table.num_rows == 0:  # an empty landing (nothing new) may carry only the hub's own columns
            return pa.array([], pa.string())
        raise KeyError(f"源数据缺少主键字段 primary-key columns missing from the source: {missing}")
    parts = [pc.cast(table.column(name), pa.string()).combine_chunks() for name in primary_key]
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "|")


