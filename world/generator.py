"""Generate a whole simulated province: truth, department sources, manifest and world.json."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from world import linkage, publish, truth
from world.config import DATE_STYLE_MIX, DEFECT_RATES, MESSINESS_RATES, WorldConfig
from world.defects import MANIFEST_SCHEMA
from world.regions import PROVINCE_NAME
from world.sources import Context
from world.text import DATE_STYLES

FORMAT_VERSION = 1
# Everything generate() owns inside the output directory (removed before a new run).
OWNED = ("truth", "gongan", "scjg", "minzheng", "renshe", "court", "licences", "credit",
         "manifest.parquet", "manifest.jsonl", "linkage_truth.parquet", "world.json")
PARALLEL_FROM_SCALE = 0.05  # below this, worker start-up costs more than it saves
# Electronic licences start in 2018 and electronic marriage records in 2004: the world's today comes after.
EARLIEST_REFERENCE = dt.date(2019, 1, 1)
LATEST_REFERENCE = dt.date(2060, 12, 31)


class WorldError(Exception):
    """A world cannot be generated as asked (bad directory, bad parameter)."""


def generate(
    out: Path | str, *, scale: float = 0.01, seed: int = 1, reference_date: dt.date | None = None,
    defect_rate: float = 1.0, pg_url: str | None = None, mysql_url: str | None = None, workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate a world into `out` and return its world.json description.

    Same arguments ⇒ byte-identical files. `pg_url` puts 公安 hjrk into PostgreSQL and `mysql_url`
    puts 市场监管 qydj/gtgsh into MariaDB instead of the default SQLite files. `progress` receives
    one line per stage with its duration (durations are never written into the world).
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    if scale <= 0:
        raise WorldError("规模必须大于0 scale must be positive")
    if defect_rate < 0:
        raise WorldError("缺陷率倍数不能为负 defect rate must not be negative")
    if reference_date is not None and not EARLIEST_REFERENCE <= reference_date <= LATEST_REFERENCE:
        raise WorldError(f"基准日期须在 {EARLIEST_REFERENCE} 与 {LATEST_REFERENCE} 之间 reference date out of range")
    cfg = WorldConfig(scale=scale, seed=seed, reference_date=reference_date or WorldConfig.reference_date,
                      defect_rate=defect_rate, pg_url=pg_url, mysql_url=mysql_url, workers=workers)
    out = Path(out)
    _prepare(out)
    world_truth = truth.build(cfg, say)
    say(f"真实数据 truth: {time.perf_counter() - started:.1f} s")
    results = _run_tasks(cfg, world_truth, out)
    for task in publish.TASKS:
        say(f"  {task}: {results[task].seconds:.1f} s")
    say(f"数据源 sources: {time.perf_counter() - started:.1f} s")
    truth_files = {stem: f"truth/{stem}.parquet" for stem in world_truth.tables()}
    manifest = pa.concat_tables([results[t].manifest for t in publish.TASKS]) if results else MANIFEST_SCHEMA.empty_table()
    pq.write_table(manifest, out / "manifest.parquet", compression="zstd")
    _write_manifest_jsonl(manifest, out / "manifest.jsonl")
    linkage_truth = pa.concat_tables([results[t].linkage for t in publish.TASKS if results[t].linkage is not None]
                                     or [linkage.empty()])
    pq.write_table(linkage_truth, out / "linkage_truth.parquet", compression="zstd")
    description = _describe(cfg, world_truth, truth_files, results, manifest)
    description["linkage_truth"] = {"parquet": "linkage_truth.parquet", "cases": linkage_truth.num_rows,
                                    "columns": linkage.LINKAGE_SCHEMA.names}
    (out / "world.json").write_text(json.dumps(description, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    say(f"完成 done: {time.perf_counter() - started:.1f} s")
    return description


def _prepare(out: Path) -> None:
    """Empty the parts of out that a previous world left; refuse a foreign non-empty directory."""
    if out.exists() and not out.is_dir():
        raise WorldError(f"输出路径不是目录 output path is not a directory: {out}")
    if out.exists() and any(out.iterdir()) and not (out / "world.json").exists():
        raise WorldError(f"输出目录非空且不是模拟省目录 output directory is not empty and holds no world: {out}")
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _run_tasks(cfg: WorldConfig, world_truth: truth.Truth, out: Path) -> dict[str, publish.TaskResult]:
    """Write the truth and run every source task, in two forked processes for big worlds.

    Every task draws from its own random streams, so results never depend on how tasks are split.
    """
    workers = cfg.workers if cfg.workers is not None else (2 if cfg.scale >= PARALLEL_FROM_SCALE else 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        truth.write(world_truth, out / "truth")
        ctx = Context(cfg, world_truth)
        return {task: publish.run(task, ctx, out) for task in publish.TASKS}
    # Forked workers inherit the truth in memory (copy-on-write): nothing is serialised or re-read.
    _FORKED.update(cfg=cfg, truth=world_truth, out=out)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {task: pool.submit(_task_in_worker, task) for task in publish.TASK_COST_ORDER}
            futures["truth"].result()
            return {task: futures[task].result() for task in publish.TASKS}
    finally:
        _FORKED.clear()


_FORKED: dict[str, Any] = {}


def _task_in_worker(task: str) -> publish.TaskResult | None:
    """Worker side: one task on the inherited truth (the context is built once per process)."""
    if task == "truth":
        truth.write(_FORKED["truth"], _FORKED["out"] / "truth")
        return None
    if "ctx" not in _FORKED:
        _FORKED["ctx"] = Context(_FORKED["cfg"], _FORKED["truth"])
    return publish.run(task, _FORKED["ctx"], _FORKED["out"])


def _write_manifest_jsonl(manifest: pa.Table, path: Path) -> None:
    """The manifest as JSON Lines (same rows and order as manifest.parquet)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in manifest.to_pylist():
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _describe(cfg: WorldConfig, world_truth: truth.Truth, truth_files: dict[str, str],
              results: dict[str, publish.TaskResult], manifest: pa.Table) -> dict[str, Any]:
    """The world.json document."""
    sources = [s for task in publish.TASKS for s in results[task].sources]
    kinds = manifest.column("defect_kind").to_pylist()
    per_source: dict[str, dict[str, int]] = {}
    for source, kind in zip(manifest.column("source").to_pylist(), kinds):
        per_source.setdefault(source, {}).setdefault(kind, 0)
        per_source[source][kind] += 1
    return {
        "format_version": FORMAT_VERSION,
        "province": {"code": "420000", "name": PROVINCE_NAME},
        **cfg.described(),
        "court_token": cfg.token,
        "counts": {
            "truth": {name: table.num_rows for name, table in world_truth.tables().items()},
            "sources": {s["id"]: s["rows"] for s in sources},
            "defects": manifest.num_rows,
        },
        "truth": truth_files,
        "sources": sources,
        "manifest": {
            "parquet": "manifest.parquet", "jsonl": "manifest.jsonl", "entries": manifest.num_rows, "rows": manifest.num_rows,
            "columns": MANIFEST_SCHEMA.names,
            "by_source_and_kind": dict(sorted(per_source.items())),
        },
        "defect_rates": {kind: round(rate * cfg.defect_rate, 6) for kind, rate in DEFECT_RATES.items()},
        "messiness": {
            "rates": MESSINESS_RATES,
            "date_styles": list(DATE_STYLES),
            "date_style_mix": {k: list(v) for k, v in DATE_STYLE_MIX.items()},
            "renshe_text_date_share": publish.renshe.TEXT_DATE_SHARE,
            "gender_as_text": {"gongan_hjrk.xb": publish.gongan.GENDER_TEXT_SHARE, "court_sxbzxr.sexName": 1.0,
                               "licence_minzheng 照面信息.性别": 1.0},
            "encodings": "minzheng hydj: GBK up to 2018, UTF-8 with BOM in 2019, GB18030 from 2020; shzz GBK; "
                         "everything else UTF-8",
        },
        "conventions": CONVENTIONS,
    }


