"""Write each department's source system and describe it for world.json (the layout other modules code against)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from world import writers
from world.departments import DEPARTMENT_TITLES
from world.licences import LICENCE_TYPES, TYPES_BY_KEY
from world.sources import Context, court, credit_drops, gongan, licence_drops, minzheng, renshe, scjg
from world.xlsx import write_xlsx

# The order tasks are listed in world.json and their manifest entries are concatenated.
TASKS = ("gongan", "scjg", "minzheng", "renshe", "court", *(f"licence_{d}" for d in licence_drops.DEPARTMENTS), "credit")
# Longest first when two processes share the work ("truth" = writing the truth Parquet files).
TASK_COST_ORDER = ("licence_zrzy", "gongan", "renshe", "truth", "licence_scjg", "licence_minzheng", "scjg",
                   "credit", "minzheng", "court", "licence_weijian", "licence_zhujian")

COURT_TOKEN_HEADER = "Authorization: Bearer <token>"


@dataclass
class TaskResult:
    """What one task produced: source descriptions, manifest entries, files written."""

    sources: list[dict[str, Any]]
    manifest: pa.Table
    files: list[str] = field(default_factory=list)
    linkage: pa.Table | None = None  # record-linkage ground truth (world.linkage.LINKAGE_SCHEMA)
    seconds: float = 0.0  # wall time of the task (reported, never written into the world)


def run(task: str, ctx: Context, out: Path) -> TaskResult:
    """Derive and write the sources of one task."""
    started = time.perf_counter()
    if task.startswith("licence_"):
        result = _publish_licences(ctx, out, task.removeprefix("licence_"))
    else:
        result = globals()[f"_publish_{task}"](ctx, out)
    result.seconds = time.perf_counter() - started
    return result


def _rel(path: Path, out: Path) -> str:
    """Path relative to the world directory, with forward slashes."""
    return path.relative_to(out).as_posix()


def _publish_gongan(ctx: Context, out: Path) -> TaskResult:
    """公安 hjrk: SQLite by default, PostgreSQL with --pg-url."""
    derived = gongan.derive(ctx)
    table = derived.tables["hjrk"]
    cfg = ctx.cfg
    if cfg.pg_url:
        writers.write_postgres(cfg.pg_url, {"hjrk": table})
        location, dialect, files = cfg.pg_url, "postgresql", []
    else:
        path = out / "gongan" / "gongan.sqlite"
        writers.write_sqlite(path, {"hjrk": table})
        location, dialect, files = _rel(path, out), "sqlite", [_rel(path, out)]
    source = {
        "id": gongan.SOURCE, "department": "湖北省公安厅", "title": "户籍人口", "kind": "sql",
        "location": location, "dialect": dialect, "table": "hjrk",
        "primary_key": ["rkid"], "replication_key": "gxsj", "natural_key": ["gmsfhm"], "rows": table.num_rows,
        "required_fields": list(gongan.REQUIRED),
        "identifier_fields": {"gmsfhm": "resident_id"},
        "date_fields": {"csrq": "past", "swrq": "past"},
        "code_fields": {"xb": {"table": "gender"}, "mz": {"table": "ethnicity"},
                        "hyzk": {"table": "marital_status"}, "hjdz_xzqh": {"table": "regions"}},
        "links": {"hyzk": "minzheng_hydj (latest registration)"},
    }
    return TaskResult([source], derived.manifest, files, derived.linkage)


def _publish_scjg(ctx: Context, out: Path) -> TaskResult:
    """市场监管 qydj and gtgsh: SQLite by default, MariaDB with --mysql-url."""
    derived = scjg.derive(ctx)
    cfg = ctx.cfg
    if cfg.mysql_url:
        writers.write_mysql(cfg.mysql_url, derived.tables)
        location, dialect, files = cfg.mysql_url, "mysql", []
    else:
        path = out / "scjg" / "scjg.sqlite"
        writers.write_sqlite(path, derived.tables)
        location, dialect, files = _rel(path, out), "sqlite", [_rel(path, out)]
    common = {"department": "湖北省市场监督管理局", "kind": "sql", "location": location, "dialect": dialect,
              "replication_key": "gxsj", "natural_key": ["tyshxydm"]}
    statuses = {"table": "enterprise_status", "values": list(scjg.STATUSES)}
    qydj = {
        "id": scjg.SOURCE_QYDJ, "title": "企业登记", "table": "qydj", "primary_key": ["qyid"], **common,
        "rows": derived.tables["qydj"].num_rows, "required_fields": list(scjg.REQUIRED_QYDJ),
        "identifier_fields": {"tyshxydm": "uscc", "fddbr_zjhm": "resident_id"},
        "date_fields": {"clrq": "past"}, "code_fields": {"xzqh": {"table": "regions"}, "djzt": statuses},
        "links": {"fddbr": "gongan_hjrk.xm via fddbr_zjhm"},
    }
    gtgsh = {
        "id": scjg.SOURCE_GTGSH, "title": "个体工商户", "table": "gtgsh", "primary_key": ["gtid"], **common,
        "rows": derived.tables["gtgsh"].num_rows, "required_fields": list(scjg.REQUIRED_GTGSH),
        "identifier_fields": {"tyshxydm": "uscc", "jyz_zjhm": "resident_id"},
        "date_fields": {"zcrq": "past"}, "code_fields": {"xzqh": {"table": "regions"}, "djzt": statuses},
        "links": {"jyz": "gongan_hjrk.xm via jyz_zjhm"},
    }
    return TaskResult([qydj, gtgsh], derived.manifest, files, derived.linkage)


def _publish_minzheng(ctx: Context, out: Path) -> TaskResult:
    """民政 hydj_<year>.csv (GBK, GB18030 or UTF-8 with BOM by year) and shzz.csv (GBK)."""
    derived = minzheng.derive(ctx)
    hydj = derived.tables["hydj"]
    files, encodings = [], {}
    for year, part in writers.grouped(hydj, derived.groups["hydj"]):
        path = out / "minzheng" / f"hydj_{year}.csv"
        encoding = minzheng.file_encoding(int(year))
        writers.write_csv(path, part, encoding)
        files.append(_rel(path, out))
        encodings[_rel(path, out)] = encoding
    shzz_path = out / "minzheng" / "shzz.csv"
    writers.write_csv(shzz_path, derived.tables["shzz"], "gbk")
    files.append(_rel(shzz_path, out))
    hydj_source = {
        "id": minzheng.SOURCE_HYDJ, "department": "湖北省民政厅", "title": "婚姻登记", "kind": "file",
        "format": "csv", "location": "minzheng/hydj_*.csv", "files": files[:-1], "encodings": encodings,
        "primary_key": ["登记编号"], "replication_key": None, "natural_key": ["证书字号"], "rows": hydj.num_rows,
        "required_fields": list(minzheng.HYDJ_REQUIRED),
        "identifier_fields": {"男方身份证号": "resident_id", "女方身份证号": "resident_id"},
        "date_fields": {"登记日期": "past"},
        "code_fields": {"登记类型": {"table": None, "values": ["结婚", "离婚"]}},
        "links": {"男方姓名": "gongan_hjrk.xm via 男方身份证号", "女方姓名": "gongan_hjrk.xm via 女方身份证号"},
    }
    shzz_source = {
        "id": minzheng.SOURCE_SHZZ, "department": "湖北省民政厅", "title": "社会组织", "kind": "file",
        "format": "csv", "location": "minzheng/shzz.csv", "files": [files[-1]], "encodings": {files[-1]: "gbk"},
        "primary_key": ["序号"], "replication_key": None, "natural_key": ["统一社会信用代码"],
        "rows": derived.tables["shzz"].num_rows, "required_fields": list(minzheng.SHZZ_REQUIRED),
        "identifier_fields": {"统一社会信用代码": "uscc"}, "date_fields": {"成立登记日期": "past"},
        "code_fields": {"组织类型": {"table": None, "values": list(minzheng.ORG_TYPES)}},
    }
    return TaskResult([hydj_source, shzz_source], derived.manifest, files, derived.linkage)


def _publish_renshe(ctx: Context, out: Path) -> TaskResult:
    """人社 sbcb.xlsx: 参保日期 is an Excel date in some rows and text in others."""
    derived = renshe.derive(ctx)
    table = derived.tables["sbcb"]
    text_rows = pa.array(derived.groups["sbcb"])
    # One column 参保日期 holding either a date cell or a text cell: split into two typed columns
    # that share a header is impossible in arrow, so write text where chosen and dates elsewhere.
    date_col = table.column("参保日期").combine_chunks()
    text_col = table.column("参保日期文本").combine_chunks()
    mixed = _mixed_date_column(date_col, text_col, text_rows)
    sheet = table.drop_columns(["参保日期", "参保日期文本"])
    sheet = sheet.add_column(sheet.column_names.index("险种") + 1, "参保日期", mixed)
    path = out / "renshe" / "sbcb.xlsx"
    sheets = write_xlsx(path, sheet, "参保人员", title="社会保险参保人员")
    source = {
        "id": renshe.SOURCE, "department": "湖北省人力资源和社会保障厅", "title": "社会保险参保", "kind": "file",
        "format": "xlsx", "location": _rel(path, out), "files": [_rel(path, out)], "sheets": sheets,
        "primary_key": ["个人编号"], "replication_key": "更新时间", "natural_key": ["公民身份号码"],
        "rows": sheet.num_rows, "required_fields": list(renshe.REQUIRED),
        "identifier_fields": {"公民身份号码": "resident_id", "单位统一社会信用代码": "uscc"},
        "date_fields": {"参保日期": "past", "出生日期": "past"},
        "code_fields": {"缴费状态": {"table": None, "values": list(renshe.PAYMENT_STATES)}, "户籍地区划": {"table": "regions"}},
        "links": {"姓名": "gongan_hjrk.xm via 公民身份号码", "单位名称": "scjg_qydj.qymc via 单位统一社会信用代码"},
    }
    return TaskResult([source], derived.manifest, [_rel(path, out)], derived.linkage)


def _mixed_date_column(dates: pa.Array, texts: pa.Array, text_rows: pa.Array) -> pa.Array:
    """A sparse union of date32 and string: the xlsx writer makes date cells or text cells by row."""
    type_ids = pa.array(np.where(np.asarray(text_rows), 1, 0).astype(np.int8))
    return pa.UnionArray.from_sparse(type_ids, [dates, texts], ["date", "text"])


def _publish_court(ctx: Context, out: Path) -> TaskResult:
    """法院 失信被执行人: the JSONL file behind the HTTP API."""
    derived = court.derive(ctx)
    table = derived.tables["sxbzxr"]
    path = out / "court" / "sxbzxr.jsonl"
    writers.write_jsonl(path, table)
    source = {
        "id": court.SOURCE, "department": "湖北省高级人民法院", "title": "失信被执行人", "kind": "http",
        "location": "/api/v1/sxbzxr", "data_file": _rel(path, out),
        "token": ctx.cfg.token,
        "auth": {"type": "bearer", "token": ctx.cfg.token, "header": COURT_TOKEN_HEADER},
        "pagination": {"style": "page", "page_param": "page", "size_param": "page_size", "first_page": 1,
                       "default_page_size": 100, "max_page_size": 1000, "order": ["updatedAt", "id"],
                       "response": {"total": "total", "page": "page", "page_size": "page_size", "records": "data"}},
        "incremental": {"param": "updated_since", "field": "updatedAt", "rule": "updatedAt >= updated_since (ISO 8601)"},
        "rate_limit": {"status": 429, "header": "Retry-After"},
        "primary_key": ["id"], "replication_key": "updatedAt", "natural_key": ["caseCode"], "rows": table.num_rows,
        "required_fields": list(court.REQUIRED), "field_names": court.FIELDS,
        "identifier_fields": {"cardNum": "resident_id or uscc (by length)"},
        "date_fields": {"regDate": "past", "publishDate": "past"},
        "links": {"cardNum": "gongan_hjrk.gmsfhm or scjg_qydj/scjg_gtgsh.tyshxydm"},
    }
    return TaskResult([source], derived.manifest, [_rel(path, out)])


def _publish_licences(ctx: Context, out: Path, dept: str) -> TaskResult:
    """One department's licence drop: JSON Lines (照面信息 nested) or CSV (照面信息 as JSON text)."""
    derived = licence_drops.derive(ctx, dept)
    table = derived.tables["licences"]
    fmt = licence_drops.file_format(dept)
    files = []
    for group, part in writers.grouped(table, derived.groups["licences"]):
        path = out / "licences" / dept / f"{group}.{fmt}"
        if fmt == "jsonl":
            writers.write_jsonl(path, part, raw=("照面信息",))
        else:
            writers.write_csv(path, part)
        files.append(_rel(path, out))
    if not files:
        # A department that issued nothing still drops a file (header only), as real exchanges do.
        for t in (t for t in LICENCE_TYPES if t.dept == dept):
            path = out / "licences" / dept / f"{t.key}_{ctx.cfg.reference_date.year}.{fmt}"
            if fmt == "jsonl":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            else:
                writers.write_csv(path, table)
            files.append(_rel(path, out))
    types = sorted({Path(f).name.split("_")[0] for f in files})
    source = {
        "id": licence_drops.source_id(dept), "department": "湖北省" + DEPARTMENT_TITLES[dept], "kind": "file",
        "title": "电子证照：" + "、".join(TYPES_BY_KEY[t].name for t in types),
        "format": fmt, "encoding": "utf-8", "location": f"licences/{dept}/*.{fmt}", "files": files,
        "licence_types": {TYPES_BY_KEY[t].name: t for t in types},
        "primary_key": ["证照标识"], "replication_key": None,
        "natural_key": ["证照类型代码", "证照编号", "持证主体代码"], "rows": table.num_rows,
        "required_fields": list(licence_drops.REQUIRED),
        "identifier_fields": {"证照标识": "licence_id", "颁发机构代码": "uscc",
                              "持证主体代码": "resident_id (111) or uscc (001)"},
        "date_fields": {"颁发日期": "past", "有效期起始日期": "past", "有效期截止日期": "validity ('长期' = no end)"},
        "code_fields": {"持证主体代码类型": {"table": "holder_id_types", "values": ["111", "001"]},
                        "证照状态": {"table": "licence_status", "values": ["有效", "已注销", "已吊销", "已过期"]}},
        "nested_fields": {"照面信息": "object" if fmt == "jsonl" else "JSON text"},
        "links": {"持证主体代码": "gongan_hjrk.gmsfhm, scjg_qydj/scjg_gtgsh.tyshxydm or minzheng_shzz.统一社会信用代码"},
    }
    return TaskResult([source], derived.manifest, files)


