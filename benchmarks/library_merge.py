"""Merging into the population library: a full load against a 1 % change, on SQLite and on PostgreSQL.

Input: the three population sources of a simulated province at `scale` (1 = one million persons: 公安 household
register, 民政 marriage registrations, 人社 social insurance), standardised and judged by the quality rules; the
rows the rules let through are merged exactly as the merge DAG does (libraries.load: claims per 50,000 rows →
merge_claims(defer=True): claims stored encrypted; then recompute_pending: field-level survivorship once per
subject, a history version per subject, lineage, current table written with COPY on PostgreSQL).

- full load: every source into an empty hub database, deferred as the DAG does it; baseline in the same run: the
  same load merged run by run (each source's subjects recomputed when its run is stored — the merge before the
  deferred one);
- 1 % change: 1 % of the 公安 records come again with a new address and a later update time (a new run), and
  are merged into the full library. Only those subjects may be touched: the figure checks it.

Targets: the 1 % change takes ≤ 5 % of the full load; peak memory ≤ 4 GB (the harness reports peak RSS).
PostgreSQL: a throw-away database on $HUB_BENCH_PG_URL (default: the local test server); skipped if unreachable.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

ADMIN_URL = os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SOURCES = ("gongan_hjrk", "minzheng_hydj", "renshe_sbcb")
BATCH_ROWS = 50_000  # as libraries.load
CHANGE_SHARE = 0.01


def loadable_rows(scale: float) -> tuple[dict[str, pa.Table], dt.date]:
    """Each source's rows that pass the quality rules (what the merge DAG would load)."""
    from benchmarks.inputs import standardised_sources
    from quality.engine import LOAD
    from quality.world_eval import evaluate_tables

    tables, reference_date = standardised_sources(scale, SOURCES)
    evaluations = evaluate_tables(tables, reference_date)
    return {source: tables[source].filter(pa.array(evaluations[source].verdict == LOAD)) for source in SOURCES}, reference_date


def merge_table(engine: sa.Engine, source_id: str, table: pa.Table, run_id: str, at: dt.datetime,
                defer: bool = False) -> dict[str, int]:
    """Merge a source run's rows batch by batch, as libraries.load does; returns summed counts (defer: claims only,
    the subjects left for recompute_pending)."""
    from libraries.merge import merge_claims
    from libraries.registry import get_library

    spec = get_library("population")
    totals: dict[str, int] = {}
    for start in range(0, table.num_rows, BATCH_ROWS):
        rows = table.slice(start, BATCH_ROWS)
        claims = spec.claims(rows, source_id)
        keys = rows.column("_source_key").to_pylist()
        if len(claims.source_keys) != len(claims):
            claims.source_keys = [str(keys[i]) for i in claims.row_index]
        counts = merge_claims(engine, "population", claims, source_id=source_id, run_id=run_id, extracted_at=at,
                              ruleset_version="bench", defer=defer)
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    return totals


def changed_rows(table: pa.Table, share: float, seed: int = 7) -> pa.Table:
    """A share of the rows again, with a new address and an update time one day later."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(table.num_rows, size=max(1, int(table.num_rows * share)), replace=False))
    rows = table.take(pa.array(picked))
    address = pc.binary_join_element_wise(pc.fill_null(rows.column("household_address"), ""), pa.scalar("附1号"), "")
    rows = rows.set_column(rows.column_names.index("household_address"), "household_address", address)
    if "updated_at" in rows.column_names:
        later = pc.add(rows.column("updated_at"), pa.scalar(dt.timedelta(days=1)))
        rows = rows.set_column(rows.column_names.index("updated_at"), "updated_at", later)
    return rows


@contextmanager
def hub_database(backend: str) -> Iterator[str | None]:
    """A fresh, migrated hub database URL for the backend (None when PostgreSQL is unreachable)."""
    from hub.db import upgrade

    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-merge-") as folder:
            url = f"sqlite:///{Path(folder) / 'hub.sqlite'}"
            upgrade(url)
            yield url
        return
    name = f"bench_merge_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        yield None
        return
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        sa.create_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load_deferred(engine: sa.Engine, runs: dict[str, pa.Table], run_id: str, at: dt.datetime) -> dict[str, int]:
    """Every run's claims stored, then each touched subject recomputed once (libraries.load.load_pending)."""
    from libraries.merge import recompute_pending

    for source, table in runs.items():
        merge_table(engine, source, table, run_id, at, defer=True)
    return recompute_pending(engine, "population")


def per_run_seconds(backend: str, tables: dict[str, pa.Table], at: dt.datetime) -> tuple[float | None, int]:
    """Baseline: the full load merged run by run into a database of its own; seconds and versions written."""
    from hub.db import engine_for

    with hub_database(backend) as url:
        if url is None:
            return None, 0
        engine = engine_for(url)
        started = time.perf_counter()
        counts = [merge_table(engine, source, tables[source], "full", at) for source in SOURCES]
        seconds = time.perf_counter() - started
        engine.dispose()
    return seconds, sum(c.get("versions", 0) for c in counts)


def measure(backend: str, tables: dict[str, pa.Table], reference_date: dt.date) -> dict:
    """Full load (deferred, and run by run as the baseline) then a 1 % change on one backend."""
    from hub.db import engine_for

    at = dt.datetime.combine(reference_date, dt.time(1), tzinfo=dt.timezone.utc)
    baseline_seconds, baseline_versions = per_run_seconds(backend, tables, at)
    with hub_database(backend) as url:
        if url is None:
            return {"skipped": "PostgreSQL 不可达 unreachable"}
        engine = engine_for(url)
        started = time.perf_counter()
        full = load_deferred(engine, {source: tables[source] for source in SOURCES}, "full", at)
        full_seconds = time.perf_counter() - started
        change = changed_rows(tables["gongan_hjrk"], CHANGE_SHARE)
        started = time.perf_counter()
        changed = load_deferred(engine, {"gongan_hjrk": change}, "change", at + dt.timedelta(days=1))
        change_seconds = time.perf_counter() - started
        persons = engine.connect().execute(sa.text("SELECT count(*) FROM person")).scalar_one()
        engine.dispose()
    rows = sum(t.num_rows for t in tables.values())
    return {
        "rows_merged": rows,
        "persons": persons,
        "full_load_seconds": round(full_seconds, 2),
        "full_load_rows_per_second": round(rows / full_seconds),
        "full_versions": full["versions"],
        "per_run_full_load_seconds": round(baseline_seconds, 2) if baseline_seconds else None,
        "per_run_full_versions": baseline_versions,
        "full_load_vs_per_run": round(full_seconds / baseline_seconds, 3) if baseline_seconds else None,
        "change_rows": change.num_rows,
        "change_keys_touched": changed.get("keys_touched", 0),
        "change_versions": changed.get("versions", 0),
        "change_seconds": round(change_seconds, 2),
        "change_share_of_full_load": round(change_seconds / full_seconds, 4),
    }


def run(scale: float = 1.0) -> dict:
    """Both backends, the same input."""
    tables, reference_date = loadable_rows(scale)
    return {"scale": scale, "target_change_share": 0.05,
            **{backend: measure(backend, tables, reference_date) for backend in ("sqlite", "postgresql")}}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 0.01), ensure_ascii=False, indent=2))
