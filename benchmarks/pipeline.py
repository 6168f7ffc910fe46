"""The whole pipeline at one scale: world → collect → quality → merge → linkage → sealing → catalogue → release, then 1 % changed.

Every stage runs in its own child process through the production functions the DAG tasks call, with the same
arguments and in the merge DAGs' order (hub/dag_factory.py; hub.pipeline.MERGE_ORDER):

- collect: connectors.collect.collect(source, run_id) for every registered source (collect_<source> DAGs), the
  court's API served by world.server as `hub run` does;
- per library, as merge_<library> runs its tasks: quality.stage.check_pending (check_quality),
  libraries.load.load_pending (load_pending_landings), libraries.linkage.link_pending (population, legal entity)
  or licences.seal.seal_pending (licence);
- catalogue: catalog.resources.refresh + catalog.lists.responsibility_list (built on demand, no DAG);
- release: opendata.release.release for every dataset, one process per core (release_opendata's tasks run side by side).

Airflow itself (dag.test, the scheduler) is not in the timed path: one process per stage is what gives a peak
memory per stage; `hub run` measures the same code under dag.test(). Each child reports the stage's seconds
(the function call, not the interpreter start), its rows, its peak RSS (VmHWM of the process, and the largest
worker process it started), then runs the stage's raw baseline on the same rows in the same process:

- collect: bare reads of the same source data (sqlite3 SELECT, pyarrow CSV/JSON, calamine) written as Parquet;
- quality: the identifier columns of the same landings read and checked by the vectorised checks only;
- merge: the same landed rows inserted with one executemany into a bare SQLite table (the hub DB is SQLite);
- sealing: a bare Ed25519 sign loop over as many 1 KiB payloads on one core (× the workers the stage used);
- release: the four library tables read with sqlite3 and written as bare zstd Parquet.

The incremental run changes 1 % of the records in the world's source systems (SQL: an address and a later
update time, so the replication key picks them up; file drops: a new file with the changed records, as a
department would send; court API: changed records with a later updatedAt) and runs every stage again.
The hub database is the embedded SQLite default. Exchange lookups under load: benchmarks/exchange_lookup.py.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SEED = 20261123
CHANGE_STEP = 100  # every 100th record changes: 1 %
LIBRARY_ORDER = ("population", "legal_entity", "licence", "credit")
LINKED = ("population", "legal_entity")
LIBRARY_TABLES = ("person", "legal_entity", "licence", "credit_record")
PROGRESS_MARK = "BENCH-PROGRESS "
RESULT_FILE = "stage-result.json"

# What a department changes in 1 % of its records: (column, how). SQL sources also get a later update time.
SQL_CHANGES = {"gongan_hjrk": "hjdz", "scjg_qydj": "zs", "scjg_gtgsh": "jycs"}  # addresses: a move
FILE_CHANGES = {
    "minzheng_hydj": "证书字号", "minzheng_shzz": "住所", "renshe_sbcb": "单位名称",
    "credit_xzxk": "许可内容", "credit_xzcf": "处罚内容", "credit_jyyc": "列入经营异常名录原因", "credit_hhmd": "惩戒或激励措施",
}
LICENCE_FACE = "照面信息"  # licences: a note added to the face content, so the licence changes and is sealed again
SUFFIX = "（变更）"


# ── progress and child processes ──────────────────────────────────────────────────────────────────

def progress(text: str) -> None:
    """One progress line on stderr (marked when the harness runs us, so it can show it while we run)."""
    mark = PROGRESS_MARK if os.environ.get("HUB_BENCH_PROGRESS") else ""
    print(f"{mark}[pipeline] {text}", file=sys.stderr, flush=True)


def stage_environ(root: Path) -> dict[str, str]:
    """The environment of every stage: its own data root (SQLite hub database in it), no user settings file."""
    return os.environ | {"HUB_DATA_ROOT": str(root / "data"), "HUB_SETTINGS_FILE": str(root / "absent.toml"),
                         "HUB_WORLD_DIR": str(root / "world")}


def run_stage(root: Path, stage: str, argument: str, phase: str, timeout: float = 7200) -> dict[str, Any]:
    """Run one stage in a child process (its output to a log file); returns its figures."""
    result_path = root / RESULT_FILE
    result_path.unlink(missing_ok=True)
    log_path = root / "logs" / f"{phase}-{stage}-{argument or 'all'}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, "-m", "benchmarks.pipeline", "--stage", stage, "--argument", argument,
                               "--phase", phase, "--root", str(root)],
                              env=stage_environ(root), stdout=log, stderr=log, timeout=timeout)
    process_seconds = time.monotonic() - started
    if done.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"阶段失败 stage {phase}/{stage} {argument} failed (exit {done.returncode}): {' | '.join(tail)}")
    figures = json.loads(result_path.read_text(encoding="utf-8"))
    return {"phase": phase, "stage": stage if not argument else f"{stage}:{argument}", **figures,
            "process_seconds": round(process_seconds, 2)}


def peak_self_mib() -> float:
    """This process's peak resident set so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child_main(stage: str, argument: str, phase: str, root: Path) -> None:
    """Inside a stage's process: the stage, its peak memory, then its baseline; figures to RESULT_FILE."""
    function, baseline = STAGES[stage]
    started = time.perf_counter()
    rows, details = function(argument, phase, root)
    seconds = time.perf_counter() - started
    figures: dict[str, Any] = {"seconds": round(seconds, 3), "rows": rows,
                               "rows_per_s": round(rows / seconds) if seconds > 0 else None,
                               "peak_rss_mib": peak_self_mib()}
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if workers:
        figures["peak_rss_workers_mib"] = round(workers, 1)
    if baseline is not None:  # after the stage's peak was read: the baseline's memory is not the stage's
        base = baseline(argument, phase, root, details)
        figures["baseline"] = base
        if base.get("rows_per_s") and figures["rows_per_s"]:
            figures["ratio_to_baseline"] = round(figures["rows_per_s"] / base["rows_per_s"], 3)
    figures["details"] = details
    (root / RESULT_FILE).write_text(json.dumps(figures, ensure_ascii=False, default=str), encoding="utf-8")


