"""法院 失信被执行人 list: court/sxbzxr.jsonl, served page by page by `hub world serve`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import defects as d
from world.sources import Context, Derived, days, replace

SOURCE = "court_sxbzxr"
REQUIRED = ("iname", "cardNum", "courtName", "caseCode", "publishDate")
# JSON key → STANDARDS.md field (the keys follow the public court query service).
FIELDS = {
    "id": "记录编号",
    "iname": "被执行人姓名/名称",
    "cardNum": "证件号码/组织机构代码",
    "sexName": "性别",
    "businessEntity": "法定代表人",
    "courtName": "执行法院",
    "areaName": "省份",
    "gistId": "执行依据文号",
    "regDate": "立案时间",
    "caseCode": "案号",
    "gistUnit": "做出执行依据单位",
    "duty": "生效法律文书确定的义务",
    "performance": "履行情况",
    "disruptTypeName": "失信行为具体情形",
    "publishDate": "发布时间",
    "updatedAt": "更新时间",
}


def derive(ctx: Context) -> Derived:
    """The court list with messiness (Chinese-style dates) and defects."""
    t = ctx.truth.credit["sxbzxr"]
    n = t.num_rows
    rng = ctx.rng(SOURCE)
    drng = ctx.rng(SOURCE, "values")
    inj = d.Injector(ctx.cfg, SOURCE, n, ctx.rng(SOURCE, "defects"))
    c = {name: t.column(name).combine_chunks() for name in t.column_names}
    person = c["subject_kind"].to_numpy(zero_copy_only=False) == "person"
    cols = {k: c[k] for k in FIELDS if k not in ("regDate", "publishDate")}
    cols["iname"] = ctx.messy(cols["iname"], rng, traditional=True, spaces=True)
    reg = days(c["regDate"])
    published = days(c["publishDate"])

    fab = ctx.fabricator(SOURCE)
    picked = inj.pick("orphan_subject")
    people, firms = picked[person[picked]], picked[~person[picked]]
    p_names, p_ids = fab.persons(len(people))
    f_names, f_codes = fab.entities(len(firms))
    cols["iname"] = replace(cols["iname"], np.r_[people, firms], p_names + f_names)
    cols["cardNum"] = replace(cols["cardNum"], np.r_[people, firms], p_ids + f_codes)
    inj.add(np.r_[people, firms], "cardNum", "orphan_subject", "被执行人在人口库和法人库中均不存在")

    for field in REQUIRED:
        picked = inj.pick("missing_required", None, share=1 / len(REQUIRED))
        if field == "publishDate":
            published[picked] = np.datetime64("NaT")
        else:
            cols[field] = replace(cols[field], picked, [None] * len(picked))
        inj.add(picked, field, "missing_required", f"必填字段{field}为空")

    picked = inj.pick("future_date")
    for r in picked:
        published[r] = d.future_day(ctx.ref, drng)
    inj.add(picked, "publishDate", "future_date", "发布时间晚于基准日期")

    updated = c["updatedAt"]
    table = pa.table({
        "id": cols["id"],
        "iname": cols["iname"],
        "cardNum": cols["cardNum"],
        "sexName": cols["sexName"],
        "businessEntity": cols["businessEntity"],
        "courtName": cols["courtName"],
        "areaName": cols["areaName"],
        "gistId": cols["gistId"],
        "regDate": ctx.dates(reg, "court", rng),
        "caseCode": cols["caseCode"],
        "gistUnit": cols["gistUnit"],
        "duty": cols["duty"],
        "performance": cols["performance"],
        "disruptTypeName": cols["disruptTypeName"],
        "publishDate": ctx.dates(published, "court", rng),
        "updatedAt": pc.strftime(updated, format="%Y-%m-%dT%H:%M:%S"),
    })
    picked = inj.pick("duplicate")
    if len(picked):
        copy = table.take(pa.array(picked))
        copy = copy.set_column(0, "id", pa.array(np.arange(n + 1, n + len(picked) + 1), pa.int64()))
        inj.add(np.arange(n, n + len(picked)), "caseCode", "duplicate", [f"与id={r + 1}为同一案件" for r in picked])
        table = pa.concat_tables([table, copy])
    return Derived({"sxbzxr": table}, inj.manifest(table.column("id").to_numpy()))
