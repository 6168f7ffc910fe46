"""市场监管 registration: qydj (企业登记) and gtgsh (个体工商户) in one database."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import defects as d
from world import linkage
from world.sources import Context, Derived, days, replace, timestamps_between

SOURCE_QYDJ = "scjg_qydj"
SOURCE_GTGSH = "scjg_gtgsh"
REQUIRED_QYDJ = ("tyshxydm", "qymc", "fddbr", "clrq", "djzt", "zs")
REQUIRED_GTGSH = ("tyshxydm", "zhmc", "jyz", "zcrq", "djzt", "jycs")
STATUSES = ("存续", "在业", "吊销", "注销")
INVALID_STATUS = ("未知", "9", "0")
# Re-filed registrations (变更登记 copies with a mistyped or missing USCC), as a multiple of the bad_check_char
# rate: the linkable company cases of record linkage (world.linkage).
REFILED_SHARE = 2.5
REFILED_MISSING = 0.6  # share of re-filed copies whose USCC is missing rather than mistyped


def derive(ctx: Context) -> Derived:
    """Both registration tables."""
    kind = ctx.e["kind"].to_numpy(zero_copy_only=False)
    qydj, m1, l1 = _table(ctx, np.flatnonzero(kind == "enterprise"), SOURCE_QYDJ)
    gtgsh, m2, l2 = _table(ctx, np.flatnonzero(kind == "individual"), SOURCE_GTGSH)
    return Derived({"qydj": qydj, "gtgsh": gtgsh}, pa.concat_tables([m1, m2]), linkage=pa.concat_tables([l1, l2]))


def _table(ctx: Context, rows: np.ndarray, source: str) -> tuple[pa.Table, pa.Table, pa.Table]:
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
    table, origin = _with_refiled(ctx, table, inj, anchor, names, pk, source)
    keys = table.column(pk).to_numpy()
    true_keys = {"tyshxydm": usccs[origin].tolist()}
    return table, inj.manifest(keys), linkage.cases(inj, "legal_entity", true_keys, keys)


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


def _with_refiled(ctx: Context, table: pa.Table, inj: d.Injector, anchor: np.ndarray, names: dict[str, str], pk: str,
                  source: str) -> tuple[pa.Table, np.ndarray]:
    """Append re-filed copies of clean rows with a broken USCC and a harmless name or address variant.

    Returns the table and, per final row, the row of the original registration (for the true USCC). Drawn after
    every other defect, from its own random stream, so the rest of the table is unchanged.
    """
    n_before = table.num_rows
    n = len(inj.free)
    # Rows before n are originals; rows after are duplicates whose original is in the manifest detail.
    origin = np.arange(n_before)
    origin[n:] = _duplicate_origins(inj, n, n_before)
    picked = inj.pick("bad_check_char", anchor, share=REFILED_SHARE)
    if not len(picked):
        return table, origin
    rng = ctx.rng(source, "refiled")
    copy = table.take(pa.array(picked))
    codes = copy.column("tyshxydm").to_pylist()
    missing = rng.random(len(picked)) < REFILED_MISSING
    broken, details = [], []
    for code, gone in zip(codes, missing.tolist()):
        if gone:
            broken.append(None)
            details.append("必填字段tyshxydm为空")
        else:
            value, detail = d.bad_uscc(code, rng)
            broken.append(value)
            details.append(detail)
    new_rows = np.arange(n_before, n_before + len(picked))
    copy = copy.set_column(0, pk, pa.array(new_rows + 1, pa.int64()))
    copy = copy.set_column(copy.column_names.index("tyshxydm"), "tyshxydm", pa.array(broken, pa.string()))
    for column, variant in ((names["name"], name_variant), (names["address"], address_variant)):
        values = [variant(v, rng) if v is not None and rng.random() < 0.5 else v for v in copy.column(column).to_pylist()]
        copy = copy.set_column(copy.column_names.index(column), column, pa.array(values, pa.string()))
    for kind, mask in (("bad_check_char", ~missing), ("missing_required", missing)):
        inj.add(new_rows[mask], "tyshxydm", kind, [t for t, m in zip(details, mask.tolist()) if m])
    return pa.concat_tables([table, copy]), np.concatenate([origin, picked])


def _duplicate_origins(inj: d.Injector, n: int, n_before: int) -> np.ndarray:
    """Original row of each appended duplicate (the duplicates were appended in the order they were picked)."""
    out = np.zeros(n_before - n, dtype=np.int64)
    for rows, _, kind, texts in inj.entries:
        if kind == "duplicate":
            out[rows - n] = [int(t.rsplit("=", 1)[1].removesuffix("重复")) - 1 for t in texts]
    return out


def name_variant(name: str, rng: np.random.Generator) -> str:
    """The same firm's name as a clerk might type it again: the other company-form suffix, or full-width brackets."""
    for long, short in (("有限责任公司", "有限公司"), ("股份有限公司", "股份公司")):
        if name.endswith(long):
            return name[: -len(long)] + short
        if name.endswith(short):
            return name[: -len(short)] + long
    return name.replace("(", "（").replace(")", "）") if "(" in name else name + " "


def address_variant(address: str, rng: np.random.Generator) -> str:
    """The same address without the province prefix, or with the house number's 号 dropped."""
    if address.startswith("湖北省") and rng.random() < 0.6:
        return address.removeprefix("湖北省")
    return address.replace("号", "", 1)
