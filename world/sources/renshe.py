"""人社 social-insurance enrolments (sbcb.xlsx): one row per insured person."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from world import defects as d
from world import linkage
from world.sources import Context, Derived, days, replace

SOURCE = "renshe_sbcb"
REQUIRED = ("姓名", "公民身份号码", "险种", "参保日期")
PAYMENT_STATES = ("正常缴费", "暂停缴费", "终止缴费")
INVALID_STATE = "未知"
TEXT_DATE_SHARE = 0.4  # share of 参保日期 cells written as text instead of Excel dates


def derive(ctx: Context) -> Derived:
    """The enrolment sheet; 参保日期 is a date column here and becomes text or an Excel date when written."""
    t = ctx.truth.insurance
    n = t.num_rows
    rng = ctx.rng(SOURCE)
    drng = ctx.rng(SOURCE, "values")
    inj = d.Injector(ctx.cfg, SOURCE, n, ctx.rng(SOURCE, "defects"))
    person = t.column("person_id").to_numpy() - 1
    employer = t.column("employer_entity_id").to_numpy(zero_copy_only=False)
    has_employer = ~np.isnan(employer.astype(float))
    employer_row = np.where(has_employer, np.nan_to_num(employer.astype(float)), 1).astype(np.int64) - 1
    person_clean = ctx.person_lane[person] >= 0.5
    employer_clean = has_employer & (ctx.entity_lane[employer_row] >= 0.5)
    names = ctx.p["name"].take(pa.array(person))
    ids = ctx.p["id_number"].take(pa.array(person))
    raw_ids = ids.to_pylist()
    cols: dict[str, pa.Array] = {
        "姓名": ctx.messy(names, rng, traditional=True, spaces=True),
        "公民身份号码": ctx.messy(ids, rng, full_width=True, spaces=True),
        "单位名称": ctx.messy(t.column("employer_name").combine_chunks(), rng, traditional=True, spaces=True),
        "单位统一社会信用代码": t.column("employer_uscc").combine_chunks(),
        "险种": t.column("scheme").combine_chunks(),
        "缴费状态": t.column("payment_state").combine_chunks(),
    }
    enrolled = days(t.column("enrolled"))

    picked = inj.pick("bad_check_char", None, share=0.6)
    bad = [d.bad_resident_id(raw_ids[r], drng) for r in picked]
    cols["公民身份号码"] = replace(cols["公民身份号码"], picked, [b[0] for b in bad])
    inj.add(picked, "公民身份号码", "bad_check_char", [b[1] for b in bad])
    usccs = cols["单位统一社会信用代码"].to_pylist()
    picked = inj.pick("bad_check_char", has_employer, share=0.4)
    bad = [d.bad_uscc(usccs[r], drng) for r in picked]
    cols["单位统一社会信用代码"] = replace(cols["单位统一社会信用代码"], picked, [b[0] for b in bad])
    inj.add(picked, "单位统一社会信用代码", "bad_check_char", [b[1] for b in bad])

    for field in REQUIRED:
        picked = inj.pick("missing_required", None, share=1 / len(REQUIRED))
        if field == "参保日期":
            enrolled[picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")

    picked = inj.pick("future_date")
    for r in picked:
        enrolled[r] = d.future_day(ctx.ref, drng)
    inj.add(picked, "参保日期", "future_date", "参保日期晚于基准日期")

    picked = inj.pick("invalid_code")
    cols["缴费状态"] = replace(cols["缴费状态"], picked, [INVALID_STATE] * len(picked))
    inj.add(picked, "缴费状态", "invalid_code", f"缴费状态{INVALID_STATE}不在代码表中")

    picked = inj.pick("cross_source_conflict", person_clean, share=0.6)
    true_names = names.to_pylist()
    cols["姓名"] = replace(cols["姓名"], picked, [d.different_name(true_names[r], drng) for r in picked])
    inj.add(picked, "姓名", "cross_source_conflict", [f"公安户籍姓名为{true_names[r]}" for r in picked])
    picked = inj.pick("cross_source_conflict", employer_clean, share=0.4)
    firm_names = t.column("employer_name").to_pylist()
    cols["单位名称"] = replace(cols["单位名称"], picked, [v[:-4] + "实业有限公司" if not v.endswith("实业有限公司")
                                                       else v[:-6] + "贸易有限公司" for v in (firm_names[r] for r in picked)])
    inj.add(picked, "单位名称", "cross_source_conflict", [f"市场监管登记名称为{firm_names[r]}" for r in picked])

    text_date = rng.random(n) < TEXT_DATE_SHARE
    # Birth date and household region (for record linkage of rows with a broken ID), from their own stream so
    # every other column stays as it was.
    lrng = ctx.rng(SOURCE, "linkage")
    birth_text = ctx.dates(days(ctx.p["birth_date"].take(pa.array(person))), "renshe", lrng)
    region = ctx.p["region"].take(pa.array(person))
    table = pa.table({
        "个人编号": t.column("insured_no").combine_chunks(),
        "姓名": cols["姓名"],
        "公民身份号码": cols["公民身份号码"],
        "出生日期": birth_text,
        "户籍地区划": region,
        "单位名称": cols["单位名称"],
        "单位统一社会信用代码": cols["单位统一社会信用代码"],
        "险种": cols["险种"],
        "参保日期": pa.array(enrolled, pa.date32()),
        "参保日期文本": ctx.dates(enrolled, "renshe", rng),
        "缴费状态": cols["缴费状态"],
        "更新时间": t.column("updated_at").combine_chunks(),
    })
    group = text_date
    picked = inj.pick("duplicate")
    if len(picked):
        copy = table.take(pa.array(picked))
        new_no = (t.column("insured_no").to_numpy().astype(np.int64).max() + 1 + np.arange(len(picked))).astype(str)
        copy = copy.set_column(0, "个人编号", pa.array(new_no.astype(object), pa.string()))
        inj.add(np.arange(n, n + len(picked)), "公民身份号码", "duplicate",
                [f"与个人编号{v}重复" for v in t.column("insured_no").take(pa.array(picked)).to_pylist()])
        table = pa.concat_tables([table, copy])
        group = np.concatenate([group, ~text_date[picked]])
    keys = table.column("个人编号").to_numpy()
    manifest = inj.manifest(keys)
    every = np.concatenate([person, person[picked]]) if len(picked) else person
    from world.sources.gongan import namesakes

    cases = linkage.cases(inj, "population", {"公民身份号码": ctx.p["id_number"].take(pa.array(every)).to_pylist()},
                          keys, namesakes(ctx)[every])
    return Derived({"sbcb": table}, manifest, {"sbcb": group}, linkage=cases)

