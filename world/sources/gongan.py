"""公安 household registration (户籍人口): table hjrk, one row per resident."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import defects as d
from world import linkage
from world.persons import MARRIAGE_REGISTER_START
from world.sources import Context, Derived, days, replace, timestamps_between
from world.text import mutate

SOURCE = "gongan_hjrk"
TABLE = "hjrk"
REQUIRED = ("gmsfhm", "xm", "xb", "csrq", "hjdz_xzqh", "hjdz")
MARRIED_CODES = ("20", "21", "22", "23", "30")
GENDER_TEXT_SHARE = 0.02


def latest_marriage_event(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per person row: kind ('' none, '结婚', '离婚') and date of the latest 民政 registration on file."""
    ev = ctx.truth.marriages
    date = days(ev.column("date"))
    keep = date >= MARRIAGE_REGISTER_START
    kind = ev.column("kind").to_numpy()[keep]
    order = np.arange(int(keep.sum()))  # events are sorted by date: a higher index is later
    latest = np.full(ctx.n_persons, -1, dtype=np.int64)
    for col_name in ("husband_id", "wife_id"):
        people = ev.column(col_name).to_numpy()[keep] - 1
        np.maximum.at(latest, people, order)
    has = latest >= 0
    out_kind = np.where(has, kind[np.maximum(latest, 0)], "")
    out_date = np.where(has, date[keep][np.maximum(latest, 0)], np.datetime64("NaT"))
    return out_kind, out_date


def derive(ctx: Context) -> Derived:
    """The hjrk table with messiness and anchor defects."""
    rng = ctx.rng(SOURCE)
    p = ctx.p
    n = ctx.n_persons
    inj = d.Injector(ctx.cfg, SOURCE, n, ctx.rng(SOURCE, "defects"))
    drng = ctx.rng(SOURCE, "values")
    anchor = ctx.person_lane < 0.5
    key_free = anchor & ~ctx.person_referenced
    is18 = pc.is_null(p["legacy_id15"]).to_numpy(zero_copy_only=False)
    birth = days(p["birth_date"])
    death = days(p["death_date"])
    ids18 = p["id_number"].to_numpy(zero_copy_only=False)
    event_kind, event_date = latest_marriage_event(ctx)

    gmsfhm = ctx.messy(pc.coalesce(p["legacy_id15"], p["id_number"]), rng, full_width=True, scale=0.5)
    xm = ctx.messy(p["name"], rng, traditional=True, spaces=True)
    # Some 派出所 systems wrote the gender as 男/女 instead of the GB/T 2261.1 code.
    xb = mutate(p["gender"], rng.random(n) < GENDER_TEXT_SHARE, lambda v: {"1": "男", "2": "女"}[v])
    mz = p["ethnicity"]
    region = p["region"]
    hjdz = ctx.messy(p["address"], rng, traditional=True, spaces=True, inner=True)
    lxdh = ctx.messy(p["phone"], rng, full_width=True, spaces=True)
    hyzk = p["marital_status"]
    csrq_days = birth.copy()
    swrq_days = death.copy()

    rows = inj.pick("bad_check_char", key_free & is18)
    bad = [d.bad_resident_id(ids18[r], drng) for r in rows]
    gmsfhm = replace(gmsfhm, rows, [b[0] for b in bad])
    inj.add(rows, "gmsfhm", "bad_check_char", [b[1] for b in bad])

    columns = {"gmsfhm": gmsfhm, "xm": xm, "xb": xb, "hjdz_xzqh": region, "hjdz": hjdz}
    for field in REQUIRED:
        rows = inj.pick("missing_required", key_free if field == "gmsfhm" else anchor, share=1 / len(REQUIRED))
        if field == "csrq":
            csrq_days[rows] = np.datetime64("NaT")
        else:
            columns[field] = replace(columns[field], rows, [None] * len(rows))
        inj.add(rows, field, "missing_required", f"必填字段{field}为空")

    rows = inj.pick("id_birth_mismatch", anchor)
    for r in rows:
        csrq_days[r] = d.shifted_date(birth[r], ctx.ref, drng)
    inj.add(rows, "csrq", "id_birth_mismatch", [f"身份号码出生日期为{d.birth_text(birth[r])}" for r in rows])

    rows = inj.pick("id_gender_mismatch", anchor)
    flipped = ["2" if v == "1" else "1" for v in p["gender"].take(pa.array(rows)).to_pylist()]
    columns["xb"] = replace(columns["xb"], rows, flipped)
    inj.add(rows, "xb", "id_gender_mismatch", [f"身份号码性别码为{'2' if v == '1' else '1'}" for v in flipped])

    rows = inj.pick("unknown_region", anchor)
    codes = d.unknown_regions(len(rows), drng)
    columns["hjdz_xzqh"] = replace(columns["hjdz_xzqh"], rows, codes)
    inj.add(rows, "hjdz_xzqh", "unknown_region", [f"行政区划代码{c}不存在" for c in codes])

    rows = inj.pick("future_date", anchor)
    for r in rows:
        swrq_days[r] = d.future_day(ctx.ref, drng)
    inj.add(rows, "swrq", "future_date", "死亡日期晚于基准日期")

    no_event = event_kind == ""
    rows = inj.pick("invalid_code", anchor, share=0.5)
    values = [d.INVALID_ETHNICITY[int(drng.integers(0, len(d.INVALID_ETHNICITY)))] for _ in rows]
    mz = replace(mz, rows, values)
    inj.add(rows, "mz", "invalid_code", [f"民族代码{v}不在GB 3304中" for v in values])
    rows = inj.pick("invalid_code", anchor & no_event, share=0.5)
    values = [d.INVALID_MARITAL[int(drng.integers(0, len(d.INVALID_MARITAL)))] for _ in rows]
    hyzk = replace(hyzk, rows, values)
    inj.add(rows, "hyzk", "invalid_code", [f"婚姻状况代码{v}不在GB/T 2261.2中" for v in values])

    rows = inj.pick("cross_source_conflict", anchor & ~no_event)
    values, details = [], []
    for r in rows:
        married = event_kind[r] == "结婚"
        values.append(("10" if drng.random() < 0.5 else "40") if married else ("20" if drng.random() < 0.5 else "10"))
        details.append(f"民政最近登记为{event_kind[r]}({d.birth_text(event_date[r])})，户籍婚姻状况为{values[-1]}")
    hyzk = replace(hyzk, rows, values)
    inj.add(rows, "hyzk", "cross_source_conflict", details)

    low = np.maximum(birth, np.datetime64("2010-01-01"))
    low = np.where(np.isnat(death), low, np.maximum(low, death))
    gxsj = timestamps_between(rng, low, np.full(n, ctx.ref))
    table = pa.table({
        "rkid": pa.array(np.arange(1, n + 1), pa.int64()),
        "gmsfhm": columns["gmsfhm"],
        "xm": columns["xm"],
        "xb": columns["xb"],
        "mz": mz,
        "csrq": ctx.dates(csrq_days, "gongan", rng),
        "hjdz_xzqh": columns["hjdz_xzqh"],
        "hjdz": columns["hjdz"],
        "lxdh": lxdh,
        "hyzk": hyzk,
        "swrq": ctx.dates(swrq_days, "gongan", rng),
        "gxsj": pa.array(gxsj, pa.timestamp("s")),
    })
    table = _with_duplicates(ctx, table, inj, anchor, is18, rng)
    keys = table.column("rkid").to_numpy()
    extra = [None] * (table.num_rows - n)
    hard = np.concatenate([namesakes(ctx), np.zeros(len(extra), dtype=bool)])
    cases = linkage.cases(inj, "population", {"gmsfhm": ctx.p["id_number"].to_pylist() + extra}, keys, hard)
    return Derived({TABLE: table}, inj.manifest(keys), linkage=cases)


