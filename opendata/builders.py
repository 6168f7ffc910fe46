"""How each open dataset is read from the base libraries and de-identified (one function per `builder` name).

开放数据集构建：从基础库读取、去标识化。Natural persons' ID numbers are never read (only their HMAC person ids,
turned into keyed pseudonyms); names of natural persons are masked (段**) where a dataset must mention them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cache, cached_property
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from hub.crypto import mask_name
from hub.models import CreditRecord, LegalEntity, Licence, Person
from libraries.bulk import driver_rows, typed_columns
from libraries.credit import content_amount, content_date
from opendata.datasets import DatasetSpec
from opendata.privacy import (UNKNOWN, Pseudonymiser, Step, age_bands, k_anonymise, labels, region_names, regions_at,
                              suppress_small_cells, widen_age_band)

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "date": pa.date32(), "boolean": pa.bool_(),
}
ENTITY_KINDS = {"enterprise": "企业", "individual_business": "个体工商户", "farmer_coop": "农民专业合作社",
                "social_org": "社会组织", "institution": "事业单位", "government": "机关", "other": "其他"}
NATURAL_PERSON, INDIVIDUAL_BUSINESS = "01", "04"
BATCH_ROWS = 50_000  # rows per read batch: memory is bounded by the batch, not by the library
WEIGHT = "persons"  # people per quasi-identifier combination (population datasets work on counts)


@dataclass(frozen=True)
class Field:
    """One output column: name (ASCII), Frictionless type, Chinese title."""

    name: str
    type: str
    title: str
    description: str = ""


@dataclass
class BuildContext:
    """What a builder gets: the hub database, the dataset, the release's reference date."""

    engine: sa.Engine
    spec: DatasetSpec
    as_of: date

    @cached_property
    def pseudonymiser(self) -> Pseudonymiser:
        """Keyed pseudonyms under the hub key ring."""
        return Pseudonymiser()


@dataclass
class Built:
    """A builder's result: the rows (an Arrow table, or a pandas frame a custom builder or a test edits), their
    columns, and the provenance of what was read and changed.

    The builders here return Arrow tables built batch by batch (no per-row dicts, no pandas for large datasets);
    `frame` converts to pandas on first use so code that edits rows as a DataFrame keeps working.
    """

    rows: pa.Table | pd.DataFrame
    fields: list[Field]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (converted once; later edits are what `table()` returns)."""
        if isinstance(self.rows, pa.Table):
            self.rows = self.rows.to_pandas(date_as_object=True)
        return self.rows

    @frame.setter
    def frame(self, value: pd.DataFrame) -> None:
        self.rows = value

    def table(self) -> pa.Table:
        """The rows as an Arrow table with the declared column types, in declared order."""
        if isinstance(self.rows, pa.Table):
            return _arrow_table(self.rows, self.fields)
        arrays = []
        for f in self.fields:
            values = self.frame[f.name].tolist() if f.name in self.frame.columns else [None] * len(self.frame)
            values = [None if _missing(v) else v for v in values]
            if f.type == "number":
                values = [None if v is None else float(v) for v in values]
            elif f.type == "integer":
                values = [None if v is None else int(v) for v in values]
            elif f.type == "string":
                values = [None if v is None else str(v) for v in values]
            arrays.append(pa.array(values, type=ARROW_TYPES[f.type]))
        return pa.Table.from_arrays(arrays, names=[f.name for f in self.fields])


def _arrow_table(table: pa.Table, fields: list[Field]) -> pa.Table:
    """An Arrow table in the declared columns and types (absent columns all null)."""
    arrays = []
    for f in fields:
        kind = ARROW_TYPES[f.type]
        if f.name in table.column_names:
            column = table.column(f.name)
            arrays.append(column if column.type == kind else column.cast(kind))
        else:
            arrays.append(pa.nulls(table.num_rows, kind))
    return pa.Table.from_arrays(arrays, names=[f.name for f in fields])


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pandas NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _batches(engine: sa.Engine, query: sa.Select) -> Iterator[dict[str, list[Any]]]:
    """A query's rows streamed in batches of BATCH_ROWS, each as {column: values} (bounded memory, no row dicts),
    typed as SQLAlchemy types them."""
    with engine.connect() as connection:
        yield from typed_columns(connection, query, BATCH_ROWS)


def _as_date(value: Any) -> date | None:
    """A date as the database driver gives it (SQLite: ISO text) as a date."""
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value


def _text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A JSON column read as its stored text (parsed once per distinct value instead of once per row)."""
    return sa.cast(column, sa.Text).label(column.name)


