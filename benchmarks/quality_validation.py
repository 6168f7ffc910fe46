"""Quality validation of 1,000,000 population rows (公安 household register) with every population rule.

Figures: rows per second of the bare vectorised pass (every rule, duplicates and the cross-source marital
comparison included), and, in the same run, the GX-backed stage (the bare pass plus validating its outcome
with the Great Expectations suite generated from the catalogue) as a ratio of the bare pass. Both are timed
REPEATS times, interleaved (bare, GX-backed, bare, …) so that a busy neighbour on a shared machine slows both
alike; the headline figures are medians (rows/s from the median time; the ratio is the median of the
per-repetition ratios), with min and max beside them, and the CPU seconds of each repetition (less sensitive
than wall time to other processes, though the identifier check runs on two threads). Every repetition does
the whole work again on a new Frame: nothing is carried over but the references (built once per run, as the
stage builds them) and GX's import. Data Docs rendering is timed separately.
Targets: ≥ 500,000 rows/s; GX-backed / bare ≤ 2.

Input: the 公安 and 民政 sources of a simulated province generated at `scale` (1 = one million persons),
collected and standardised once and cached under <data_root>/bench/quality (generation and
standardisation are not part of validation and are not timed here).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

SEED = 20261123
REPEATS = 9  # repetitions of each pass: the median is the figure quoted, min and max show the machine's noise
SOURCES = ("gongan_hjrk", "minzheng_hydj")


def _cache_dir(scale: float) -> Path:
    """Where the standardised inputs of a scale are kept between runs."""
    from hub.settings import get_settings

    return get_settings().data_root / "bench" / "quality" / f"scale-{scale:g}-seed-{SEED}"


def _inputs(scale: float) -> dict:
    """Standardised batches of the benchmark's sources (generated and cached on first use)."""
    from quality.world_eval import read_sources

    cache = _cache_dir(scale)
    files = {source: cache / f"{source}.parquet" for source in SOURCES}
    if not all(path.exists() for path in files.values()):
        from world import generate

        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-quality-") as folder:
            generate(out=Path(folder) / "world", scale=scale, seed=SEED)
            tables = read_sources(Path(folder) / "world", only=set(SOURCES))
            description = json.loads((Path(folder) / "world" / "world.json").read_text(encoding="utf-8"))
        for source, path in files.items():
            pq.write_table(tables[source], path)
        (cache / "reference_date.txt").write_text(description["reference_date"], encoding="utf-8")
    return {"tables": {source: pq.read_table(path) for source, path in files.items()},
            "reference_date": dt.date.fromisoformat((cache / "reference_date.txt").read_text(encoding="utf-8").strip())}


def _timed(function) -> tuple[float, float, object]:
    """Wall and CPU seconds (this process, all its threads) of one call, and its result."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - started, time.process_time() - cpu, result


def _spread(values: list[float], digits: int = 3) -> dict[str, float]:
    """Median, min and max of a list of figures."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def run(scale: float = 1.0) -> dict:
    """Validate the population rows with every rule; bare pass vs GX-backed stage in the same run."""
    from quality import gx_suite
    from quality.catalogue import load_catalogue
    from quality.engine import evaluate
    from quality.frame import RuleContext
    from quality.references import build_references

    inputs = _inputs(scale)
    table = inputs["tables"]["gongan_hjrk"]
    reference_date = inputs["reference_date"]
    references = build_references(inputs["tables"], reference_date)
    started = time.perf_counter()
    _ = references.registrations  # the only reference the 公安 rules read (the marital comparison)
    references_seconds = time.perf_counter() - started
    catalogue = load_catalogue("population")
    run_time = dt.datetime.combine(reference_date, dt.time(12), tzinfo=dt.timezone.utc)

    def bare():
        """The vectorised pass: every rule over the whole batch, verdicts and findings."""
        evaluation = evaluate(table, RuleContext("gongan_hjrk", "bench", reference_date, catalogue, references))
        _ = evaluation.verdict, evaluation.findings
        return evaluation

    def gx_backed():
        """The bare pass, then GX validating its outcome (no Data Docs)."""
        done = bare()
        return gx_suite.validate(done.pass_columns(), done.rules, "population.gongan_hjrk", "bench", run_time)

    gx_suite._expectation_class()  # import GX once, outside every timing (it costs seconds)
    bare()  # warm up: first-touch costs of the columns and the lazily built references are not validation
    load_before = os.getloadavg()
    bare_times, gx_times, bare_cpu, gx_cpu, ratios = [], [], [], [], []
    for _ in range(REPEATS):  # interleaved, so a busy neighbour on a shared machine slows both alike
        seconds, cpu, evaluation = _timed(bare)
        bare_times.append(seconds)
        bare_cpu.append(cpu)
        seconds, cpu, outcome = _timed(gx_backed)
        gx_times.append(seconds)
        gx_cpu.append(cpu)
        ratios.append(gx_times[-1] / bare_times[-1])  # each GX-backed pass against the bare pass just before it
    load_after = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-docs-") as docs:
        started = time.perf_counter()
        docs_outcome = gx_suite.validate(evaluation.pass_columns(), evaluation.rules,
                                         "population.gongan_hjrk", "bench-docs", run_time, Path(docs))
        with_docs_seconds = time.perf_counter() - started
    rows = table.num_rows
    counts = evaluation.counts()
    bare_median, gx_median, ratio = statistics.median(bare_times), statistics.median(gx_times), statistics.median(ratios)
    return {
        "scale": scale,
        "rows": rows,
        "rules": len(evaluation.rules),
        "repeats": REPEATS,
        "gx_backed_rows_per_second": round(rows / gx_median),  # from the median time: the headline figure
        "gx_vs_bare_ratio": round(ratio, 2),  # median of the per-repetition ratios, same run
        "bare_rows_per_second": round(rows / bare_median),
        "gx_backed_rows_per_second_range": [round(rows / max(gx_times)), round(rows / min(gx_times))],
        "gx_vs_bare_ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
        "gx_backed_seconds": _spread(gx_times),
        "bare_seconds": _spread(bare_times),
        "gx_backed_cpu_seconds": _spread(gx_cpu),
        "bare_cpu_seconds": _spread(bare_cpu),
        "gx_validation_only_seconds": round(outcome.seconds, 3),
        "gx_with_data_docs_seconds": round(with_docs_seconds, 3),
        "gx_success": outcome.success and docs_outcome.success,
        "gx_unexpected_equals_bare": all(outcome.unexpected[r.id] == int(evaluation.fail(r.id).sum()) for r in evaluation.rules),
        "references_build_seconds": round(references_seconds, 3),
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],  # before and after the timed passes
        "cores": os.cpu_count(),
        "targets": {"rows_per_second": 500_000, "gx_vs_bare_ratio": 2.0},
        "targets_met_on_medians": {"rows_per_second": rows / gx_median >= 500_000, "gx_vs_bare_ratio": ratio <= 2.0},
        "counts": counts,
        "findings": evaluation.findings.num_rows,
    }
