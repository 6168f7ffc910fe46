"""Licence file drops of the issuing departments (JSON Lines or CSV, one file per licence type and year)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from world import defects as d
from world import ids
from world.faces import faces
from world.licences import LICENCE_TYPES, LONG_TERM
from world.sources import Context, Derived, days, replace
from world.text import cat, const, num

REQUIRED = ("证照编号", "颁发机构", "颁发日期", "持证主体", "持证主体代码")
COLUMNS = ("证照名称", "证照类型代码", "证照编号", "证照标识", "颁发机构", "颁发机构代码", "颁发日期", "持证主体",
           "持证主体代码", "持证主体代码类型", "有效期起始日期", "有效期截止日期", "证照状态", "照面信息")
DEPARTMENTS = tuple(dict.fromkeys(t.dept for t in LICENCE_TYPES))


def source_id(dept: str) -> str:
    """Source id of a department's licence drop."""
    return f"licence_{dept}"


def file_format(dept: str) -> str:
    """'jsonl' or 'csv' (all types of one department share a format)."""
    return next(t.file_format for t in LICENCE_TYPES if t.dept == dept)


def derive(ctx: Context, dept: str) -> Derived:
    """The licences one department issued, as it drops them (证照标识 is the primary key)."""
    source = source_id(dept)
    lic = ctx.truth.licences
    rows = np.flatnonzero(lic.column("dept").to_numpy() == dept)
    # Rows in file order (type, then issue year): each file is then one contiguous slice.
    year = lic.column("issue_date").to_numpy()[rows].astype("datetime64[Y]").astype(np.int64)
    type_rank = pd.factorize(lic.column("type_key").to_numpy()[rows], sort=True)[0]
    rows = rows[np.lexsort((year, type_rank))]
    t = lic.take(pa.array(rows))
    n = len(rows)
    rng = ctx.rng(source)
    drng = ctx.rng(source, "values")
    inj = d.Injector(ctx.cfg, source, n, ctx.rng(source, "defects"))
    c = {name: t.column(name).combine_chunks() for name in t.column_names}
    issue = days(c["issue_date"])
    valid_from = days(c["valid_from"])
    valid_to = days(c["valid_to"])
    status = c["status"]
    holder_kind = c["holder_kind"].to_numpy(zero_copy_only=False)
    cols: dict[str, pa.Array] = {
        "证照编号": c["number"],
        "证照标识": c["identifier"],
        "颁发机构": c["issuer_name"],
        "持证主体": ctx.messy(c["holder_name"], rng, traditional=True, spaces=True, scale=0.5),
        "持证主体代码": c["holder_code"],
        "持证主体代码类型": c["holder_code_type"],
        "证照状态": status,
    }
    identifiers = c["identifier"].to_pylist()

    picked = inj.pick("bad_check_char")
    bad = [d.bad_licence_id(identifiers[r], drng) for r in picked]
    cols["证照标识"] = replace(cols["证照标识"], picked, [b[0] for b in bad])
    inj.add(picked, "证照标识", "bad_check_char", [b[1] for b in bad])

    fab = ctx.fabricator(source)
    picked = inj.pick("orphan_holder")
    people = picked[holder_kind[picked] == "person"]
    firms = picked[holder_kind[picked] != "person"]
    p_names, p_ids = fab.persons(len(people))
    f_names, f_codes = fab.entities(len(firms))
    cols["持证主体"] = replace(cols["持证主体"], np.r_[people, firms], p_names + f_names)
    cols["持证主体代码"] = replace(cols["持证主体代码"], np.r_[people, firms], p_ids + f_codes)
    inj.add(np.r_[people, firms], "持证主体代码", "orphan_holder", "持证主体在人口库和法人库中均不存在")

    expired = pc.equal(status, "已过期").to_numpy(zero_copy_only=False)
    picked = inj.pick("expired_still_valid", expired)
    cols["证照状态"] = replace(cols["证照状态"], picked, ["有效"] * len(picked))
    inj.add(picked, "证照状态", "expired_still_valid",
            [f"有效期截止日期{d.birth_text(valid_to[r])}早于基准日期仍标记为有效" for r in picked])

    for field in REQUIRED:
        picked = inj.pick("missing_required", None, share=1 / len(REQUIRED))
        if field == "颁发日期":
            issue[picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")

    picked = inj.pick("future_date")
    for r in picked:
        issue[r] = d.future_day(ctx.ref, drng)
    inj.add(picked, "颁发日期", "future_date", "颁发日期晚于基准日期")

    picked = inj.pick("invalid_code")
    values = [d.INVALID_HOLDER_CODE_TYPE[int(drng.integers(0, 2))] for _ in picked]
    cols["持证主体代码类型"] = replace(cols["持证主体代码类型"], picked, values)
    inj.add(picked, "持证主体代码类型", "invalid_code", [f"持证主体代码类型{v}不是111/001" for v in values])

    valid_to_text = pc.fill_null(ctx.dates(valid_to, "licence", rng), LONG_TERM)
    table = pa.table({
        "证照名称": c["type_name"],
        "证照类型代码": c["type_code"],
        "证照编号": cols["证照编号"],
        "证照标识": cols["证照标识"],
        "颁发机构": cols["颁发机构"],
        "颁发机构代码": c["issuer_code"],
        "颁发日期": ctx.dates(issue, "licence", rng),
        "持证主体": cols["持证主体"],
        "持证主体代码": cols["持证主体代码"],
        "持证主体代码类型": cols["持证主体代码类型"],
        "有效期起始日期": ctx.dates(valid_from, "licence", rng),
        "有效期截止日期": valid_to_text,
        "证照状态": cols["证照状态"],
        "照面信息": faces(ctx.p, ctx.e, ctx.truth.marriages, t),
    })
    year = days(c["issue_date"]).astype("datetime64[Y]").astype(int) + 1970
    type_key = c["type_key"].to_numpy(zero_copy_only=False)
    picked = inj.pick("duplicate")
    if len(picked):
        copy = table.take(pa.array(picked))
        serial = cat("R", num(np.arange(1, len(picked) + 1) + rows.max(), 11))
        new_ids = ids.licence_identifiers(c["type_code"].take(pa.array(picked)), c["issuer_code"].take(pa.array(picked)),
                                          serial, const("001", len(picked)))
        copy = copy.set_column(3, "证照标识", new_ids)
        inj.add(np.arange(n, n + len(picked)), "证照标识", "duplicate",
                [f"与证照标识{identifiers[r]}为同一证照" for r in picked])
        table = pa.concat_tables([table, copy])
        year = np.concatenate([year, year[picked]])
        type_key = np.concatenate([type_key, type_key[picked]])
    group = np.array([f"{k}_{y}" for k, y in zip(type_key, year)], dtype=object)
    return Derived({"licences": table}, inj.manifest(table.column("证照标识").to_numpy()), {"licences": group})