def _json(text: Any) -> Any:
    """A JSON text as Python (orjson; the stdlib parser for what orjson refuses, such as NaN)."""
    if text is None or not isinstance(text, (str, bytes)):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class Lineage:
    """The source runs and quality ruleset versions of the rows read, accumulated batch by batch."""

    def __init__(self, library: str) -> None:
        self.library = library
        self.rows = 0
        self.runs: Counter[tuple[Any, Any]] = Counter()
        self.rulesets: set[str] = set()

    def add(self, batch: dict[str, list[Any]]) -> None:
        """Count a batch's (source, run) pairs; read each distinct lineage text of the batch once."""
        self.rows += len(batch["source_id"])
        self.runs.update(zip(batch["source_id"], batch["run_id"]))
        for text in set(batch.get("lineage") or ()):
            value = _json(text)  # per field (a dict) or compact (a list of entries): hub/lineage.py
            for entry in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
                if isinstance(entry, dict) and entry.get("ruleset_version"):
                    self.rulesets.add(str(entry["ruleset_version"]))

    def summary(self) -> dict[str, Any]:
        """The provenance record (same shape as lineage_summary)."""
        return {"library": self.library, "rows_read": self.rows,
                "source_runs": [{"source_id": s, "run_id": r, "rows": n}
                                for (s, r), n in sorted(self.runs.items(), key=lambda i: (str(i[0][0]), str(i[0][1])))],
                "ruleset_versions": sorted(self.rulesets)}


def lineage_summary(rows: list[dict[str, Any]], library: str) -> dict[str, Any]:
    """Which source runs last wrote the rows read, and the quality ruleset versions in their field lineage."""
    summary = Lineage(library)
    summary.add({"source_id": [r.get("source_id") for r in rows], "run_id": [r.get("run_id") for r in rows],
                 "lineage": [json.dumps(r.get("lineage"), sort_keys=True) for r in rows]})
    return summary.summary()


def read_lineage(engine: sa.Engine, query: sa.Select, library: str) -> dict[str, Any]:
    """lineage_summary of the rows a query reads, computed by the database: (source, run) counts with GROUP BY, the
    ruleset versions from the field lineage with the JSON functions of SQLite and PostgreSQL (other databases: the
    lineage texts streamed in batches). The lineage never crosses into Python row by row. Both stored forms (per
    field and compact, hub/lineage.py) are read: SQLite's json_each walks either; PostgreSQL's takes the objects and
    json_array_elements the arrays."""
    t = query.get_final_froms()[0]
    where = query.whereclause if query.whereclause is not None else sa.true()
    summary = Lineage(library)
    with engine.connect() as connection:
        runs = connection.execute(sa.select(t.c.source_id, t.c.run_id, sa.func.count()).where(where)
                                  .group_by(t.c.source_id, t.c.run_id)).all()
        summary.rows = sum(n for _, _, n in runs)
        summary.runs.update({(s, r): n for s, r, n in runs})
        dialect = engine.dialect.name
        if dialect == "sqlite":  # json_each walks objects (per field) and arrays (compact) alike
            entries = sa.func.json_each(t.c.lineage).table_valued("value", "type", name="entry")
            version = sa.func.json_extract(entries.c.value, "$.ruleset_version")
            found = connection.execute(sa.select(version).select_from(t).join(entries, sa.true())
                                       .where(where, entries.c.type == "object").distinct()).scalars().all()
            summary.rulesets.update(str(v) for v in found if v)
            return summary.summary()
        if dialect == "postgresql":  # json_each takes objects only: arrays go through json_array_elements
            for kind, each in (("object", sa.func.json_each), ("array", sa.func.json_array_elements)):
                entries = each(t.c.lineage).table_valued("value", name="entry")
                version = entries.c.value.op("->>")("ruleset_version")
                scope = sa.and_(where, sa.func.json_typeof(t.c.lineage) == kind, sa.func.json_typeof(entries.c.value) == "object")
                found = connection.execute(sa.select(version).select_from(t).join(entries, sa.true()).where(scope)
                                           .distinct()).scalars().all()
                summary.rulesets.update(str(v) for v in found if v)
            return summary.summary()
    for b in _batches(engine, sa.select(t.c.source_id, t.c.run_id, _text(t.c.lineage)).where(where)):
        summary.add({"source_id": [], "run_id": [], "lineage": b["lineage"]})
    return summary.summary()


