"""市场监管 registration: qydj (企业登记) and gtgsh (个体工商户) in one database."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import defects as d
from world.sources import Context, Derived, days, replace, timestamps_between

SOURCE_QYDJ = "scjg_qydj"
SOURCE_GTGSH = "scjg_gtgsh"
REQUIRED_QYDJ = ("tyshxydm", "qymc", "fddbr", "clrq", "djzt", "zs")
REQUIRED_GTGSH = ("tyshxydm", "zhmc", "jyz", "zcrq", "djzt", "jycs")
STATUSES = ("存续", "在业", "吊销", "注销")
INVALID_STATUS = ("未知", "9", "0")


def derive(ctx: Context) -> Derived:
    """Both registration tables."""
    kind = ctx.e["kind"].to_numpy(zero_copy_only=False)
    qydj, m1 = _table(ctx, np.flatnonzero(kind == "enterprise"), SOURCE_QYDJ)
    gtgsh, m2 = _table(ctx, np.flatnonzero(kind == "individual"), SOURCE_GTGSH)
    return Derived({"qydj": qydj, "gtgsh": gtgsh}, pa.concat_tables([m1, m2]))


def _table(ctx: Context, rows: np.ndarray, source: str) -> tuple[pa.Table, pa.Table]:
    """One registration table for the entity rows (qydj layout or gtgsh layout)."""
    enterprise = source == SOURCE_QYDJ
    rng = ctx.rng(source)
    drng = ctx.rng(source, "values")
    n = len(rows)
    idx = pa.array(rows)
    e = {k: v.take(idx) for k, v in ctx.e.items()}
    inj = d.Injector(ctx.cfg, source, n, ctx.rng(source, "defects"))
    anchor = ctx.entity_lane[rows] < 0.5
    key_free = anchor & ~ctx.entity_referenced[rows]
    rep = e["rep_person_id"].to_numpy() - 1
    rep_clean = ctx.person_lane[rep] >= 0.5  # the rep's 公安 row is clean: a name conflict is measurable
    est = days(e["established"])
    ended = days(e["status_date"])
    usccs = e["uscc"].to_numpy(zero_copy_only=False)
    rep_ids = e["rep_id_number"].to_numpy(zero_copy_only=False)

    names = {"code": "tyshxydm", "name": "qymc" if enterprise else "zhmc", "rep": "fddbr" if enterprise else "jyz",
             "rep_id": "fddbr_zjhm" if enterprise else "jyz_zjhm", "date": "clrq" if enterprise else "zcrq",
             "address": "zs" if enterprise else "jycs"}
    cols: dict[str, pa.Array] = {
        "tyshxydm": ctx.messy(e["uscc"], rng, full_width=True, scale=0.5),
        names["name"]: ctx.messy(e["name"], rng, traditional=True, spaces=True),
        names["rep"]: ctx.messy(e["rep_name"], rng, traditional=True, spaces=True),
        names["rep_id"]: ctx.messy(e["rep_id_number"], rng, full_width=True, scale=0.5),
        names["address"]: ctx.messy(e["address"], rng, traditional=True, spaces=True, inner=True),
        "xzqh": e["region"],
        "djzt": e["status"],
    }
    date_days = est.copy()

    picked = inj.pick("bad_check_char", key_free, share=0.5)
    bad = [d.bad_uscc(usccs[r], drng) for r in picked]
    cols["tyshxydm"] = replace(cols["tyshxydm"], picked, [b[0] for b in bad])
    inj.add(picked, "tyshxydm", "bad_check_char", [b[1] for b in bad])
    picked = inj.pick("bad_check_char", anchor, share=0.5)
    bad = [d.bad_resident_id(rep_ids[r], drng) for r in picked]
    cols[names["rep_id"]] = replace(cols[names["rep_id"]], picked, [b[0] for b in bad])
    inj.add(picked, names["rep_id"], "bad_check_char", [b[1] for b in bad])

    required = REQUIRED_QYDJ if enterprise else REQUIRED_GTGSH
    for field in required:
        picked = inj.pick("missing_required", key_free if field == "tyshxydm" else anchor, share=1 / len(required))
        if field == names["date"]:
            date_days[picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")

    picked = inj.pick("unknown_region", anchor)
    codes = d.unknown_regions(len(picked), drng)
    cols["xzqh"] = replace(cols["xzqh"], picked, codes)
    inj.add(picked, "xzqh", "unknown_region", [f"行政区划代码{c}不存在" for c in codes])

    picked = inj.pick("future_date", anchor & np.isnat(ended))
    for r in picked:
        date_days[r] = d.future_day(ctx.ref, drng)
    inj.add(picked, names["date"], "future_date", "成立/注册日期晚于基准日期")

    picked = inj.pick("invalid_code", anchor)
    values = [d.INVALID_STATUS[int(drng.integers(0, len(INVALID_STATUS)))] if False else INVALID_STATUS[int(drng.integers(0, len(INVALID_STATUS)))] for _ in picked]
    cols["djzt"] = replace(cols["djzt"], picked, values)
    inj.add(picked, "djzt", "invalid_code", [f"登记状态{v}不在代码表中" for v in values])

    picked = inj.pick("cross_source_conflict", anchor & rep_clean)
    true_names = e["rep_name"].to_pylist()
    values = [d.different_name(true_names[r], drng) for r in picked]
    cols[names["rep"]] = replace(cols[names["rep"]], picked, values)
    inj.add(picked, names["rep"], "cross_source_conflict", [f"公安户籍姓名为{true_names[r]}" for r in picked])

    low = np.maximum(est, np.datetime64("2012-01-01"))
    low = np.where(np.isnat(ended), low, np.maximum(low, ended))
    gxsj = pa.array(timestamps_between(rng, low, np.full(n, ctx.ref)), pa.timestamp("s"))
    date_text = ctx.dates(date_days, "scjg", rng)
    pk = "qyid" if enterprise else "gtid"
    if enterprise:
        capital = e["capital"]
        table = pa.table({
            pk: pa.array(np.arange(1, n + 1), pa.int64()),
            "tyshxydm": cols["tyshxydm"], "qymc": cols["qymc"], "qylx": e["entity_type"],
            "fddbr": cols["fddbr"], "fddbr_zjhm": cols["fddbr_zjhm"],
            "zczb": pc.round(capital, 4), "clrq": date_text, "djjg": e["registry_name"], "djzt": cols["djzt"],
            "zs": cols["zs"], "xzqh": cols["xzqh"], "jyfw": e["scope"], "gxsj": gxsj,
        })
    else:
        table = pa.table({
            pk: pa.array(np.arange(1, n + 1), pa.int64()),
            "tyshxydm": cols["tyshxydm"], "zhmc": cols["zhmc"], "jyz": cols["jyz"], "jyz_zjhm": cols["jyz_zjhm"],
            "jycs": cols["jycs"], "xzqh": cols["xzqh"], "zcrq": date_text, "djzt": cols["djzt"], "gxsj": gxsj,
        })
    table = _with_duplicates(ctx, table, inj, anchor, est, names["date"], pk, rng)
    return table, inj.manifest(table.column(pk).to_numpy())


def _with_duplicates(ctx: Context, table: pa.Table, inj: d.Injector, anchor: np.ndarray, est: np.ndarray,
                     date_field: str, pk: str, rng: np.random.Generator) -> pa.Table:
    """Append near-duplicates (new id, same USCC) of clean anchor rows: re-keyed, date rewritten."""
    picked = inj.pick("duplicate", anchor)
    if not len(picked):
        return table
    n = table.num_rows
    copy = table.take(pa.array(picked))
    copy = copy.set_column(0, pk, pa.array(np.arange(n + 1, n + len(picked) + 1), pa.int64()))
    position = copy.column_names.index(date_field)
    copy = copy.set_column(position, date_field, ctx.dates(est[picked], "scjg", rng))
    inj.add(np.arange(n, n + len(picked)), "tyshxydm", "duplicate", [f"与{pk}={r + 1}重复" for r in picked])
    return pa.concat_tables([table, copy])
