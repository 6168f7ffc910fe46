"""Record-linkage cases of the world: rows whose key is broken, what their true subject is, planted namesakes.

Ground truth for the hub's record linkage (libraries/linkage.py): `linkage_truth.parquet` lists every source row
whose *subject key* (resident ID, USCC) carries a bad_check_char or missing_required defect, with the subject's
true key. Whether a case is linkable depends on the hub (is the true subject in the golden table?), so the
evaluation decides that; the world only says who the row really is.

Two kinds of planting make the measurement meaningful:
* namesakes (hard negatives): some persons nobody else refers to are renamed to the name of an insured person of
  the same county and gender with a different birth date (names only appear in 公安 for them, so nothing else
  changes);
* re-filed registrations: 市场监管 rows filed a second time (变更登记 copies) with a mistyped or missing USCC and
  a harmless variant of the name or address, so company linkage has true matches in the library.
"""

from __future__ import annotations

import bisect

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world.config import WorldConfig, rng_for

LINKAGE_SCHEMA = pa.schema([
    ("source", pa.string()), ("record_key", pa.string()), ("field", pa.string()), ("defect_kind", pa.string()),
    ("true_key", pa.string()), ("library", pa.string()), ("hard_negative", pa.bool_()),
])
KEY_DEFECTS = ("bad_check_char", "missing_required")
NAMESAKE_SHARE = 0.06  # share of insured persons that get a namesake (same county and gender, other birth date)
NAMESAKE_WINDOW = 8  # how far along the birth-date order a namesake is searched for


def empty() -> pa.Table:
    """No linkage cases."""
    return LINKAGE_SCHEMA.empty_table()


def cases(inj, library: str, true_keys: dict[str, list], record_keys: np.ndarray,
          hard: np.ndarray | None = None) -> pa.Table:
    """Linkage cases of one source: its key-field defects (fields in true_keys) with each row's true key.

    inj is the source's Injector; true_keys maps a key field to the true key of every row of the final table;
    hard marks rows whose subject has a planted namesake.
    """
    out: dict[str, list] = {name: [] for name in LINKAGE_SCHEMA.names}
    for rows, field_name, kind, _ in inj.entries:
        if kind not in KEY_DEFECTS or field_name not in true_keys:
            continue
        for r in rows.tolist():
            out["source"].append(inj.source)
            out["record_key"].append(str(record_keys[r]))
            out["field"].append(field_name)
            out["defect_kind"].append(kind)
            out["true_key"].append(true_keys[field_name][r])
            out["library"].append(library)
            out["hard_negative"].append(bool(hard[r]) if hard is not None else False)
    return pa.table(out, schema=LINKAGE_SCHEMA)


def plant_namesakes(cfg: WorldConfig, persons: pa.Table, referenced: np.ndarray, insured: np.ndarray) -> pa.Table:
    """Rename unreferenced persons after insured ones (same county and gender, nearest other birth date).

    Adds column namesake_of (person_id of the namesake, both ways; null for everyone else). Only persons nobody
    refers to are renamed, so their name appears in 公安 alone and no other source changes.
    """
    n = persons.num_rows
    rng = rng_for(cfg.seed, "linkage", "namesakes")
    from world.defects import lanes

    anchor = lanes(cfg.seed, n, "persons") < 0.5
    region = persons.column("region").to_numpy(zero_copy_only=False)
    gender = persons.column("gender").to_numpy(zero_copy_only=False)
    birth = persons.column("birth_date").to_numpy(zero_copy_only=False).astype("datetime64[D]").astype(np.int64)
    free = np.flatnonzero(anchor & ~referenced)
    pool: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for i in free[np.argsort(birth[free], kind="stable")].tolist():
        births, rows = pool.setdefault((region[i], gender[i]), ([], []))
        births.append(int(birth[i]))
        rows.append(i)
    wanted = np.unique(insured)
    wanted = np.sort(rng.choice(wanted, size=int(len(wanted) * NAMESAKE_SHARE), replace=False)) if len(wanted) else wanted
    names = persons.column("name").to_pylist()
    partner = np.full(n, -1, dtype=np.int64)
    for p in wanted.tolist():
        births, rows = pool.get((region[p], gender[p]), ([], []))
        at = bisect.bisect_left(births, int(birth[p]))
        for k in sorted(range(max(0, at - NAMESAKE_WINDOW), min(len(rows), at + NAMESAKE_WINDOW)), key=lambda k: abs(k - at)):
            q = rows[k]
            if births[k] != birth[p] and partner[q] < 0 and partner[p] < 0:
                partner[q], partner[p] = p, q
                names[q] = names[p]
                break
    namesake = pa.array(np.where(partner >= 0, partner + 1, 0), pa.int64())
    persons = persons.set_column(persons.column_names.index("name"), "name", pa.array(names, pa.string()))
    return persons.append_column("namesake_of", pc.if_else(pc.equal(namesake, 0), pa.scalar(None, pa.int64()), namesake))
