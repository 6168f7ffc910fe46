"""How each open dataset is read from the base libraries and de-identified (one function per `builder` name).

开放数据集构建：从基础库读取、去标识化。Natural persons' ID numbers are never read (only their HMAC person ids,
turned into keyed pseudonyms); names of natural persons are masked (段**) where a dataset must mention them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from hub.crypto import mask_name
from hub.models import CreditRecord, LegalEntity, Licence, Person
from libraries.credit import content_amount, content_date
from opendata.datasets import DatasetSpec
from opendata.privacy import (Pseudonymiser, Step, age_bands, k_anonymise, labels, region_names, regions_at,
                              suppress_small_cells, widen_age_band)

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "date": pa.date32(), "boolean": pa.bool_(),
}
ENTITY_KINDS = {"enterprise": "企业", "individual_business": "个体工商户", "farmer_coop": "农民专业合作社",
                "social_org": "社会组织", "institution": "事业单位", "government": "机关", "other": "其他"}
NATURAL_PERSON, INDIVIDUAL_BUSINESS = "01", "04"


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
    """A builder's result: the rows, their columns, and the provenance of what was read and changed."""

    frame: pd.DataFrame
    fields: list[Field]
    provenance: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pa.Table:
        """The rows as an Arrow table with the declared column types, in declared order."""
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


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pandas NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _rows(engine: sa.Engine, query: sa.Select) -> list[dict[str, Any]]:
    """Rows of a query as dicts."""
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(query)]


def lineage_summary(rows: list[dict[str, Any]], library: str) -> dict[str, Any]:
    """Which source runs last wrote the rows read, and the quality ruleset versions in their field lineage."""
    runs = Counter((r.get("source_id"), r.get("run_id")) for r in rows)
    rulesets: set[str] = set()
    for r in rows:
        for entry in (r.get("lineage") or {}).values():
            if isinstance(entry, dict) and entry.get("ruleset_version"):
                rulesets.add(str(entry["ruleset_version"]))
    return {"library": library, "rows_read": len(rows),
            "source_runs": [{"source_id": s, "run_id": r, "rows": n} for (s, r), n in sorted(runs.items(), key=lambda i: (str(i[0][0]), str(i[0][1])))],
            "ruleset_versions": sorted(rulesets)}


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


def legal_entity_registry(ctx: BuildContext) -> Built:
    """Registration facts of every legal entity; operators of individual businesses masked, no ID numbers."""
    t = LegalEntity.__table__
    rows = _rows(ctx.engine, sa.select(t.c.uscc, t.c.name, t.c.entity_kind, t.c.entity_type, t.c.legal_rep_name,
                                       t.c.registered_capital, t.c.established_date, t.c.registration_authority,
                                       t.c.status, t.c.address, t.c.region_code, t.c.business_scope, t.c.source_id,
                                       t.c.run_id, t.c.lineage).order_by(t.c.uscc))
    masked = 0
    out = []
    for r in rows:
        rep = r["legal_rep_name"]
        if r["entity_kind"] == "individual_business" and rep:
            rep = mask_name(rep)
            masked += 1
        out.append({"uscc": r["uscc"], "name": r["name"], "entity_kind": ENTITY_KINDS.get(r["entity_kind"], r["entity_kind"]),
                    "entity_type": r["entity_type"], "legal_representative": rep,
                    "registered_capital": r["registered_capital"], "established_date": r["established_date"],
                    "registration_authority": r["registration_authority"], "status": r["status"],
                    "address": r["address"], "region_code": r["region_code"], "business_scope": r["business_scope"]})
    frame = pd.DataFrame(out, columns=[f.name for f in LEGAL_ENTITY_FIELDS])
    codes = frame["region_code"].tolist()
    frame["region_name"] = [n if isinstance(c, str) and c else None for c, n in zip(codes, region_names(codes))]
    return Built(frame, LEGAL_ENTITY_FIELDS, {
        "sources": [lineage_summary(rows, "legal_entity")],
        "dropped_columns": ["legal_rep_person_id", "legal_rep_id_enc（法定代表人证件号码）"],
        "masked": [{"column": "legal_representative", "rows": masked, "rule": "个体工商户经营者姓名脱敏（保留姓氏）"}],
    })


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


