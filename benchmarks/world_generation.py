"""Generation of the simulated province at a scale: seconds, records per second, per-stage times.

Target (foundation issue): scale 1 (1 M persons, 200 k legal entities, 1 M licences, 200 k credit
records) in at most 60 s on the 2-core machine. Baseline in the same run: writing the same truth
tables once as bare Parquet with pyarrow, which bounds what any generator could do with that data.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def run(scale: float = 1.0) -> dict:
    """Generate a world into a temporary folder and time it."""
    from world import generate

    stages: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-world-") as folder:
        started = time.perf_counter()
        description = generate(out=Path(folder) / "world", scale=scale, seed=20261123, progress=stages.append)
        seconds = time.perf_counter() - started
        truth_tables = [pq.read_table(Path(folder) / "world" / path) for path in description["truth"].values()]
        baseline_started = time.perf_counter()
        for number, table in enumerate(truth_tables):
            pq.write_table(table, Path(folder) / f"baseline-{number}.parquet")
        baseline_seconds = time.perf_counter() - baseline_started
    source_rows = sum(description["counts"]["sources"].values())
    return {
        "scale": scale,
        "seconds": round(seconds, 2),
        "target_seconds_at_scale_1": 60,
        "source_records": source_rows,
        "records_per_second": round(source_rows / seconds),
        "manifest_defects": description.get("counts", {}).get("defects") or description.get("manifest", {}).get("rows"),
        "baseline_bare_parquet_write_of_truth_seconds": round(baseline_seconds, 2),
        "stages": stages,
    }