def run_time() -> datetime:
    """When a stage runs 'for' (the DAG run's run_after): now, as under dag.test()."""
    return datetime.now(timezone.utc)


def run_id_of(phase: str) -> str:
    """The Airflow-style run id of a phase (the idempotency key of collect)."""
    return f"bench__{phase}"


def timed_rate(rows: int, seconds: float, what: str, **extra: Any) -> dict[str, Any]:
    """A baseline's figures."""
    return {"what": what, "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds) if seconds > 0 and rows else None, **extra}


# ── stages ────────────────────────────────────────────────────────────────────────────────────────

def stage_world(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """Generate the simulated province (reported; not part of the pipeline's time)."""
    from world import generate

    described = generate(out=root / "world", scale=float(argument), seed=SEED)
    sources = described["counts"]["sources"]
    return sum(sources.values()), {"sources": sources, "reference_date": described["reference_date"]}


def stage_collect(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """Every registered source into landing, as the collect_<source> DAGs do (court API served meanwhile)."""
    from connectors.collect import collect
    from connectors.registry import all_sources
    from hub.db import upgrade
    from hub.pipeline import export_connections, world_api, world_connections
    from hub.settings import get_settings

    upgrade(get_settings().database_url)
    per_source: dict[str, dict] = {}
    with world_api(root / "world", progress=lambda _: None) as api_url:
        export_connections(world_connections(root / "world", api_url))
        for spec in all_sources():
            started = time.perf_counter()
            landing = collect(spec.id, run_id_of(phase))
            per_source[spec.id] = {"rows": landing["rows"], "seconds": round(time.perf_counter() - started, 3)}
    return sum(s["rows"] for s in per_source.values()), {"sources": per_source}


def landed_runs(phase: str, library: str | None = None) -> list[tuple[str, Path]]:
    """(source, landing file) of the phase's runs, optionally of one library's sources."""
    import sqlalchemy as sa

    from connectors.registry import get_source
    from hub.db import engine_for
    from hub.models import SourceRun

    with engine_for().connect() as connection:
        rows = connection.execute(sa.select(SourceRun.source_id, SourceRun.landing_path)
                                  .where(SourceRun.run_id == run_id_of(phase), SourceRun.rows_extracted > 0)).all()
    return [(source, Path(path)) for source, path in rows
            if path and (library is None or get_source(source).library == library)]


def stage_quality(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """merge_<library>'s check_quality task: every unchecked landing of the library."""
    from quality.stage import check_pending

    results = check_pending(argument, run_time=run_time())
    runs = {key: value for key, value in results.items() if isinstance(value, dict) and "rows" in value}
    summary = {key: {k: run[k] for k in ("rows", "loaded", "quarantined", "merged") if k in run} for key, run in runs.items()}
    return sum(run["rows"] for run in runs.values()), {"runs": summary}


def stage_merge(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """merge_<library>'s load_pending_landings task: field-level survivorship into the library."""
    from libraries.load import load_pending

    results = load_pending(argument)
    runs = {key: value for key, value in results.items() if isinstance(value, dict)}
    return sum(run.get("rows", 0) for run in runs.values()), {"runs": runs}


def stage_linkage(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """merge_<library>'s link_unkeyed_records task: key-less quarantined rows linked, sent to review or not matched."""
    from libraries.linkage import link_pending

    counts = link_pending(argument)
    return sum(counts.get(k, 0) for k in ("linked", "review", "no_match")), counts


def stage_seal(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """merge_licence's seal_licences task: every new or changed licence sealed by its issuer's key."""
    from hub.db import engine_for
    from licences.seal import seal_pending

    counts = seal_pending(engine_for(), sealed_at=run_time())
    return counts["sealed"], counts


def stage_catalogue(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """The sharing catalogue rebuilt and the responsibility list read (what the catalogue API serves)."""
    from catalog.lists import responsibility_list
    from catalog.resources import all_resources, refresh
    from hub.db import engine_for

    refresh(force=True)
    resources = len(all_resources())
    duties = responsibility_list(engine_for(), run_time())
    return resources, {"resources": resources, "responsibility_rows": len(duties)}


def stage_release(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """release_opendata's tasks: every open dataset de-identified, written, gated and signed (unchanged ones skipped)."""
    from opendata.cli import default_workers
    from opendata.release import release

    out = release(at=run_time(), workers=default_workers())  # the DAG's tasks run side by side under Airflow
    if out["failed"]:
        raise RuntimeError(f"发布失败 release failed: {out['failed']}")
    statuses = {r["dataset"]: r.get("status") for r in out["results"]}
    seconds = {r["dataset"]: r["seconds"] for r in out["results"] if "seconds" in r}
    rows = sum(r.get("rows", 0) for r in out["results"] if r.get("status") == "published")
    return rows, {"datasets": statuses, "dataset_seconds": seconds}


def stage_change(argument: str, phase: str, root: Path) -> tuple[int, dict]:
    """Change 1 % of the records in the world's source systems (reported; not part of the incremental time)."""
    world_dir = root / "world"
    described = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
    changed: dict[str, int] = {}
    files: list[str] = []
    for source in described["sources"]:
        if source["kind"] == "sql":
            changed[source["id"]] = change_sql(world_dir, source)
        elif source["kind"] == "http":
            changed[source["id"]] = change_court(world_dir)
        elif source["kind"] == "file":
            count, path = change_files(world_dir, source)
            changed[source["id"]] = count
            files.append(str(path))
    (root / "changed.json").write_text(json.dumps({"files": files}, ensure_ascii=False), encoding="utf-8")
    return sum(changed.values()), {"records": changed}


# ── the 1 % change ────────────────────────────────────────────────────────────────────────────────

def later(text: str, fmt: str) -> str:
    """One minute after the latest update time (the next incremental read picks the changed rows up)."""
    return (datetime.strptime(text, fmt) + timedelta(minutes=1)).strftime(fmt)


def change_sql(world_dir: Path, source: dict) -> int:
    """UPDATE every 100th row: a new address and a later gxsj."""
    column, table = SQL_CHANGES[source["id"]], source["table"]
    with sqlite3.connect(world_dir / source["location"]) as connection:
        newest = connection.execute(f"SELECT max(gxsj) FROM {table}").fetchone()[0]
        cursor = connection.execute(f"UPDATE {table} SET {column} = coalesce({column}, '') || '附1号', gxsj = ? "
                                    f"WHERE rowid % {CHANGE_STEP} = 0", (later(newest, "%Y-%m-%d %H:%M:%S"),))
        return cursor.rowcount


def change_court(world_dir: Path) -> int:
    """Every 100th court record with a changed duty text and a later updatedAt (the API serves what is newer)."""
    path = world_dir / "court" / "sxbzxr.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    stamp = later(max(r["updatedAt"] for r in records if r.get("updatedAt")), "%Y-%m-%dT%H:%M:%S")
    picked = records[::CHANGE_STEP]
    for record in picked:
        record["duty"] = (record.get("duty") or "") + SUFFIX
        record["updatedAt"] = stamp
    path.write_text("".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records), encoding="utf-8")
    return len(picked)


def source_files(world_dir: Path, source_id: str) -> list[Path]:
    """A file source's files, as its connector finds them (drop folder + registry globs)."""
    from connectors.registry import get_source
    from hub.pipeline import drop_folder

    described = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
    location = next(s["location"] for s in described["sources"] if s["id"] == source_id)
    folder = drop_folder(world_dir, location)
    patterns = get_source(source_id).options["glob"]
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def text_encoding(raw: bytes) -> str:
    """utf-8-sig when the bytes are UTF-8, else gb18030 (a superset of the GBK drops)."""
    try:
        raw.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "gb18030"


def read_records(path: Path) -> tuple[list[str], list[dict[str, Any]], str]:
    """(columns, records, encoding) of a CSV, JSON Lines or xlsx drop, every value as text (xlsx) or as sent."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return list(records[0]) if records else [], records, "utf-8"
    if path.suffix == ".xlsx":
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(str(path))
        rows = [row for name in workbook.sheet_names for row in workbook.get_sheet_by_name(name).to_python()]
        header = [str(v) for v in rows[0]]
        body = [r for r in rows[1:] if [str(v) for v in r] != header]  # later sheets repeat the header
        return header, [dict(zip(header, (cell_text(v) for v in r))) for r in body], "xlsx"
    raw = path.read_bytes()
    encoding = text_encoding(raw)
    reader = csv.DictReader(io.StringIO(raw.decode(encoding, errors="replace")))  # a few drops carry broken bytes on purpose
    records = list(reader)
    return list(reader.fieldnames or []), records, encoding


def cell_text(value: Any) -> str:
    """An xlsx cell as the text a department would have typed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10] if not getattr(value, "hour", 0) else value.isoformat(sep=" ")
    return str(value)


def changed_record(source_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as the department sends it again after a change."""
    record = dict(record)
    if source_id.startswith("licence_"):
        face = record.get(LICENCE_FACE)
        content = face if isinstance(face, dict) else json.loads(face) if face else {}
        content["变更事项"] = "换发"
        record[LICENCE_FACE] = content if isinstance(face, dict) else json.dumps(content, ensure_ascii=False)
    else:
        column = FILE_CHANGES[source_id]
        record[column] = (record.get(column) or "") + SUFFIX
    if "更新时间" in record and record["更新时间"]:
        record["更新时间"] = str(record["更新时间"])[:10] + " 23:59:00"
    return record


def change_files(world_dir: Path, source: dict) -> tuple[int, Path]:
    """A new drop file (same format and encoding) holding every 100th record of the source, changed."""
    paths = source_files(world_dir, source["id"])
    columns, picked, encoding, counter = [], [], "utf-8", 0
    for path in paths:
        file_columns, records, file_encoding = read_records(path)
        if not columns:
            columns, encoding = file_columns, file_encoding
        for record in records:
            if counter % CHANGE_STEP == 0:
                picked.append(changed_record(source["id"], record))
            counter += 1
    first = paths[0]
    target = first.with_name(f"{first.stem}_chg1{first.suffix}")
    write_records(target, columns, picked, encoding)
    return len(picked), target


def write_records(path: Path, columns: list[str], records: list[dict[str, Any]], encoding: str) -> None:
    """Write records in the drop's own format."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".xlsx":
        import pyarrow as pa

        from world.xlsx import write_xlsx

        table = pa.table({c: pa.array([str(r.get(c, "")) for r in records], pa.string()) for c in columns})
        write_xlsx(path, table, "参保人员")
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        path.write_bytes(buffer.getvalue().encode(encoding))


# ── baselines ─────────────────────────────────────────────────────────────────────────────────────

def baseline_collect(argument: str, phase: str, root: Path, details: dict) -> dict[str, Any]:
    """Bare reads of the same source data written as Parquet: no normalisation, lineage, fingerprints or state."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    world_dir = root / "world"
    described = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
    new_files = set(json.loads((root / "changed.json").read_text())["files"]) if phase == "incremental" else None
    out = root / "baseline"
    out.mkdir(exist_ok=True)
    rows, started = 0, time.perf_counter()
    for number, source in enumerate(described["sources"]):
        tables: list[pa.Table] = []
        if source["kind"] == "sql":
            where = f" WHERE rowid % {CHANGE_STEP} = 0" if new_files is not None else ""
            with sqlite3.connect(world_dir / source["location"]) as connection:
                cursor = connection.execute(f"SELECT * FROM {source['table']}{where}")
                names = [d[0] for d in cursor.description]
                columns = list(zip(*cursor.fetchall())) or [()] * len(names)
            tables.append(pa.table({n: pa.array(c) for n, c in zip(names, columns)}))
        elif source["kind"] == "http":
            table = pajson.read_json(world_dir / "court" / "sxbzxr.jsonl")
            tables.append(table.slice(0, max(1, table.num_rows // CHANGE_STEP)) if new_files is not None else table)
        else:
            for path in source_files(world_dir, source["id"]):
                if new_files is not None and str(path) not in new_files:
                    continue
                if path.suffix == ".jsonl":
                    tables.append(pajson.read_json(path))
                elif path.suffix == ".xlsx":
                    columns_, records, _ = read_records(path)
                    tables.append(pa.table({c: [r[c] for r in records] for c in columns_}))
                else:
                    raw = path.read_bytes()
                    if text_encoding(raw) != "utf-8-sig":  # GBK/GB18030 drops (some with broken bytes): transcode first
                        raw = raw.decode("gb18030", errors="replace").encode("utf-8")
                    tables.append(pacsv.read_csv(io.BytesIO(raw)))
        for part, table in enumerate(tables):
            pq.write_table(table, out / f"{number}-{part}.parquet")
            rows += table.num_rows
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return timed_rate(rows, seconds, "bare source reads (sqlite3, pyarrow csv/json, calamine) → Parquet")


def identifier_checks() -> dict[str, Callable[[Any], Any]]:
    """The vectorised check of each identifier element."""
    from schemas import identifiers

    return {"resident_id": identifiers.check_resident_ids, "husband_resident_id": identifiers.check_resident_ids,
            "wife_resident_id": identifiers.check_resident_ids, "debtor_id_number": identifiers.check_resident_ids,
            "uscc": identifiers.check_usccs, "subject_uscc": identifiers.check_usccs, "employer_uscc": identifiers.check_usccs,
            "licence_id": identifiers.check_licence_ids}


def baseline_quality(argument: str, phase: str, root: Path, details: dict) -> dict[str, Any]:
    """The identifier columns of the same landings read and checked by the vectorised checks, nothing else."""
    import pyarrow.parquet as pq

    from connectors.registry import get_source

    checks = identifier_checks()
    rows, values, started = 0, 0, time.perf_counter()
    for source_id, path in landed_runs(phase, argument):
        columns = {f.source: f.target for f in get_source(source_id).fields if f.target in checks}
        table = pq.read_table(path, columns=list(columns))
        for column, target in columns.items():
            checks[target](table.column(column).to_numpy(zero_copy_only=False))
            values += table.num_rows
        rows += table.num_rows
    return timed_rate(rows, time.perf_counter() - started, "identifier columns read + vectorised checks", values=values)


def baseline_merge(argument: str, phase: str, root: Path, details: dict) -> dict[str, Any]:
    """The same landed rows inserted with executemany into a bare SQLite table (one per source), one transaction."""
    import pyarrow.parquet as pq

    target = root / "baseline-merge.sqlite"
    target.unlink(missing_ok=True)
    rows, started = 0, time.perf_counter()
    with sqlite3.connect(target) as connection:
        for number, (source_id, path) in enumerate(landed_runs(phase, argument)):
            table = pq.read_table(path)
            names = ", ".join(f'c{i}' for i in range(table.num_columns))
            connection.execute(f"CREATE TABLE t{number} ({names})")
            marks = ", ".join("?" * table.num_columns)
            connection.executemany(f"INSERT INTO t{number} VALUES ({marks})",
                                   zip(*(table.column(i).cast("string").to_pylist() for i in range(table.num_columns))))
            rows += table.num_rows
    seconds = time.perf_counter() - started
    target.unlink(missing_ok=True)
    return timed_rate(rows, seconds, "landed rows → executemany into a bare SQLite table")


def baseline_seal(argument: str, phase: str, root: Path, details: dict) -> dict[str, Any]:
    """A bare Ed25519 sign loop on one core over as many 1 KiB payloads (capped at 100,000), scaled by the stage's workers."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    count = min(max(details.get("sealed", 0), 1), 100_000)
    key, payloads = Ed25519PrivateKey.generate(), [os.urandom(1024) for _ in range(count)]
    started = time.perf_counter()
    for payload in payloads:
        key.sign(payload)
    seconds = time.perf_counter() - started
    workers = max(details.get("workers", 1), 1)
    return {"what": f"bare Ed25519 sign, 1 core × {workers} workers", "rows": count, "seconds": round(seconds, 3),
            "rows_per_s": round(count / seconds * workers)}


def baseline_release(argument: str, phase: str, root: Path, details: dict) -> dict[str, Any]:
    """The four library tables read with sqlite3 and written as bare zstd Parquet (no de-identification, gate, signing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from hub.settings import get_settings

    database = sa.make_url(get_settings().database_url).database
    out = root / "baseline"
    out.mkdir(exist_ok=True)
    rows, started = 0, time.perf_counter()
    with sqlite3.connect(database) as connection:
        for table_name in LIBRARY_TABLES:
            cursor = connection.execute(f"SELECT * FROM {table_name}")
            names = [d[0] for d in cursor.description]
            fetched = cursor.fetchall()
            columns = list(zip(*fetched)) if fetched else [()] * len(names)
            table = pa.table({n: pa.array(c, pa.string() if not c else None) for n, c in zip(names, columns)})
            pq.write_table(table, out / f"{table_name}.parquet", compression="zstd")
            rows += table.num_rows
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return timed_rate(rows, seconds, "library tables (sqlite3) → bare zstd Parquet")


STAGES: dict[str, tuple[Callable, Callable | None]] = {
    "world": (stage_world, None),
    "collect": (stage_collect, baseline_collect),
    "quality": (stage_quality, baseline_quality),
    "merge": (stage_merge, baseline_merge),
    "linkage": (stage_linkage, None),
    "seal": (stage_seal, baseline_seal),
    "catalogue": (stage_catalogue, None),
    "release": (stage_release, baseline_release),
    "change": (stage_change, None),
}
LABELS = {"world": "生成模拟省份", "collect": "采集全部数据源", "quality": "质量检查", "merge": "汇入基础库", "linkage": "记录匹配",
          "seal": "电子证照签章", "catalogue": "共享目录", "release": "开放数据发布", "change": "修改 1% 源记录"}


def pipeline_plan() -> list[tuple[str, str]]:
    """(stage, argument) in production order: collect, then each merge DAG's tasks, then catalogue and release."""
    plan = [("collect", "")]
    for library in LIBRARY_ORDER:
        plan += [("quality", library), ("merge", library)]
        plan += [("linkage", library)] if library in LINKED else [("seal", "")] if library == "licence" else []
    return plan + [("catalogue", ""), ("release", "")]


# ── the benchmark ─────────────────────────────────────────────────────────────────────────────────

def run_phase(root: Path, phase: str, plan: list[tuple[str, str]], results: list[dict]) -> float:
    """Run a phase's stages one after another, showing progress; returns the sum of the stages' seconds."""
    total = 0.0
    for number, (stage, argument) in enumerate(plan, start=1):
        label = f"{LABELS[stage]} {argument}".strip()
        progress(f"{phase} [{number}/{len(plan)}] {label} …")
        figures = run_stage(root, stage, argument, phase)
        results.append(figures)
        # Written after every stage: a run stopped half-way (timeout, a long scale) still leaves its figures.
        (root / "pipeline-partial.json").write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        total += figures["seconds"] if stage not in ("world", "change") else 0.0
        ratio = f"，基线比 {figures['ratio_to_baseline']}" if "ratio_to_baseline" in figures else ""
        progress(f"    {figures['seconds']:.1f} s，{figures['rows']:,} 行，{figures['rows_per_s'] or 0:,} 行/秒，"
                 f"峰值 {figures['peak_rss_mib']:,.0f} MiB{ratio}")
    return total


def summary(results: list[dict], full: float, incremental: float, scale: float) -> dict[str, Any]:
    """Headline figures: totals, the incremental share, the pipeline's peak memory."""
    # a stage run with an argument is labelled "stage:argument" (the world's is "world:<scale>")
    pipeline = [r for r in results if r["stage"].split(":")[0] not in ("world", "change")]
    peaks = [max(r["peak_rss_mib"], r.get("peak_rss_workers_mib", 0)) for r in pipeline]
    return {
        "scale": scale,
        "full_seconds": round(full, 2),
        "incremental_seconds": round(incremental, 2),
        "incremental_share_of_full": round(incremental / full, 4) if full else None,
        "full_process_seconds": round(sum(r["process_seconds"] for r in pipeline if r["phase"] == "full"), 2),
        "peak_stage_rss_mib": max(peaks) if peaks else None,
        "peak_stage": pipeline[peaks.index(max(peaks))]["stage"] if peaks else None,
        "rows_collected_full": next((r["rows"] for r in pipeline if r["phase"] == "full" and r["stage"] == "collect"), None),
        "load_average_start_end": None,
    }


def run(scale: float = 1.0, root: Path | None = None) -> dict:
    """The whole pipeline at `scale`, then the 1 % incremental run; per-stage figures and a summary."""
    from hub.settings import get_settings

    root = Path(root or get_settings().data_root / "bench" / f"pipeline-{scale:g}").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    load_before = os.getloadavg()
    progress(f"规模 scale {scale}，工作目录 {root}，负载 load {load_before[0]:.1f}")
    results: list[dict] = []
    run_phase(root, "world", [("world", str(scale))], results)
    full = run_phase(root, "full", pipeline_plan(), results)
    run_phase(root, "change", [("change", "")], results)
    incremental = run_phase(root, "incremental", pipeline_plan(), results)
    load_after = os.getloadavg()
    head = summary(results, full, incremental, scale)
    head["load_average_start_end"] = [round(load_before[0], 2), round(load_after[0], 2)]
    progress(f"完成：全量 {full:.1f} s，增量 {incremental:.1f} s（{head['incremental_share_of_full']:.1%}），"
             f"阶段峰值 {head['peak_stage_rss_mib']:,.0f} MiB")
    report = {**head, "stages": [{k: v for k, v in r.items() if k != "details"} for r in results],
              "exchange": "benchmarks/exchange_lookup.py (hub bench --only exchange_lookup)",
              "workspace": str(root)}
    (root / "pipeline-report.json").write_text(json.dumps(report | {"details": {f"{r['phase']}/{r['stage']}": r.get("details") for r in results}},
                                                          ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    (root / "pipeline-report.md").write_text(markdown(report), encoding="utf-8")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The pipeline report as Markdown: headline figures, then one row per stage."""
    lines = [f"# 全流程基准 Whole pipeline — scale {report['scale']}", "",
             f"全量 full run: {report['full_seconds']} s; 增量 incremental (1 %): {report['incremental_seconds']} s "
             f"({report['incremental_share_of_full']:.1%} of full); 阶段峰值 peak stage RSS: {report['peak_stage_rss_mib']} MiB "
             f"({report['peak_stage']}); 负载 load average start/end: {report['load_average_start_end']}", "",
             "| phase | stage | s | rows | rows/s | peak RSS MiB (workers) | baseline rows/s | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["stages"]:
        base = r.get("baseline") or {}
        workers = f" ({r['peak_rss_workers_mib']:,.0f})" if r.get("peak_rss_workers_mib") else ""
        lines.append(f"| {r['phase']} | {r['stage']} | {r['seconds']:.2f} | {r['rows']:,} | {r['rows_per_s'] or 0:,} | "
                     f"{r['peak_rss_mib']:,.0f}{workers} | {base.get('rows_per_s') or '—'} | {r.get('ratio_to_baseline', '—')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="全流程基准 whole-pipeline benchmark")
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--argument", default="", help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help="工作目录 workspace (default <data_root>/bench/pipeline-<scale>)")
    arguments = parser.parse_args()
    if arguments.stage:
        child_main(arguments.stage, arguments.argument, arguments.phase, arguments.root)
    else:
        print(markdown(run(arguments.scale, arguments.root)))
