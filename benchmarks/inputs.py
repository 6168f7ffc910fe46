"""Benchmark inputs: sources of a simulated province, collected and standardised once, cached between runs.

Generating a province and standardising its sources is not what the benchmarks measure, so it happens once per
(scale, seed, world-generator code) and the standardised Parquet files are kept under <data_root>/bench/inputs.
The generator's code is part of the cache key: a changed generator never feeds a benchmark a stale province.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20261123


def _generator_fingerprint() -> str:
    """A short hash of the world generator's source files."""
    import world

    digest = hashlib.sha256()
    for path in sorted(Path(world.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cache_dir(scale: float, seed: int = SEED) -> Path:
    """Where the standardised sources of one province are kept."""
    from hub.settings import get_settings

    return get_settings().data_root / "bench" / "inputs" / f"scale-{scale:g}-seed-{seed}-{_generator_fingerprint()}"


def standardised_sources(scale: float, sources: tuple[str, ...], seed: int = SEED) -> tuple[dict[str, pa.Table], dt.date]:
    """The named sources, standardised (as the quality stage stages them), and the province's reference date."""
    from quality.world_eval import read_sources

    cache = cache_dir(scale, seed)
    files = {source: cache / f"{source}.parquet" for source in sources}
    reference_file = cache / "reference_date.txt"
    missing = {source for source, path in files.items() if not path.exists()}
    if missing or not reference_file.exists():
        from world import generate

        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-inputs-") as folder:
            world_dir = Path(folder) / "world"
            generate(out=world_dir, scale=scale, seed=seed)
            for source, table in read_sources(world_dir, only=set(sources)).items():
                pq.write_table(table, files[source])
            description = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
        reference_file.write_text(description["reference_date"], encoding="utf-8")
    tables = {source: pq.read_table(path) for source, path in files.items()}
    return tables, dt.date.fromisoformat(reference_file.read_text(encoding="utf-8").strip())
