"""Credit file drops (UTF-8 CSV under credit/<dept>/): 行政许可, 行政处罚, 经营异常名录, 红黑名单."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from world import defects as d
from world.sources import Context, Derived, days, replace
from world.text import cat, num

HIDDEN = ("dept", "subject_kind", "subject_ref", "licence_id")


@dataclass(frozen=True)
class CreditKind:
    """How one credit table is laid out: its key fields and which fields defects may touch."""

    key: str
    title: str
    natural_key: tuple[str, ...]
    name: str
    decision_date: str
    date_fields: tuple[str, ...]
    past_date_fields: tuple[str, ...]
    required: tuple[str, ...]
    authority_code: str | None = None
    category: str | None = None


KINDS: dict[str, CreditKind] = {
    "xzxk": CreditKind("xzxk", "行政许可（双公示）", ("许可决定文书号",), "行政相对人名称", "许可决定日期",
                       ("许可决定日期", "有效期自", "有效期至"), ("许可决定日期", "有效期自"),
                       ("行政相对人名称", "行政相对人类别", "许可决定文书号", "许可决定日期", "许可机关"),
                       "许可机关代码", "行政相对人类别"),
    "xzcf": CreditKind("xzcf", "行政处罚（双公示）", ("行政处罚决定书文号",), "行政相对人名称", "处罚决定日期",
                       ("处罚决定日期", "处罚有效期", "公示截止期"), ("处罚决定日期",),
                       ("行政相对人名称", "行政相对人类别", "行政处罚决定书文号", "处罚类别", "处罚决定日期", "处罚机关"),
                       "处罚机关代码", "行政相对人类别"),
    "jyyc": CreditKind("jyyc", "经营异常名录", ("统一社会信用代码", "列入日期"), "企业名称", "列入日期",
                       ("列入日期", "移出日期"), ("列入日期", "移出日期"),
                       ("企业名称", "统一社会信用代码", "列入经营异常名录原因", "列入日期", "列入决定机关")),
    "hhmd": CreditKind("hhmd", "红名单/黑名单", ("名单名称", "统一社会信用代码", "列入日期"), "主体名称", "列入日期",
                       ("列入日期", "有效期至", "移出日期"), ("列入日期", "移出日期"),
                       ("名单类型", "名单名称", "主体名称", "统一社会信用代码", "认定部门", "列入日期"),
                       "认定部门代码"),
}


def source_id(kind: str) -> str:
    """Source id of a credit table."""
    return f"credit_{kind}"


def derive(ctx: Context, kind: str) -> Derived:
    """One credit table with messiness and defects; grouped by department for the files."""
    spec = KINDS[kind]
    source = source_id(kind)
    t = ctx.truth.credit[kind]
    n = t.num_rows
    rng = ctx.rng(source)
    drng = ctx.rng(source, "values")
    inj = d.Injector(ctx.cfg, source, n, ctx.rng(source, "defects"))
    c = {name: t.column(name).combine_chunks() for name in t.column_names}
    person = c["subject_kind"].to_numpy(zero_copy_only=False) == "person"
    dates = {f: days(c[f]) for f in spec.date_fields}
    cols = {name: c[name] for name in t.column_names if name not in HIDDEN and name not in spec.date_fields}
    cols[spec.name] = ctx.messy(cols[spec.name], rng, traditional=True, spaces=True)
    cols["统一社会信用代码"] = ctx.messy(cols["统一社会信用代码"], rng, full_width=True, scale=0.5)

    fab = ctx.fabricator(source)
    picked = inj.pick("orphan_subject")
    people, firms = picked[person[picked]], picked[~person[picked]]
    p_names, p_ids = fab.persons(len(people))
    f_names, f_codes = fab.entities(len(firms))
    cols[spec.name] = replace(cols[spec.name], np.r_[people, firms], p_names + f_names)
    cols["统一社会信用代码"] = replace(cols["统一社会信用代码"], firms, f_codes)
    inj.add(firms, "统一社会信用代码", "orphan_subject", "主体在法人库中不存在")
    if len(people):
        cols["证件号码"] = replace(cols["证件号码"], people, p_ids)
        inj.add(people, "证件号码", "orphan_subject", "主体在人口库中不存在")

    if spec.authority_code:
        codes = cols[spec.authority_code].to_pylist()
        picked = inj.pick("bad_check_char")
        bad = [d.bad_uscc(codes[r], drng) for r in picked]
        cols[spec.authority_code] = replace(cols[spec.authority_code], picked, [b[0] for b in bad])
        inj.add(picked, spec.authority_code, "bad_check_char", [b[1] for b in bad])

    for field in spec.required:
        picked = inj.pick("missing_required", None, share=1 / len(spec.required))
        if field in dates:
            dates[field][picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")

    picked = inj.pick("future_date")
    for r in picked:
        dates[spec.decision_date][r] = d.future_day(ctx.ref, drng)
    inj.add(picked, spec.decision_date, "future_date", f"{spec.decision_date}晚于基准日期")

    if spec.category:
        picked = inj.pick("invalid_code")
        values = [d.INVALID_SUBJECT_CATEGORY[int(drng.integers(0, 2))] for _ in picked]
        cols[spec.category] = replace(cols[spec.category], picked, values)
        inj.add(picked, spec.category, "invalid_code", [f"行政相对人类别{v}不在代码表中" for v in values])

    ordered = {}
    for name in t.column_names:
        if name in HIDDEN:
            continue
        ordered[name] = ctx.dates(dates[name], "credit", rng) if name in dates else cols[name]
    table = pa.table(ordered)
    dept = c["dept"].to_numpy(zero_copy_only=False)
    picked = inj.pick("duplicate")
    if len(picked):
        copy = table.take(pa.array(picked))
        prefix = copy.column("记录编号")[0].as_py()[:2]
        copy = copy.set_column(0, "记录编号", cat(prefix, num(np.arange(n + 1, n + len(picked) + 1), 10)))
        inj.add(np.arange(n, n + len(picked)), spec.natural_key[0], "duplicate",
                [f"与记录编号{v}重复" for v in table.column("记录编号").take(pa.array(picked)).to_pylist()])
        table = pa.concat_tables([table, copy])
        dept = np.concatenate([dept, dept[picked]])
    return Derived({kind: table}, inj.manifest(table.column("记录编号").to_numpy()), {kind: dept})