def _credit(ctx: BuildContext, record_type: str, fields: list[Field]) -> Built:
    """双公示 records of one type: public in full, except natural persons (masked name, pseudonym, no ID number)."""
    t = CreditRecord.__table__
    rows = _rows(ctx.engine, sa.select(t.c.record_id, t.c.subject_name, t.c.subject_kind, t.c.subject_code,
                                       t.c.subject_person_id, t.c.decision_no, t.c.decision_date, t.c.authority,
                                       t.c.authority_code, t.c.content, t.c.valid_until, t.c.status, t.c.source_id,
                                       t.c.run_id, t.c.lineage)
                 .where(t.c.record_type == record_type).order_by(t.c.record_id))
    names = {f.name for f in fields}
    kinds = labels([r["subject_kind"] for r in rows], "subject_categories")
    statuses = labels([r["status"] for r in rows], "credit_status", missing="")
    counts = Counter()
    out = []
    for r, kind, status in zip(rows, kinds, statuses):
        content = dict(r["content"] or {})
        row: dict[str, Any] = {"record_id": r["record_id"], "subject_name": r["subject_name"], "subject_kind": kind,
                               "subject_code": r["subject_code"], "subject_pseudonym": None,
                               "decision_no": r["decision_no"], "decision_date": r["decision_date"],
                               "authority": r["authority"], "authority_code": r["authority_code"],
                               "status": status or None}
        for name in names - set(row):
            value = content.get(name)
            if name in DATE_CONTENT:
                value = content_date(value)
            elif name in NUMBER_CONTENT:
                value = _number(value)
            elif name in CODED_CONTENT and value is not None:
                value = labels([value], CODED_CONTENT[name])[0]
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
        out.append(row)
    frame = pd.DataFrame(out, columns=[f.name for f in fields])
    return Built(frame, fields, {
        "sources": [lineage_summary(rows, "credit")],
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


def enterprise_licences(ctx: BuildContext) -> Built:
    """Licences held by legal entities and other organisations (USCC holders, not individual businesses); no face content."""
    t = Licence.__table__
    query = (sa.select(t.c.licence_id, t.c.licence_name, t.c.licence_type_code, t.c.licence_number, t.c.issuer,
                       t.c.issuer_code, t.c.issue_date, t.c.holder_name, t.c.holder_code, t.c.valid_from,
                       t.c.valid_until, t.c.status, t.c.source_id, t.c.run_id, t.c.lineage)
             .where(t.c.holder_person_id.is_(None), t.c.holder_code.is_not(None), t.c.holder_code_type == "001",
                    sa.func.substr(t.c.holder_code, 1, 2) != "92")
             .order_by(t.c.licence_id))
    rows = _rows(ctx.engine, query)
    statuses = labels([r["status"] for r in rows], "licence_status", missing="")
    out = [{**{f.name: r.get(f.name) for f in LICENCE_FIELDS}, "status": s or None} for r, s in zip(rows, statuses)]
    frame = pd.DataFrame(out, columns=[f.name for f in LICENCE_FIELDS])
    return Built(frame, LICENCE_FIELDS, {
        "sources": [lineage_summary(rows, "licence")],
        "filtered": ["只含统一社会信用代码持证主体（法人和其他组织），不含自然人、个体工商户（代码 92 开头）的证照"],
        "dropped_columns": ["face_content（照面信息）", "holder_person_id", "holder_code_enc", "seal_*（签章）"],
    })


# ---------------------------------------------------------------------------------------------
# 人口统计 (aggregate) and 人口微观数据 (person-level, k-anonymous)
# ---------------------------------------------------------------------------------------------

def _persons(ctx: BuildContext) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Living persons' quasi-identifiers (nothing else is read), city-level region and 5-year age band."""
    t = Person.__table__
    rows = _rows(ctx.engine, sa.select(t.c.region_code, t.c.birth_date, t.c.gender, t.c.ethnicity, t.c.marital_status,
                                       t.c.source_id, t.c.run_id, t.c.lineage)
                 .where(t.c.death_date.is_(None)).order_by(t.c.person_id))
    region = regions_at([r["region_code"] for r in rows], "city")
    frame = pd.DataFrame({
        "region_code": region,
        "age_band": age_bands([r["birth_date"] for r in rows], ctx.as_of),
        "gender": labels([r["gender"] for r in rows], "gender"),
        "ethnicity": labels([r["ethnicity"] for r in rows], "ethnicity"),
        "marital_status": labels([r["marital_status"] for r in rows], "marital_status"),
    })
    return rows, frame


POPULATION_FIELDS = [
    Field("region_code", "string", "设区市行政区划代码"), Field("region_name", "string", "设区市"),
    Field("age_band", "string", "年龄组（岁）"), Field("gender", "string", "性别"), Field("ethnicity", "string", "民族"),
    Field("population", "integer", "人数", "少于 k 人的单元格为空（见 suppressed）"),
    Field("suppressed", "boolean", "是否抑制", "true：该单元格人数少于 k，不公布"),
]


def population_statistics(ctx: BuildContext) -> Built:
    """Counts by city, age band, gender and ethnicity; cells below k suppressed."""
    rows, persons = _persons(ctx)
    dims = ["region_code", "age_band", "gender", "ethnicity"]
    counts = (persons.groupby(dims, sort=True).size().rename("population").reset_index()
              if len(persons) else pd.DataFrame(columns=dims + ["population"]))
    counts["population"] = counts["population"].astype("int64")
    cells, report = suppress_small_cells(counts, "population", ctx.spec.k)
    cells["region_name"] = region_names(cells["region_code"].tolist())
    return Built(cells, POPULATION_FIELDS, {
        "sources": [lineage_summary(rows, "population")],
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
    """One row per living person with generalised quasi-identifiers only, k-anonymous (generalise, then suppress)."""
    rows, persons = _persons(ctx)
    qis = ["region_code", "age_band", "gender", "ethnicity", "marital_status"]
    anonymous, report = k_anonymise(persons, qis, ctx.spec.k, MICRODATA_LADDER)
    anonymous = anonymous.sort_values(qis, kind="stable").reset_index(drop=True)
    anonymous["region_name"] = region_names(anonymous["region_code"].tolist())
    return Built(anonymous, MICRODATA_FIELDS, {
        "sources": [lineage_summary(rows, "population")],
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


__all__ = ["BUILDERS", "BuildContext", "Built", "Field", "lineage_summary"]
