"""民政: marriage registrations (hydj_*.csv, one file per year) and social organisations (shzz.csv)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from world import defects as d
from world import linkage
from world.persons import MARRIAGE_REGISTER_START
from world.sources import Context, Derived, days, replace
from world.text import cat, num

SOURCE_HYDJ = "minzheng_hydj"
SOURCE_SHZZ = "minzheng_shzz"
HYDJ_REQUIRED = ("男方姓名", "男方身份证号", "女方姓名", "女方身份证号", "登记类型", "登记日期", "证书字号")
SHZZ_REQUIRED = ("统一社会信用代码", "社会组织名称", "法定代表人", "成立登记日期", "住所")
ORG_TYPES = ("社会团体", "民办非企业单位", "基金会")
INVALID_ORG_TYPE = "其他组织"
INVALID_REGISTRATION_TYPE = "未知"


def file_encoding(year: int) -> str:
    """Encoding of the yearly marriage file: the old system wrote GBK, the new one GB18030, one year UTF-8."""
    if year == 2019:
        return "utf-8-sig"
    return "gb18030" if year >= 2020 else "gbk"


def derive(ctx: Context) -> Derived:
    """Both 民政 sources."""
    hydj, hydj_year, m1, l1 = _marriages(ctx)
    shzz, m2, l2 = _social(ctx)
    return Derived({"hydj": hydj, "shzz": shzz}, pa.concat_tables([m1, m2]), {"hydj": hydj_year},
                   linkage=pa.concat_tables([l1, l2]))


def _marriages(ctx: Context) -> tuple[pa.Table, np.ndarray, pa.Table, pa.Table]:
    """Registrations since electronic records began, with defects only on single, never-divorced marriages."""
    ev = ctx.truth.marriages
    date = days(ev.column("date"))
    keep = np.flatnonzero(date >= MARRIAGE_REGISTER_START)
    ev = ev.take(pa.array(keep))
    date = date[keep]
    n = len(keep)
    rng = ctx.rng(SOURCE_HYDJ)
    drng = ctx.rng(SOURCE_HYDJ, "values")
    inj = d.Injector(ctx.cfg, SOURCE_HYDJ, n, ctx.rng(SOURCE_HYDJ, "defects"))
    kind = ev.column("kind").to_numpy()
    h = ev.column("husband_id").to_numpy() - 1
    w = ev.column("wife_id").to_numpy() - 1
    divorced = set(zip(h[kind == "离婚"].tolist(), w[kind == "离婚"].tolist()))
    single = (kind == "结婚") & np.array([(a, b) not in divorced for a, b in zip(h.tolist(), w.tolist())], dtype=bool)
    # Rows of people whose 公安 row may carry a marital-status conflict must stay clean, and so must
    # every row that decides someone's latest registration.
    eligible = single & (ctx.person_lane[h] >= 0.5) & (ctx.person_lane[w] >= 0.5)
    p = ctx.p
    ids_h = p["id_number"].take(pa.array(h))
    ids_w = p["id_number"].take(pa.array(w))
    office = ev.column("office_region").to_numpy()
    dept_row = {k: i for i, k in enumerate(ctx.truth.departments.column("dept_key").to_pylist())}
    office_name = ctx.truth.departments.column("name").combine_chunks().take(
        pa.array([dept_row[f"minzheng/{o}"] for o in office], pa.int64()))
    cols: dict[str, pa.Array] = {
        "男方姓名": ctx.messy(p["name"].take(pa.array(h)), rng, traditional=True, spaces=True),
        "男方身份证号": ctx.messy(ids_h, rng, full_width=True),
        "女方姓名": ctx.messy(p["name"].take(pa.array(w)), rng, traditional=True, spaces=True),
        "女方身份证号": ctx.messy(ids_w, rng, full_width=True),
        "登记类型": ev.column("kind").combine_chunks(),
        "证书字号": ev.column("certificate_no").combine_chunks(),
    }
    reg_days = date.copy()
    raw = {"男方身份证号": ids_h.to_pylist(), "女方身份证号": ids_w.to_pylist()}

    for field in ("男方身份证号", "女方身份证号"):
        picked = inj.pick("bad_check_char", eligible, share=0.5)
        bad = [d.bad_resident_id(raw[field][r], drng) for r in picked]
        cols[field] = replace(cols[field], picked, [b[0] for b in bad])
        inj.add(picked, field, "bad_check_char", [b[1] for b in bad])
    for field, wrong in (("男方身份证号", "女性"), ("女方身份证号", "男性")):
        picked = inj.pick("id_gender_mismatch", eligible, share=0.5)
        cols[field] = replace(cols[field], picked, [d.other_gender_id(raw[field][r]) for r in picked])
        inj.add(picked, field, "id_gender_mismatch", f"{field[:2]}的身份号码性别位为{wrong}")

    for field in HYDJ_REQUIRED:
        picked = inj.pick("missing_required", eligible, share=1 / len(HYDJ_REQUIRED))
        if field == "登记日期":
            reg_days[picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")

    picked = inj.pick("future_date", eligible)
    for r in picked:
        reg_days[r] = d.future_day(ctx.ref, drng)
    inj.add(picked, "登记日期", "future_date", "登记日期晚于基准日期")

    picked = inj.pick("invalid_code", eligible)
    cols["登记类型"] = replace(cols["登记类型"], picked, [INVALID_REGISTRATION_TYPE] * len(picked))
    inj.add(picked, "登记类型", "invalid_code", f"登记类型{INVALID_REGISTRATION_TYPE}不是结婚/离婚")

    for field, who in (("男方姓名", h), ("女方姓名", w)):
        picked = inj.pick("cross_source_conflict", eligible, share=0.5)
        true_names = p["name"].take(pa.array(who[picked])).to_pylist()
        cols[field] = replace(cols[field], picked, [d.different_name(v, drng) for v in true_names])
        inj.add(picked, field, "cross_source_conflict", [f"公安户籍姓名为{v}" for v in true_names])

    year = date.astype("datetime64[Y]").astype(int) + 1970
    table = pa.table({
        "登记编号": cat("HY", num(np.arange(1, n + 1), 10)),
        "男方姓名": cols["男方姓名"], "男方身份证号": cols["男方身份证号"],
        "女方姓名": cols["女方姓名"], "女方身份证号": cols["女方身份证号"],
        "登记类型": cols["登记类型"],
        "登记日期": ctx.dates(reg_days, "minzheng", rng),
        "登记机关": office_name,
        "证书字号": cols["证书字号"],
    })
    picked = inj.pick("duplicate", eligible)
    every = np.concatenate([np.arange(n), picked]).astype(np.int64)
    true_keys = {"男方身份证号": ids_h.take(pa.array(every)).to_pylist(), "女方身份证号": ids_w.take(pa.array(every)).to_pylist()}
    if len(picked):
        copy = table.take(pa.array(picked))
        copy = copy.set_column(0, "登记编号", cat("HY", num(np.arange(n + 1, n + len(picked) + 1), 10)))
        copy = copy.set_column(6, "登记日期", ctx.dates(date[picked], "minzheng", rng))
        inj.add(np.arange(n, n + len(picked)), "证书字号", "duplicate", [f"与登记编号HY{r + 1:010d}重复" for r in picked])
        table = pa.concat_tables([table, copy])
        year = np.concatenate([year, year[picked]])
    keys = table.column("登记编号").to_numpy(zero_copy_only=False)
    return table, year, inj.manifest(keys), linkage.cases(inj, "population", true_keys, keys)


def _social(ctx: Context) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Social organisations registered by 民政 (anchor of their USCCs)."""
    kind = ctx.e["kind"].to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(kind == "social")
    n = len(rows)
    e = {k: v.take(pa.array(rows)) for k, v in ctx.e.items()}
    rng = ctx.rng(SOURCE_SHZZ)
    drng = ctx.rng(SOURCE_SHZZ, "values")
    inj = d.Injector(ctx.cfg, SOURCE_SHZZ, n, ctx.rng(SOURCE_SHZZ, "defects"))
    anchor = ctx.entity_lane[rows] < 0.5
    key_free = anchor & ~ctx.entity_referenced[rows]
    usccs = e["uscc"].to_pylist()
    cols: dict[str, pa.Array] = {
        "统一社会信用代码": ctx.messy(e["uscc"], rng, full_width=True, scale=0.5),
        "社会组织名称": ctx.messy(e["name"], rng, traditional=True, spaces=True),
        "组织类型": e["entity_type"],
        "法定代表人": ctx.messy(e["rep_name"], rng, spaces=True),
        "住所": ctx.messy(e["address"], rng, traditional=True, spaces=True, inner=True),
    }
    est = days(e["established"])
    picked = inj.pick("bad_check_char", key_free)
    bad = [d.bad_uscc(usccs[r], drng) for r in picked]
    cols["统一社会信用代码"] = replace(cols["统一社会信用代码"], picked, [b[0] for b in bad])
    inj.add(picked, "统一社会信用代码", "bad_check_char", [b[1] for b in bad])
    for field in SHZZ_REQUIRED:
        picked = inj.pick("missing_required", key_free if field == "统一社会信用代码" else anchor, share=1 / len(SHZZ_REQUIRED))
        if field == "成立登记日期":
            est[picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")
    picked = inj.pick("future_date", anchor)
    for r in picked:
        est[r] = d.future_day(ctx.ref, drng)
    inj.add(picked, "成立登记日期", "future_date", "成立登记日期晚于基准日期")
    picked = inj.pick("invalid_code", anchor)
    cols["组织类型"] = replace(cols["组织类型"], picked, [INVALID_ORG_TYPE] * len(picked))
    inj.add(picked, "组织类型", "invalid_code", f"组织类型{INVALID_ORG_TYPE}不在代码表中")
    table = pa.table({
        "序号": pa.array(np.arange(1, n + 1), pa.int64()),
        "统一社会信用代码": cols["统一社会信用代码"],
        "社会组织名称": cols["社会组织名称"],
        "组织类型": cols["组织类型"],
        "法定代表人": cols["法定代表人"],
        "登记管理机关": e["registry_name"],
        "成立登记日期": ctx.dates(est, "minzheng", rng),
        "业务范围": e["scope"],
        "住所": cols["住所"],
    })
    picked = inj.pick("duplicate", anchor)
    if len(picked):
        copy = table.take(pa.array(picked))
        copy = copy.set_column(0, "序号", pa.array(np.arange(n + 1, n + len(picked) + 1), pa.int64()))
        inj.add(np.arange(n, n + len(picked)), "统一社会信用代码", "duplicate", [f"与序号{r + 1}重复" for r in picked])
        table = pa.concat_tables([table, copy])
    keys = table.column("序号").to_numpy()
    true_keys = {"统一社会信用代码": usccs + [None] * (table.num_rows - n)}
    return table, inj.manifest(keys), linkage.cases(inj, "legal_entity", true_keys, keys)
