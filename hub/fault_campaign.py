"""Crash campaign: kill the pipeline at a random risk point, rerun it, and compare with an uninterrupted run.

崩溃安全演练。The pipeline runs as a child process (`python -m hub.fault_campaign stages`) that calls the same
functions the DAG tasks call, in data-flow order: collect every source, then per library the quality stage, the
load, record linkage and sealing, then the open-data releases. A trial arms one fault point (hub/faults.py) with
HUB_FAULT=<point>:<n>, so the child dies by SIGKILL the n-th time it gets there, then runs the child again with
the same run id — what an Airflow retry does — to completion. The state it leaves (libraries, history, claims,
run accounting, quarantine, releases) must equal the state of a run that was never interrupted: no row lost,
none duplicated.

Every trial shares one generated world and one key ring (HMAC keys equal ⇒ person ids and record hashes
comparable; ciphertexts have random nonces, so encrypted columns are compared decrypted). Columns that hold
the wall-clock time of a run (updated_at, extracted_at, sealed_at, signatures by per-run keys) are left out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from hub.lineage import expand

RUN_ID = "faults__2026-06-01T00:00:00+00:00"
RUN_AT = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.timezone.utc)
# The next scheduled run, for trials whose crashed run is abandoned rather than retried (same calendar day).
NEXT_RUN_ID = "faults__2026-06-01T04:00:00+00:00"
NEXT_RUN_AT = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.timezone.utc)
RUN_VARIABLE = "HUB_FAULT_RUN"  # "next": the child runs as NEXT_RUN_ID
LIBRARY_TABLES = ("person", "legal_entity", "licence", "credit_record")
# Wall-clock or per-run-key columns: they differ between any two runs, interrupted or not.
VOLATILE_COLUMNS = frozenset({"updated_at", "sealed_at", "seal_value", "seal_key_id"})
VOLATILE_LINEAGE = frozenset({"extracted_at"})
SNAPSHOT_VARIABLE = "HUB_FAULT_SNAPSHOT"
# Small batches so that a tiny world still passes the between-batch points several times.
LOAD_BATCH_ROWS = 100
SEAL_CHUNK_ROWS = 50
CHILD_TIMEOUT = 900


# ------------------------------------------------------------------------------------------------
# The child: every stage once, in data-flow order
# ------------------------------------------------------------------------------------------------


def run_stages(run_id: str = RUN_ID, at: dt.datetime = RUN_AT, use_gx: bool = False) -> dict[str, Any]:
    """Collect, check, load, link, seal and release once (what the DAGs do), in this process; returns counts."""
    from connectors.connections import env_var_name
    from connectors.registry import all_sources
    from hub import pipeline
    from hub.db import engine_for, upgrade
    from hub.settings import get_settings

    settings = get_settings()
    upgrade(settings.database_url)
    done: dict[str, Any] = {}
    with pipeline.world_api(settings.world_dir, progress=lambda _: None) as api_url:
        connections = pipeline.world_connections(settings.world_dir, api_url)
        os.environ.update({env_var_name(c): v for c, v in connections.items()})  # the API's port is new each run
        from connectors.collect import collect

        for spec in sorted(all_sources(), key=lambda s: s.id):
            if spec.connection in connections:
                done[spec.id] = collect(spec.id, run_id)["rows"]
    _merge_libraries(engine_for(settings.database_url), at, use_gx, done)
    from opendata.release import release

    out = release(at=at)
    done["opendata"] = {r["dataset"]: r["status"] for r in out["results"]}
    if out["failed"]:
        raise RuntimeError(f"开放数据发布失败 releases failed: {out['failed']}")
    return done


def _merge_libraries(engine: Any, at: dt.datetime, use_gx: bool, done: dict[str, Any]) -> None:
    """Quality stage, load, linkage and sealing of every library, referenced libraries first."""
    from hub.pipeline import MERGE_ORDER
    from libraries import load
    from libraries.linkage import link_pending
    from licences.seal import seal_pending
    from quality.stage import check_pending

    load.BATCH_ROWS = LOAD_BATCH_ROWS
    for library in (dag_id.removeprefix("merge_") for dag_id in MERGE_ORDER):
        check_pending(library, run_time=at, use_gx=use_gx)
        done[library] = load.load_pending(library)
        if library in ("population", "legal_entity"):
            link_pending(library, engine, now=at)
        if library == "licence":
            seal_pending(engine, sealed_at=at, workers=1, chunk_rows=SEAL_CHUNK_ROWS)


# ------------------------------------------------------------------------------------------------
# What a run leaves behind, without what differs between any two runs
# ------------------------------------------------------------------------------------------------


def _plain(value: Any, cipher: Any, column: str) -> Any:
    """A column value as comparable JSON: ciphertexts decrypted, times and decimals as text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return cipher.decrypt(bytes(value)) if column.endswith("_enc") else hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, (dt.date, dt.datetime, Decimal)):
        return str(value)
    if column == "lineage" and isinstance(value, (dict, str)):
        lineage = expand(json.loads(value) if isinstance(value, str) else value)
        return {field: {k: v for k, v in (entry or {}).items() if k not in VOLATILE_LINEAGE} if isinstance(entry, dict) else entry
                for field, entry in lineage.items()}
    if isinstance(value, str) and column in ("face_content", "content") and value[:1] in "{[":
        return json.loads(value)
    return value