def _publish_credit(ctx: Context, out: Path) -> TaskResult:
    """Credit drops: credit/<dept>/<kind>.csv (UTF-8)."""
    sources, manifests, files = [], [], []
    for kind, spec in credit_drops.KINDS.items():
        derived = credit_drops.derive(ctx, kind)
        table = derived.tables[kind]
        kind_files = []
        for dept, part in writers.grouped(table, derived.groups[kind]):
            path = out / "credit" / str(dept) / f"{kind}.csv"
            writers.write_csv(path, part)
            kind_files.append(_rel(path, out))
        files.extend(kind_files)
        manifests.append(derived.manifest)
        depts = [f.split("/")[1] for f in kind_files]
        code_fields: dict[str, Any] = {}
        if spec.category:
            code_fields[spec.category] = {"table": "subject_categories", "values": ["01", "02", "03", "04"]}
        if kind == "xzxk":
            code_fields["当前状态"] = {"table": "credit_status", "values": ["1", "2"]}
        identifier_fields = {"统一社会信用代码": "uscc"}
        if spec.authority_code:
            identifier_fields[spec.authority_code] = "uscc"
        if kind == "xzcf":
            identifier_fields["证件号码"] = "resident_id"
        sources.append({
            "id": credit_drops.source_id(kind), "department": "、".join("湖北省" + DEPARTMENT_TITLES[d] for d in depts),
            "title": spec.title, "kind": "file", "format": "csv", "encoding": "utf-8",
            "location": f"credit/*/{kind}.csv", "files": kind_files,
            "primary_key": ["记录编号"], "replication_key": None, "natural_key": list(spec.natural_key),
            "rows": table.num_rows, "required_fields": list(spec.required),
            "identifier_fields": identifier_fields,
            "date_fields": {f: ("past" if f in spec.past_date_fields else "validity") for f in spec.date_fields},
            "code_fields": code_fields,
            "links": {"统一社会信用代码": "scjg_qydj/scjg_gtgsh.tyshxydm or minzheng_shzz.统一社会信用代码",
                      **({"证件号码": "gongan_hjrk.gmsfhm"} if kind == "xzcf" else {})},
        })
    return TaskResult(sources, pa.concat_tables(manifests), files)

