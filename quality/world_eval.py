"""How well the rules find the simulated province's defects: recall and precision per defect kind.

`hub quality evaluate --world DIR` reads every registered source of a generated world through the real
connectors (in-process, no Airflow, nothing written to the hub database), standardises it, runs every rule
with the world's reference date, and compares the records the rules flagged with the ground-truth manifest
(world/manifest.parquet: source, record_key, field, defect_kind, detail). Rows the manifest does not list are
clean, so a clean row that a rule quarantines is counted separately: the target is zero.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.registry import SourceSpec, all_sources
from quality.catalogue import Rule, load_catalogue
from quality.engine import QUARANTINE, Evaluation, evaluate
from quality.frame import RuleContext
from quality.references import build_references
from schemas.mapping import standardise

# Which defect kind of the manifest a rule's check finds (None: the world injects nothing it could find).
KIND_OF_CHECK = {
    "identifier": "bad_check_char",
    "uscc_check": "bad_check_char",
    "id_birth": "id_birth_mismatch",
    "id_gender": "id_gender_mismatch",
    "id_gender_fixed": "id_gender_mismatch",
    "date_not_future": "future_date",
    "required": "missing_required",
    "any_required": "missing_required",
    "duplicate": "duplicate",
    "compare_person_name": "cross_source_conflict",
    "compare_entity_name": "cross_source_conflict",
    "compare_marital_status": "cross_source_conflict",
    "expired_still_valid": "expired_still_valid",
    "allowed_values": "invalid_code",
    "code_table": "invalid_code",
}


class WorldError(ValueError):
    """The folder is not a generated world, or one of its sources cannot be read."""


def defect_kind(rule: Rule) -> str | None:
    """The manifest defect kind a rule detects."""
    if rule.check == "code_table" and rule.params.get("table") == "regions":
        return "unknown_region"
    if rule.check == "subject_exists":
        return "orphan_holder" if rule.library == "licence" else "orphan_subject"
    return KIND_OF_CHECK.get(rule.check)


def read_description(world_dir: Path) -> dict:
    """world.json of a generated world."""
    path = world_dir / "world.json"
    if not path.is_file():
        raise WorldError(f"不是模拟省份目录 not a generated world (no world.json): {world_dir}")
    return json.loads(path.read_text(encoding="utf-8"))


def _connector(spec: SourceSpec, source: dict, world_dir: Path, work_dir: Path):
    """A connector reading one source of the world directly (credentials of the simulated province only)."""
    from connectors.files import file_connector
    from connectors.sql import SqlConnector
    from hub.pipeline import drop_folder

    if spec.kind == "sql":
        location = str(source["location"])
        url = location if "://" in location else f"sqlite:///{(world_dir / location).resolve()}"
        return SqlConnector(spec.id, url, spec.table or spec.id, spec.primary_key, spec.replication_key)
    if spec.kind == "file":
        return file_connector(spec, {"extra": {"path": str(drop_folder(world_dir, str(source["location"])))}}, work_dir)
    # HTTP: the world's API serves court/…jsonl page by page; reading the same records from the file is
    # equivalent for measuring rules, and needs no server.
    data_file = world_dir / str(source.get("data_file", ""))
    if not data_file.is_file():
        raise WorldError(f"{spec.id}: 找不到接口数据文件 API data file not found: {data_file}")
    as_file = dataclasses.replace(spec, kind="file", options={"glob": data_file.name, "format": "jsonl"})
    return file_connector(as_file, {"extra": {"path": str(data_file.parent)}}, work_dir)


def read_sources(world_dir: Path, run_id: str = "evaluate", only: set[str] | None = None) -> dict[str, pa.Table]:
    """Every registered source of the world (or only some), collected and standardised in memory, by source id."""
    description = read_description(world_dir)
    located = {s["id"]: s for s in description["sources"]}
    tables: dict[str, pa.Table] = {}
    with tempfile.TemporaryDirectory(prefix="hub-evaluate-") as work:
        for spec in all_sources():
            if spec.id not in located or (only is not None and spec.id not in only):
                continue
            connector = _connector(spec, located[spec.id], world_dir, Path(work))
            try:
                schema = connector.arrow_schema()
                raw = pa.Table.from_batches(list(connector.read_batches()), schema=schema)
            finally:
                close = getattr(connector, "close", None)
                if close:
                    close()
            tables[spec.id] = standardise(raw, spec, run_id)
    return tables


def evaluate_tables(tables: dict[str, pa.Table], reference_date: dt.date) -> dict[str, Evaluation]:
    """Every source's batch through its library's rules, with references built from the anchors."""
    references = build_references(tables, reference_date)
    out = {}
    specs = {spec.id: spec for spec in all_sources()}
    for source_id, table in tables.items():
        catalogue = load_catalogue(specs[source_id].library)
        context = RuleContext(source_id, "evaluate", reference_date, catalogue, references)
        out[source_id] = evaluate(table, context)
    return out


def _flagged(evaluations: dict[str, Evaluation]) -> pa.Table:
    """(source, record_key, defect_kind, rule_id, field, severity) of every finding with a defect kind."""
    parts = []
    for source_id, evaluation in evaluations.items():
        findings = evaluation.findings
        if not findings.num_rows:
            continue
        kinds = {rule.id: defect_kind(rule) for rule in evaluation.rules}
        parts.append(pa.table({
            "source": pa.array([source_id] * findings.num_rows, pa.string()),
            "record_key": findings.column("source_key"),
            "defect_kind": pa.array([kinds[r] for r in findings.column("rule_id").to_pylist()], pa.string()),
            "rule_id": findings.column("rule_id"),
            "field": findings.column("field"),
            "severity": findings.column("severity"),
        }))
    return pa.concat_tables(parts) if parts else pa.table({n: pa.array([], pa.string()) for n in
                                                           ("source", "record_key", "defect_kind", "rule_id", "field", "severity")})


def compare_with_manifest(evaluations: dict[str, Evaluation], manifest: pa.Table) -> dict:
    """Recall and precision per defect kind (record level), and clean rows wrongly quarantined."""
    flagged = _flagged(evaluations)
    truth = {(s, k, d) for s, k, d in zip(*(manifest.column(c).to_pylist() for c in ("source", "record_key", "defect_kind")))}
    found = {(s, k, d) for s, k, d in zip(*(flagged.column(c).to_pylist() for c in ("source", "record_key", "defect_kind"))) if d}
    dirty = {(s, k) for s, k, _ in truth}
    kinds = sorted({d for _, _, d in truth} | {d for _, _, d in found})
    per_kind = {}
    for kind in kinds:
        t = {x for x in truth if x[2] == kind}
        f = {x for x in found if x[2] == kind}
        hit = len(t & f)
        per_kind[kind] = {"manifest": len(t), "found": len(f), "true_positive": hit,
                          "recall": round(hit / len(t), 4) if t else None, "precision": round(hit / len(f), 4) if f else None,
                          "missed": sorted(f"{s}/{k}" for s, k, _ in t - f)[:10], "false": sorted(f"{s}/{k}" for s, k, _ in f - t)[:10]}
    quarantined_clean, flagged_clean, rows = [], set(), 0
    for source_id, evaluation in evaluations.items():
        rows += evaluation.rows
        for key in evaluation.source_keys.filter(pa.array(evaluation.verdict == QUARANTINE)).to_pylist():
            if (source_id, key) not in dirty:
                quarantined_clean.append(f"{source_id}/{key}")
    for s, k in zip(flagged.column("source").to_pylist(), flagged.column("record_key").to_pylist()):
        if (s, k) not in dirty:
            flagged_clean.add(f"{s}/{k}")
    unmapped = pc.value_counts(flagged.filter(pc.is_null(flagged.column("defect_kind"))).column("rule_id")).to_pylist() if flagged.num_rows else []
    return {"rows": rows, "manifest_entries": manifest.num_rows, "kinds": per_kind,
            "clean_rows_quarantined": len(quarantined_clean), "clean_rows_quarantined_examples": sorted(quarantined_clean)[:10],
            "clean_rows_flagged": len(flagged_clean), "clean_rows_flagged_examples": sorted(flagged_clean)[:10],
            "findings_without_defect_kind": {v["values"]: v["counts"] for v in unmapped}}


def evaluate_world(world_dir: Path) -> dict:
    """The whole evaluation of one generated world, as a JSON-ready dict."""
    world_dir = Path(world_dir)
    description = read_description(world_dir)
    reference_date = dt.date.fromisoformat(description["reference_date"])
    started = time.perf_counter()
    tables = read_sources(world_dir)
    read_seconds = time.perf_counter() - started
    evaluations = evaluate_tables(tables, reference_date)
    manifest = pq.read_table(world_dir / description.get("manifest", {}).get("parquet", "manifest.parquet"))
    result = compare_with_manifest(evaluations, manifest)
    worst = min((v["recall"] or 0, v["precision"] or 0) for v in result["kinds"].values()) if result["kinds"] else (None, None)
    return {"world": str(world_dir), "scale": description.get("scale"), "seed": description.get("seed"),
            "reference_date": reference_date.isoformat(), **result,
            "target_met": bool(result["kinds"]) and min(worst) >= 0.99 and result["clean_rows_quarantined"] == 0,
            "seconds": {"collect_and_standardise": round(read_seconds, 2),
                        "rules": round(sum(e.seconds for e in evaluations.values()), 2)},
            "skipped_rules": {s: e.skipped for s, e in evaluations.items() if e.skipped}}


def kind_rows(result: dict) -> list[str]:
    """The per-kind table as aligned text lines (for people; the CLI prints JSON)."""
    lines = [f"{'defect kind':<24}{'manifest':>9}{'found':>7}{'recall':>8}{'precision':>10}"]
    for kind, row in result["kinds"].items():
        lines.append(f"{kind:<24}{row['manifest']:>9}{row['found']:>7}{row['recall'] if row['recall'] is not None else '-':>8}"
                     f"{row['precision'] if row['precision'] is not None else '-':>10}")
    return lines


if __name__ == "__main__":  # pragma: no cover - developer convenience
    import sys

    outcome = evaluate_world(Path(sys.argv[1]))
    print("\n".join(kind_rows(outcome)))
    print(json.dumps({k: v for k, v in outcome.items() if k != "kinds"}, ensure_ascii=False, indent=1))