def _digest(rows: list[Any]) -> str:
    """Order-independent SHA-256 of JSON rows."""
    lines = sorted(json.dumps(r, ensure_ascii=False, sort_keys=True, default=str) for r in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _table_rows(connection: Any, table: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Every row of a table as plain dicts (the named columns only, when given)."""
    import sqlalchemy as sa

    result = connection.execute(sa.text(f"SELECT {', '.join(columns) if columns else '*'} FROM {table}"))
    return [dict(row._mapping) for row in result]


def _without_runs(row: dict[str, Any]) -> dict[str, Any]:
    """A row without which run wrote it (run_id, and run_id inside field lineage)."""
    out = {k: v for k, v in row.items() if k != "run_id"}
    if isinstance(out.get("lineage"), dict):
        out["lineage"] = {f: {k: v for k, v in e.items() if k != "run_id"} if isinstance(e, dict) else e
                          for f, e in out["lineage"].items()}
    return out


def snapshot(database_url: str, data_root: Path) -> dict[str, Any]:
    """Digests and counts of everything a run must leave identical: libraries, history, claims, accounting, releases.

    `content` holds the same libraries, history and claims without run ids: what must also hold when the crashed run is
    abandoned and the next run (another run id) takes over.
    """
    import sqlalchemy as sa

    from hub.crypto import get_cipher

    cipher = get_cipher()
    engine = sa.create_engine(database_url)
    out: dict[str, Any] = {"libraries": {}, "history": {}, "accounting": {}, "releases": {}, "content": {}}
    with engine.connect() as connection:
        for table in LIBRARY_TABLES:
            rows = [{k: _plain(v, cipher, k) for k, v in row.items() if k not in VOLATILE_COLUMNS}
                    for row in _table_rows(connection, table)]
            sealed = sum(1 for row in _table_rows(connection, table) if row.get("seal_value") is not None)
            out["libraries"][table] = {"rows": len(rows), "sha256": _digest(rows), "sealed": sealed}
            out["content"][table] = {"rows": len(rows), "sha256": _digest([_without_runs(r) for r in rows]), "sealed": sealed}
        versions = _table_rows(connection, "golden_version", ["library", "entity_key", "version", "tombstone", "record_hash", "run_id"])
        out["content"]["golden_versions"] = _digest([_without_runs(v) for v in versions])
        out["content"]["claims"] = _digest([_without_runs(c) for c in _table_rows(
            connection, "library_claim", ["library", "entity_key", "source_id", "source_key", "payload_hash", "deleted"])])
        per_key: dict[str, int] = {}
        for row in versions:
            per_key[f"{row['library']}/{row['entity_key']}"] = per_key.get(f"{row['library']}/{row['entity_key']}", 0) + 1
        out["history"] = {
            "golden_versions": len(versions), "golden_sha256": _digest(versions),
            "versions_per_key_sha256": _digest(sorted(per_key.items())), "max_versions_per_key": max(per_key.values(), default=0),
            "claims_sha256": _digest(_table_rows(connection, "library_claim",
                                                 ["library", "entity_key", "source_id", "source_key", "run_id", "payload_hash", "deleted"])),
        }
        out["accounting"] = {
            "source_run": sorted(json.dumps(r, sort_keys=True) for r in _table_rows(connection, "source_run", [
                "source_id", "run_id", "status", "rows_extracted", "rows_loaded", "rows_rejected", "landing_sha256",
                "watermark_from", "watermark_to"])),
            "quality_run": sorted(json.dumps(r, sort_keys=True) for r in _table_rows(connection, "quality_run", [
                "source_id", "run_id", "status", "rows_in", "rows_loaded", "rows_quarantined", "rows_merged", "score"])),
            "quarantine_sha256": _digest(_table_rows(connection, "quality_quarantine", ["source_id", "run_id", "source_key", "status"])),
            "defects": connection.execute(sa.text("SELECT count(*) FROM quality_defect")).scalar_one(),
            "tickets": connection.execute(sa.text("SELECT count(*) FROM quality_ticket")).scalar_one(),
        }
    engine.dispose()
    out["releases"] = release_state(data_root)
    return out


def release_state(data_root: Path) -> dict[str, Any]:
    """Per open dataset: its published versions with their content hash and rows, and what LATEST names."""
    from opendata import store

    state: dict[str, Any] = {}
    root = store.opendata_dir(data_root)
    if not root.is_dir():
        return state
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and store.DATASET_PATTERN.match(p.name)):
        versions = store.list_versions(data_root, folder.name)
        state[folder.name] = {
            "latest": store.latest_version(data_root, folder.name),
            "versions": [[v, store.manifest(data_root, folder.name, v)["content_sha256"],
                          store.manifest(data_root, folder.name, v)["rows"]["data"]] for v in versions],
        }
    catalog = root / "catalog.json"
    if catalog.exists():  # what the portal lists: each dataset's latest version and versions (times left out)
        entries = json.loads(catalog.read_text(encoding="utf-8"))["datasets"]
        state["catalog.json"] = {e["id"]: [e["latest_version"], [[v["version"], v["rows"]] for v in e["versions"]]] for e in entries}
    return state


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two snapshots differ (dotted paths), empty when equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            found += differences(expected.get(key), actual.get(key), f"{path}.{key}" if path else str(key))
        return found
    if expected != actual:
        if isinstance(expected, list) and isinstance(actual, list):
            missing = [x for x in expected if x not in actual][:3]
            extra = [x for x in actual if x not in expected][:3]
            return [f"{path}: 缺少 missing {missing} 多出 extra {extra}"]
        return [f"{path}: 期望 expected {expected!r} 实际 actual {actual!r}"]
    return []


# ------------------------------------------------------------------------------------------------
# The parent: one world, one uninterrupted run, then trials
# ------------------------------------------------------------------------------------------------


def child_env(base: Path, data_root: Path, **extra: str) -> dict[str, str]:
    """Environment of a stage child: its own data root and hub database, the shared world and key ring."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "AIRFLOW_CONN_"))}
    env.update({"HUB_DATA_ROOT": str(data_root), "HUB_WORLD_DIR": str(base / "world"),
                "HUB_KEYRING_FILE": str(base / "keyring.json"), "HUB_SETTINGS_FILE": str(base / "absent.toml"),
                "HUB_LOG_LEVEL": "WARNING", SNAPSHOT_VARIABLE: str(data_root / "snapshot.json")})
    env.update(extra)
    return env


def run_child(env: dict[str, str], log: Path) -> int:
    """Run the stages in a child process; returns its exit code (-9: killed by SIGKILL)."""
    with open(log, "a", encoding="utf-8") as handle:
        done = subprocess.run([sys.executable, "-m", "hub.fault_campaign", "stages"], env=env, stdout=handle,
                              stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT, cwd=Path(__file__).resolve().parents[1])
    return done.returncode


def prepare(base: Path, scale: float, seed: int) -> None:
    """Generate the shared world (once) and the shared key ring."""
    from hub.crypto import load_keyring
    from world import generate

    base.mkdir(parents=True, exist_ok=True)
    if not (base / "world" / "world.json").exists():
        generate(out=base / "world", scale=scale, seed=seed)
    load_keyring(base / "keyring.json")


def baseline(base: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """An uninterrupted run: its snapshot and how often it passed each fault point."""
    root = base / "baseline"
    counts_file = base / "baseline-counts.json"
    code = run_child(child_env(base, root, HUB_FAULT_COUNTS=str(counts_file)), base / "baseline.log")
    if code != 0:
        raise RuntimeError(f"未中断的运行失败 the uninterrupted run failed (exit {code}); see {base / 'baseline.log'}")
    return json.loads((root / "snapshot.json").read_text(encoding="utf-8")), json.loads(counts_file.read_text(encoding="utf-8"))


def plan(counts: dict[str, int], trials: int, seed: int, only: list[str] | None = None) -> list[tuple[str, int]]:
    """(point, n) of each trial: the reached points (or those of `only`) in a seeded random order, repeated, n drawn per trial."""
    rng = random.Random(seed)
    points = sorted(p for p, n in counts.items() if n > 0 and (only is None or p in only))
    if not points:
        raise ValueError(f"未中断的运行没有经过这些故障点 the uninterrupted run reached none of {only}")
    chosen: list[tuple[str, int]] = []
    while len(chosen) < trials:
        order = points[:]
        rng.shuffle(order)
        chosen += [(p, rng.randint(1, counts[p])) for p in order]
    return chosen[:trials]


def trial(base: Path, number: int, point: str, hit: int, expected: dict[str, Any], mode: str = "retry") -> dict[str, Any]:
    """Kill the stages at (point, hit), rerun them to completion and compare with the uninterrupted run.

    mode "retry": the rerun has the crashed run's id (an Airflow retry) and everything must be equal. mode "next": the
    crashed run is abandoned and the next run (another id) takes over; library content, history and claims (run ids
    aside) and the releases must be equal — accounting is per run, so it is not compared.
    """
    root = base / f"trial-{number:03d}"
    log = base / f"trial-{number:03d}.log"
    started = time.monotonic()
    killed = run_child(child_env(base, root, HUB_FAULT=f"{point}:{hit}"), log) == -signal.SIGKILL
    rerun = run_child(child_env(base, root, **({RUN_VARIABLE: "next"} if mode == "next" else {})), log)
    result: dict[str, Any] = {"trial": number, "point": point, "hit": hit, "mode": mode, "killed": killed, "rerun_exit": rerun}
    if rerun == 0:
        actual = json.loads((root / "snapshot.json").read_text(encoding="utf-8"))
        compared = ("content", "releases") if mode == "next" else tuple(expected)
        result["differences"] = differences({k: expected.get(k) for k in compared}, {k: actual.get(k) for k in compared})
    else:
        result["differences"] = [f"重跑失败 the rerun failed (exit {rerun}); see {log}"]
    result["survived"] = killed and not result["differences"]
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def campaign(base: Path, trials: int, seed: int, scale: float, progress: Any = print,
             only: list[str] | None = None, next_every: int = 0) -> dict[str, Any]:
    """The whole campaign; returns (and writes to base/faults.json) its summary.

    next_every=k makes every k-th trial abandon the crashed run for the next one (mode "next"); 0: all retries.
    """
    from hub.faults import POINTS

    started = time.monotonic()
    prepare(base, scale, seed)
    expected, counts = baseline(base)
    progress(f"未中断运行 uninterrupted run: {sum(counts.values())} 次经过故障点 fault-point hits")
    results = []
    for number, (point, hit) in enumerate(plan(counts, trials, seed, only), start=1):
        mode = "next" if next_every and number % next_every == 0 else "retry"
        outcome = trial(base, number, point, hit, expected, mode)
        mark = "存活 survived" if outcome["survived"] else ("未触发 not reached" if not outcome["killed"] else "失败 FAILED")
        progress(f"[{number}/{trials}] {point}:{hit} {mode} {mark} {outcome['seconds']} s")
        for line in outcome["differences"][:5]:
            progress(f"    {line}")
        results.append(outcome)
    per_point = {p: {"where": POINTS.get(p, ""), "reached": counts.get(p, 0), "injected": 0, "survived": 0, "next_run": 0}
                 for p in POINTS}
    for outcome in results:
        entry = per_point.setdefault(outcome["point"], {"where": "", "reached": counts.get(outcome["point"], 0),
                                                        "injected": 0, "survived": 0, "next_run": 0})
        entry["injected"] += int(outcome["killed"])
        entry["survived"] += int(outcome["survived"])
        entry["next_run"] += int(outcome["mode"] == "next" and outcome["killed"])
    summary = {"scale": scale, "seed": seed, "trials": trials, "injected": sum(r["killed"] for r in results),
               "survived": sum(r["survived"] for r in results), "per_point": per_point, "results": results,
               "baseline": {"libraries": {t: v["rows"] for t, v in expected["libraries"].items()},
                            "golden_versions": expected["history"]["golden_versions"],
                            "releases": len(expected["releases"])},
               "seconds": round(time.monotonic() - started, 1)}
    (base / "faults.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


def _stages_main() -> int:
    """Child entry point: run the stages, then write the snapshot where the parent asked."""
    from hub.settings import get_settings

    if os.environ.get(RUN_VARIABLE) == "next":
        run_stages(NEXT_RUN_ID, NEXT_RUN_AT)
    else:
        run_stages()
    target = os.environ.get(SNAPSHOT_VARIABLE)
    if target:
        settings = get_settings()
        Path(target).write_text(json.dumps(snapshot(settings.database_url, settings.data_root), ensure_ascii=False,
                                           indent=1, default=str), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hub.fault_campaign stages` (the child) or `… run` (a campaign)."""
    parser = argparse.ArgumentParser(prog="python -m hub.fault_campaign")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stages")
    run = sub.add_parser("run")
    run.add_argument("--dir", type=Path, required=True)
    run.add_argument("--trials", type=int, default=20)
    run.add_argument("--seed", type=int, default=20261201)
    run.add_argument("--scale", type=float, default=0.001)
    run.add_argument("--next-every", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "stages":
        return _stages_main()
    summary = campaign(args.dir, args.trials, args.seed, args.scale, next_every=args.next_every)
    return 0 if summary["survived"] == summary["injected"] and summary["injected"] else 1


if __name__ == "__main__":
    sys.exit(main())