CONVENTIONS = {
    "one_defect_per_record": "每条记录至多注入一个缺陷；清单之外的记录都是干净的（杂乱格式不算缺陷）",
    "whitespace": "姓名、名称、地址中的空白（含全角空格）都不是数据的一部分：去掉首尾空白并删除中文字符之间的空白",
    "full_width": "全角数字和字母按 NFKC 规整为半角",
    "traditional": "繁体字用 zhconv 转为简体（zh-hans）后与原值一致",
    "legacy_ids": "15位身份号码是1900年代出生者的合法旧号码：插入19并计算校验位即得18位号码",
    "id_regions": "身份号码的地址码在出生年份有效（python-stdnum 规则）；户籍地址码 hjdz_xzqh 为现行县级代码",
    "dates": "text dates use the styles in messiness.date_styles; 'past' fields must not be after reference_date, "
             "'validity' fields may be",
    "long_term": "证照有效期截止日期 '长期' = 无截止日期；双公示有效期至 2099-12-31 = 长期",
    "marital_consistency": "民政最近一次登记（按登记日期）为结婚 ⇒ 公安 hyzk ∈ {20,21,22,23,30}；为离婚 ⇒ hyzk = 40",
    "conflicts": "cross_source_conflict = 两个部门对同一主体（按身份号码/统一社会信用代码关联）的同一事实都有值且规整后不同",
    "orphans": "orphan_holder/orphan_subject: 代码本身有效，但在人口库（公安）和法人库（市场监管、民政）中都不存在",
    "duplicates": "duplicate = 同一来源内与另一记录自然键相同（规整后）；清单列出后出现的那一条",
    "expired": "证照状态为有效但有效期截止日期早于 reference_date",
    "record_key": "manifest.record_key = 来源自己的主键（字符串）",
}