def namesakes(ctx: Context) -> np.ndarray:
    """Per person: has a planted namesake (world.linkage); False for truths without the column."""
    if "namesake_of" not in ctx.p:
        return np.zeros(ctx.n_persons, dtype=bool)
    return pc.is_valid(ctx.p["namesake_of"]).to_numpy(zero_copy_only=False)


def _with_duplicates(ctx: Context, table: pa.Table, inj: d.Injector, anchor: np.ndarray, is18: np.ndarray,
                     rng: np.random.Generator) -> pa.Table:
    """Append near-duplicate rows (new rkid, same person) of clean anchor rows."""
    rows = inj.pick("duplicate", anchor)
    if not len(rows):
        return table
    n = table.num_rows
    copy = table.take(pa.array(rows))
    # Near-duplicates: a later update, another date style, the other ID form for legacy numbers.
    birth = days(ctx.p["birth_date"].take(pa.array(rows)))
    csrq = ctx.dates(birth, "gongan", rng)
    ids18 = ctx.p["id_number"].take(pa.array(rows))
    gmsfhm = pc.if_else(pa.array(~is18[rows] & (rng.random(len(rows)) < 0.5)), ids18, copy.column("gmsfhm").combine_chunks())
    gxsj = copy.column("gxsj").to_numpy().astype("datetime64[s]")
    later = gxsj + (rng.random(len(rows)) * (ctx.ref.astype("datetime64[s]") - gxsj).astype(np.int64)).astype(np.int64).astype("timedelta64[s]")
    copy = copy.set_column(0, "rkid", pa.array(np.arange(n + 1, n + len(rows) + 1), pa.int64()))
    copy = copy.set_column(1, "gmsfhm", gmsfhm)
    copy = copy.set_column(5, "csrq", csrq)
    copy = copy.set_column(11, "gxsj", pa.array(later, pa.timestamp("s")))
    inj.add(np.arange(n, n + len(rows)), "gmsfhm", "duplicate", [f"与rkid={r + 1}重复" for r in rows])
    return pa.concat_tables([table, copy])