def _mapped(values: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """`convert` applied once per distinct value (code labels, region names: few distinct values, many rows)."""
    cache: dict[Any, Any] = {}
    out = []
    for v in values:
        if v not in cache:
            cache[v] = convert(v)
        out.append(cache[v])
    return out


def _labels(values: list[Any], table_name: str, missing: str = UNKNOWN) -> list[str]:
    """Code-table labels (privacy.labels), looked up once per distinct code."""
    return _mapped(values, lambda v: labels([v], table_name, missing)[0])


def _region_names(codes: list[Any]) -> list[str]:
    """Region names (privacy.region_names), looked up once per distinct code."""
    return _mapped(codes, lambda c: region_names([c])[0])


def _number(value: Any) -> float | None:
    """A decimal amount from JSON content as a float (None when absent or not a number)."""
    amount = content_amount(value)
    return None if amount is None else float(amount)


# ---------------------------------------------------------------------------------------------
# 法人登记信息
# ---------------------------------------------------------------------------------------------

LEGAL_ENTITY_FIELDS = [
    Field("uscc", "string", "统一社会信用代码"), Field("name", "string", "名称"), Field("entity_kind", "string", "主体类别"),
    Field("entity_type", "string", "类型"), Field("legal_representative", "string", "法定代表人（负责人、经营者）",
                                                   "个体工商户经营者姓名已脱敏"),
    Field("registered_capital", "number", "注册资本（万元）"), Field("established_date", "date", "成立日期"),
    Field("registration_authority", "string", "登记机关"), Field("status", "string", "登记状态"),
    Field("address", "string", "住所"), Field("region_code", "string", "住所行政区划代码"),
    Field("region_name", "string", "住所行政区划"), Field("business_scope", "string", "经营范围"),
]


def _legal_entity_query() -> sa.Select:
    """What the registry reads: registration facts (never the representative's ID number or person id)."""
    t = LegalEntity.__table__
    return sa.select(t.c.uscc, t.c.name, t.c.entity_kind, t.c.entity_type, t.c.legal_rep_name,
                     t.c.registered_capital, t.c.established_date, t.c.registration_authority, t.c.status,
                     t.c.address, t.c.region_code, t.c.business_scope).order_by(t.c.uscc)


def legal_entity_registry(ctx: BuildContext) -> Built:
    """Registration facts of every legal entity; operators of individual businesses masked, no ID numbers."""
    masked = 0
    parts = []
    for b in _batches(ctx.engine, _legal_entity_query()):
        reps = b["legal_rep_name"]
        for i, kind in enumerate(b["entity_kind"]):
            if kind == "individual_business" and reps[i]:
                reps[i] = mask_name(reps[i])
                masked += 1
        codes = b["region_code"]
        parts.append(_batch_table(LEGAL_ENTITY_FIELDS, {
            "uscc": b["uscc"], "name": b["name"], "entity_kind": [ENTITY_KINDS.get(k, k) for k in b["entity_kind"]],
            "entity_type": b["entity_type"], "legal_representative": reps,
            "registered_capital": [None if v is None else float(v) for v in b["registered_capital"]],
            "established_date": b["established_date"], "registration_authority": b["registration_authority"],
            "status": b["status"], "address": b["address"], "region_code": codes,
            "region_name": [n if isinstance(c, str) and c else None for c, n in zip(codes, _region_names(codes))],
            "business_scope": b["business_scope"]}))
    return Built(_concat(parts, LEGAL_ENTITY_FIELDS), LEGAL_ENTITY_FIELDS, {
        "sources": [read_lineage(ctx.engine, _legal_entity_query(), "legal_entity")],
        "dropped_columns": ["legal_rep_person_id", "legal_rep_id_enc（法定代表人证件号码）"],
        "masked": [{"column": "legal_representative", "rows": masked, "rule": "个体工商户经营者姓名脱敏（保留姓氏）"}],
    })


def _batch_table(fields: list[Field], columns: dict[str, list[Any]]) -> pa.Table:
    """One batch of output rows as an Arrow table of the declared types."""
    return pa.Table.from_arrays([pa.array(columns[f.name], type=ARROW_TYPES[f.type]) for f in fields],
                                names=[f.name for f in fields])


def _concat(parts: list[pa.Table], fields: list[Field]) -> pa.Table:
    """The batches as one table (an empty table of the declared schema when nothing was read)."""
    if not parts:
        return pa.schema([(f.name, ARROW_TYPES[f.type]) for f in fields]).empty_table()
    return pa.concat_tables(parts).combine_chunks()


# ---------------------------------------------------------------------------------------------
# 双公示：行政许可、行政处罚
# ---------------------------------------------------------------------------------------------

SUBJECT_FIELDS = [
    Field("record_id", "string", "记录标识"), Field("subject_name", "string", "行政相对人名称", "自然人姓名已脱敏"),
    Field("subject_kind", "string", "行政相对人类别"), Field("subject_code", "string", "统一社会信用代码"),
    Field("subject_pseudonym", "string", "自然人主体假名标识", "由枢纽密钥计算的 HMAC，跨版本稳定，不可还原"),
    Field("legal_representative", "string", "法定代表人", "个体工商户经营者姓名已脱敏"),
]
LICENSING_FIELDS = SUBJECT_FIELDS + [
    Field("permit_document_name", "string", "行政许可决定文书名称"), Field("decision_no", "string", "行政许可决定文书号"),
    Field("permit_category", "string", "许可类别"), Field("permit_certificate_name", "string", "许可证书名称"),
    Field("permit_number", "string", "许可编号"), Field("permit_content", "string", "许可内容"),
    Field("decision_date", "date", "许可决定日期"), Field("permit_valid_from", "date", "有效期自"),
    Field("permit_valid_to", "date", "有效期至"), Field("authority", "string", "许可机关"),
    Field("authority_code", "string", "许可机关统一社会信用代码"), Field("status", "string", "当前状态"),
    Field("data_source_unit", "string", "数据来源单位"), Field("data_source_unit_code", "string", "数据来源单位统一社会信用代码"),
]
PENALTY_FIELDS = SUBJECT_FIELDS + [
    Field("decision_no", "string", "行政处罚决定书文号"), Field("violation_type", "string", "违法行为类型"),
    Field("violation_facts", "string", "违法事实"), Field("penalty_basis", "string", "处罚依据"),
    Field("penalty_category", "string", "处罚类别"), Field("penalty_content", "string", "处罚内容"),
    Field("fine_amount", "number", "罚款金额（万元）"), Field("confiscation_amount", "number", "没收违法所得、没收非法财物的金额（万元）"),
    Field("decision_date", "date", "处罚决定日期"), Field("penalty_valid_to", "date", "处罚有效期"),
    Field("publicity_end_date", "date", "公示截止期"), Field("authority", "string", "处罚机关"),
    Field("authority_code", "string", "处罚机关统一社会信用代码"), Field("status", "string", "当前状态"),
    Field("data_source_unit", "string", "数据来源单位"), Field("data_source_unit_code", "string", "数据来源单位统一社会信用代码"),
]
DATE_CONTENT = {"permit_valid_from", "permit_valid_to", "penalty_valid_to", "publicity_end_date"}
NUMBER_CONTENT = {"fine_amount", "confiscation_amount"}
CODED_CONTENT = {"permit_category": "licence_categories", "penalty_category": "penalty_categories"}


def _credit_query(record_type: str) -> sa.Select:
    """What a 双公示 dataset reads: records of one type (never the subject's ID number)."""
    t = CreditRecord.__table__
    return (sa.select(t.c.record_id, t.c.subject_name, t.c.subject_kind, t.c.subject_code, t.c.subject_person_id,
                      t.c.decision_no, t.c.decision_date, t.c.authority, t.c.authority_code, _text(t.c.content),
                      t.c.valid_until, t.c.status)
            .where(t.c.record_type == record_type).order_by(t.c.record_id))


def _credit_row(ctx: BuildContext, r: dict[str, Any], kind: str, status: str, extra: list[str],
                counts: Counter[str], coded: dict[tuple[str, Any], str]) -> dict[str, Any]:
    """One 双公示 output row: content fields read, natural persons pseudonymised and masked."""
    content = _json(r["content"]) or {}
    row: dict[str, Any] = {"record_id": r["record_id"], "subject_name": r["subject_name"], "subject_kind": kind,
                           "subject_code": r["subject_code"], "subject_pseudonym": None,
                           "decision_no": r["decision_no"], "decision_date": r["decision_date"],
                           "authority": r["authority"], "authority_code": r["authority_code"], "status": status or None}
    for name in extra:
        value = content.get(name) if isinstance(content, dict) else None
        if name in DATE_CONTENT:
            value = content_date(value)
        elif name in NUMBER_CONTENT:
            value = _number(value)
        elif name in CODED_CONTENT and value is not None:
            if (name, value) not in coded:  # labels looked up once per distinct code of the build
                coded[(name, value)] = labels([value], CODED_CONTENT[name])[0]
            value = coded[(name, value)]
        row[name] = value
    if r["subject_person_id"] is not None or r["subject_kind"] == NATURAL_PERSON:
        # A natural person: pseudonym instead of the ID number, masked name, own name redacted from free text.
        full = r["subject_name"] or ""
        row["subject_code"] = None
        row["subject_pseudonym"] = ctx.pseudonymiser.of(r["subject_person_id"])
        row["subject_name"] = mask_name(full) if full else full
        if len(full) >= 2:
            for name, value in row.items():
                if isinstance(value, str) and full in value and name != "record_id":
                    row[name] = value.replace(full, mask_name(full))
        counts["natural_person_rows"] += 1
    if row.get("legal_representative") and r["subject_kind"] in (NATURAL_PERSON, INDIVIDUAL_BUSINESS):
        row["legal_representative"] = mask_name(row["legal_representative"])
        counts["operator_names_masked"] += 1
    return row


def _credit(ctx: BuildContext, record_type: str, fields: list[Field]) -> Built:
    """双公示 records of one type: public in full, except natural persons (masked name, pseudonym, no ID number)."""
    names = [f.name for f in fields]
    base = {"record_id", "subject_name", "subject_kind", "subject_code", "subject_pseudonym", "decision_no",
            "decision_date", "authority", "authority_code", "status"}
    extra = sorted(set(names) - base)
    counts: Counter[str] = Counter()
    coded: dict[tuple[str, Any], str] = {}
    parts = []
    for b in _batches(ctx.engine, _credit_query(record_type)):
        kinds = _labels(b["subject_kind"], "subject_categories")
        statuses = _labels(b["status"], "credit_status", missing="")
        columns: dict[str, list[Any]] = {n: [] for n in names}
        keys = list(b)
        for values, kind, status in zip(zip(*(b[k] for k in keys)), kinds, statuses):
            row = _credit_row(ctx, dict(zip(keys, values)), kind, status, extra, counts, coded)
            for n in names:
                columns[n].append(row.get(n))
        parts.append(_batch_table(fields, columns))
    return Built(_concat(parts, fields), fields, {
        "sources": [read_lineage(ctx.engine, _credit_query(record_type), "credit")],
        "dropped_columns": ["subject_person_id", "subject_id_enc（自然人证件号码）"],
        "pseudonymised": [{"column": "subject_pseudonym", "rows": counts["natural_person_rows"],
                           "rule": "自然人主体：HMAC-SHA256 假名（枢纽密钥派生），不公开证件号码"}],
        "masked": [{"column": "subject_name", "rows": counts["natural_person_rows"], "rule": "自然人姓名脱敏（保留姓氏），并从文字字段中替换"},
                   {"column": "legal_representative", "rows": counts["operator_names_masked"], "rule": "自然人、个体工商户经营者姓名脱敏"}],
    })


def admin_licensing(ctx: BuildContext) -> Built:
    """行政许可（双公示）."""
    return _credit(ctx, "行政许可", LICENSING_FIELDS)


def admin_penalty(ctx: BuildContext) -> Built:
    """行政处罚（双公示）."""
    return _credit(ctx, "行政处罚", PENALTY_FIELDS)


# ---------------------------------------------------------------------------------------------
# 企业电子证照目录
# ---------------------------------------------------------------------------------------------

LICENCE_FIELDS = [
    Field("licence_id", "string", "证照标识"), Field("licence_name", "string", "证照名称"),
    Field("licence_type_code", "string", "证照类型代码"), Field("licence_number", "string", "证照编号"),
    Field("issuer", "string", "颁发机构"), Field("issuer_code", "string", "颁发机构代码"),
    Field("issue_date", "date", "颁发日期"), Field("holder_name", "string", "持证主体"),
    Field("holder_code", "string", "持证主体代码（统一社会信用代码）"), Field("valid_from", "date", "有效期起始日期"),
    Field("valid_until", "date", "有效期截止日期"), Field("status", "string", "证照状态"),
]


def _licence_query() -> sa.Select:
    """What the licence catalogue reads: licences of USCC holders other than individual businesses, no face content."""
    t = Licence.__table__
    return (sa.select(t.c.licence_id, t.c.licence_name, t.c.licence_type_code, t.c.licence_number, t.c.issuer,
                      t.c.issuer_code, t.c.issue_date, t.c.holder_name, t.c.holder_code, t.c.valid_from,
                      t.c.valid_until, t.c.status)
            .where(t.c.holder_person_id.is_(None), t.c.holder_code.is_not(None), t.c.holder_code_type == "001",
                   sa.func.substr(t.c.holder_code, 1, 2) != "92")
            .order_by(t.c.licence_id))


def enterprise_licences(ctx: BuildContext) -> Built:
    """Licences held by legal entities and other organisations (USCC holders, not individual businesses); no face content."""
    parts = []
    for b in _batches(ctx.engine, _licence_query()):
        columns = {f.name: b[f.name] for f in LICENCE_FIELDS}
        columns["status"] = [s or None for s in _labels(b["status"], "licence_status", missing="")]
        parts.append(_batch_table(LICENCE_FIELDS, columns))
    return Built(_concat(parts, LICENCE_FIELDS), LICENCE_FIELDS, {
        "sources": [read_lineage(ctx.engine, _licence_query(), "licence")],
        "filtered": ["只含统一社会信用代码持证主体（法人和其他组织），不含自然人、个体工商户（代码 92 开头）的证照"],
        "dropped_columns": ["face_content（照面信息）", "holder_person_id", "holder_code_enc", "seal_*（签章）"],
    })


# ---------------------------------------------------------------------------------------------
# 人口统计 (aggregate) and 人口微观数据 (person-level, k-anonymous)
# ---------------------------------------------------------------------------------------------

PERSON_QIS = ["region_code", "age_band", "gender", "ethnicity", "marital_status"]


def _person_query() -> sa.Select:
    """What the population datasets read: living persons' quasi-identifiers only (no name, number, address, phone)."""
    t = Person.__table__
    return (sa.select(t.c.region_code, t.c.birth_date, t.c.gender, t.c.ethnicity, t.c.marital_status)
            .where(t.c.death_date.is_(None)).order_by(t.c.person_id))


def _persons(ctx: BuildContext) -> tuple[dict[str, Any], pd.DataFrame]:
    """Living persons as counts per quasi-identifier combination (city-level region, 5-year age band): a table of
    combinations with a `persons` weight, so memory grows with the combinations, not with the people."""
    counts: Counter[tuple[str, ...]] = Counter()
    band = cache(lambda born: age_bands([_as_date(born)], ctx.as_of)[0])  # ~30,000 birth dates a million
    city, gender, ethnicity, marital = (cache(convert) for convert in (
        lambda c: regions_at([c], "city")[0], lambda v: labels([v], "gender", UNKNOWN)[0],
        lambda v: labels([v], "ethnicity", UNKNOWN)[0], lambda v: labels([v], "marital_status", UNKNOWN)[0]))
    with ctx.engine.connect() as connection:  # the driver's rows: the five columns are codes and a date
        for part in driver_rows(connection, _person_query(), BATCH_ROWS):
            counts.update((city(r), band(b), gender(g), ethnicity(e), marital(m)) for r, b, g, e, m in part)
    frame = pd.DataFrame(list(counts), columns=PERSON_QIS, dtype=object)
    frame[WEIGHT] = pd.Series(list(counts.values()), dtype="int64")
    return read_lineage(ctx.engine, _person_query(), "population"), frame


POPULATION_FIELDS = [
    Field("region_code", "string", "设区市行政区划代码"), Field("region_name", "string", "设区市"),
    Field("age_band", "string", "年龄组（岁）"), Field("gender", "string", "性别"), Field("ethnicity", "string", "民族"),
    Field("population", "integer", "人数", "少于 k 人的单元格为空（见 suppressed）"),
    Field("suppressed", "boolean", "是否抑制", "true：该单元格人数少于 k，不公布"),
]


def population_statistics(ctx: BuildContext) -> Built:
    """Counts by city, age band, gender and ethnicity; cells below k suppressed."""
    sources, persons = _persons(ctx)
    dims = ["region_code", "age_band", "gender", "ethnicity"]
    counts = (persons.groupby(dims, sort=True)[WEIGHT].sum().rename("population").reset_index()
              if len(persons) else pd.DataFrame(columns=dims + ["population"]))
    counts["population"] = counts["population"].astype("int64")
    cells, report = suppress_small_cells(counts, "population", ctx.spec.k)
    cells["region_name"] = region_names(cells["region_code"].tolist())
    return Built(cells, POPULATION_FIELDS, {
        "sources": [sources],
        "generalised": [{"column": "region_code", "rule": "户籍地区划上卷到设区市（前4位）"},
                        {"column": "age_band", "rule": f"出生日期 → 截至 {ctx.as_of.isoformat()} 的年龄，5岁一组，85岁以上合并"}],
        "suppressed": {"small_cells": report},
        "dropped_columns": ["姓名", "公民身份号码", "住址", "联系电话", "出生日期"],
    })


MICRODATA_FIELDS = [
    Field("region_code", "string", "地区代码（设区市或省）"), Field("region_name", "string", "地区"),
    Field("age_band", "string", "年龄组（岁）"), Field("gender", "string", "性别"), Field("ethnicity", "string", "民族"),
    Field("marital_status", "string", "婚姻状况"),
]


def _ethnic_group(series: pd.Series) -> pd.Series:
    """汉族 stays, every other ethnicity becomes 少数民族."""
    return series.where(series.isin(["汉族", "未知"]), "少数民族")


def _marital_group(series: pd.Series) -> pd.Series:
    """Marital statuses merged into 未婚 / 有配偶 / 其他."""
    return series.map(lambda v: "未婚" if v == "未婚" else "有配偶" if v in ("已婚", "初婚", "再婚", "复婚") else "其他")


MICRODATA_LADDER = [
    Step("age_band", "年龄组由5岁加宽到10岁", lambda s: s.map(lambda b: widen_age_band(b, 10))),
    Step("ethnicity", "民族归并为 汉族/少数民族", _ethnic_group),
    Step("marital_status", "婚姻状况归并为 未婚/有配偶/其他", _marital_group),
    Step("age_band", "年龄组加宽到20岁", lambda s: s.map(lambda b: widen_age_band(b, 20))),
    Step("region_code", "地区由设区市上卷到省", lambda s: pd.Series(regions_at(s.tolist(), "province"), index=s.index)),
]


def population_microdata(ctx: BuildContext) -> Built:
    """One row per living person with generalised quasi-identifiers only, k-anonymous (generalise, then suppress).

    Worked on the counts per combination (k-anonymity depends only on them); the rows are the sorted combinations
    each repeated as many times as people share it — the same table as sorting one row per person.
    """
    sources, persons = _persons(ctx)
    anonymous, report = k_anonymise(persons, PERSON_QIS, ctx.spec.k, MICRODATA_LADDER, weight=WEIGHT)
    anonymous = (anonymous.groupby(PERSON_QIS, sort=True)[WEIGHT].sum().reset_index() if len(anonymous)
                 else anonymous)
    anonymous["region_name"] = region_names(anonymous["region_code"].tolist())
    combos = pa.Table.from_pandas(anonymous[[f.name for f in MICRODATA_FIELDS]], preserve_index=False,
                                  schema=pa.schema([(f.name, pa.string()) for f in MICRODATA_FIELDS]))
    repeat = np.repeat(np.arange(len(anonymous), dtype=np.int64), anonymous[WEIGHT].to_numpy(dtype=np.int64))
    return Built(combos.take(pa.array(repeat)), MICRODATA_FIELDS, {
        "sources": [sources],
        "generalised": [{"column": "region_code", "rule": "户籍地区划上卷到设区市（前4位）"},
                        {"column": "age_band", "rule": f"出生日期 → 截至 {ctx.as_of.isoformat()} 的年龄，5岁一组"},
                        *report["generalised"]],
        "suppressed": {"k_anonymity": report},
        "dropped_columns": ["姓名", "公民身份号码", "住址", "联系电话", "出生日期", "人员标识"],
    })


BUILDERS: dict[str, Callable[[BuildContext], Built]] = {
    "legal_entity_registry": legal_entity_registry,
    "admin_licensing": admin_licensing,
    "admin_penalty": admin_penalty,
    "enterprise_licences": enterprise_licences,
    "population_statistics": population_statistics,
    "population_microdata": population_microdata,
}


INPUTS: dict[str, Callable[[], list[sa.Select]]] = {
    "legal_entity_registry": lambda: [_legal_entity_query()],
    "admin_licensing": lambda: [_credit_query("行政许可")],
    "admin_penalty": lambda: [_credit_query("行政处罚")],
    "enterprise_licences": lambda: [_licence_query()],
    "population_statistics": lambda: [_person_query()],
    "population_microdata": lambda: [_person_query()],
}
AS_OF_DEPENDENT = frozenset({"population_statistics", "population_microdata"})  # ages are counted at the release date
PSEUDONYMISING = frozenset({"admin_licensing", "admin_penalty"})  # outputs depend on the pseudonym key


__all__ = ["AS_OF_DEPENDENT", "BUILDERS", "INPUTS", "PSEUDONYMISING", "BuildContext", "Built", "Field", "lineage_summary"]
