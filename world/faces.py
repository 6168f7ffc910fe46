"""照面信息: the content printed on each licence, as JSON text built column-wise from the truth."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world.licences import LONG_TERM
from world.text import cat, const, iso_dates, json_objects, num


def faces(p: dict[str, pa.Array], e: dict[str, pa.Array], marriages: pa.Table, lic: pa.Table) -> pa.Array:
    """The face JSON of every licence row (rows of any types, returned in the same order)."""
    type_key = lic.column("type_key").to_numpy(zero_copy_only=False)
    kinds = np.unique(type_key).tolist()
    if len(kinds) == 1:
        return _BUILDERS[kinds[0]](p, e, marriages, lic)
    order = np.argsort(type_key, kind="stable")
    pieces = []
    for key in kinds:
        rows = np.flatnonzero(type_key == key)
        part = lic.take(pa.array(rows))
        pieces.append(_BUILDERS[key](p, e, marriages, part))
    ordered = pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return ordered.take(pa.array(inverse))


def _col(part: pa.Table, name: str) -> pa.Array:
    """A column of the licence part as one array."""
    return part.column(name).combine_chunks()


def _days(part: pa.Table, name: str) -> np.ndarray:
    """A date column as datetime64[D]."""
    return part.column(name).to_numpy().astype("datetime64[D]")


def _holders(part: pa.Table) -> pa.Array:
    """Row indices of the holders in their truth table."""
    return pa.array(part.column("holder_ref").to_numpy() - 1)


def _validity(valid_from: np.ndarray, valid_to: np.ndarray) -> pa.Array:
    """'2019-01-02至2024-01-01' or '2019-01-02至长期'."""
    nat = np.isnat(valid_to)
    to_text = iso_dates(np.where(nat, np.datetime64("2000-01-01"), valid_to))
    to_text = pc.if_else(pa.array(nat), LONG_TERM, to_text)
    return cat(iso_dates(valid_from), "至", to_text)


def _business(p: dict, e: dict, marriages: pa.Table, part: pa.Table) -> pa.Array:
    """营业执照."""
    n = part.num_rows
    index = _holders(part)
    kind = e["kind"].take(index).to_numpy(zero_copy_only=False)
    individual = pa.array(kind == "individual")
    rep = e["rep_name"].take(index)
    capital = e["capital"].take(index)
    capital_text = pc.if_else(pc.is_null(capital), pa.nulls(n, pa.string()),
                              cat(pc.cast(pc.round(pc.fill_null(capital, 0), 0).cast(pa.int64()), pa.string()), "万元人民币"))
    est = _days(part, "valid_from")
    return json_objects([
        ("名称", e["name"].take(index), "str"),
        ("统一社会信用代码", e["uscc"].take(index), "str"),
        ("类型", e["entity_type"].take(index), "str"),
        ("法定代表人", pc.if_else(individual, pa.nulls(n, pa.string()), rep), "str"),
        ("经营者", pc.if_else(individual, rep, pa.nulls(n, pa.string())), "str"),
        ("注册资本", capital_text, "str"),
        ("成立日期", iso_dates(est), "str"),
        ("营业期限", _validity(est, _days(part, "valid_to")), "str"),
        ("住所", e["address"].take(index), "str"),
        ("经营范围", e["scope"].take(index), "str"),
        ("登记机关", e["registry_name"].take(index), "str"),
    ])


def _food(p: dict, e: dict, marriages: pa.Table, part: pa.Table) -> pa.Array:
    """食品经营许可证."""
    index = _holders(part)
    catering = pc.match_substring(e["scope"].take(index), "餐")
    return json_objects([
        ("经营者名称", e["name"].take(index), "str"),
        ("社会信用代码", e["uscc"].take(index), "str"),
        ("法定代表人（负责人）", e["rep_name"].take(index), "str"),
        ("住所", e["address"].take(index), "str"),
        ("经营场所", e["address"].take(index), "str"),
        ("主体业态", pc.if_else(catering, "餐饮服务经营者", "食品销售经营者"), "str"),
        ("经营项目", pc.if_else(catering, "热食类食品制售", "预包装食品（含冷藏冷冻食品）销售"), "str"),
        ("有效期至", iso_dates(_days(part, "valid_to")), "str"),
    ])


def _medical(p: dict, e: dict, marriages: pa.Table, part: pa.Table) -> pa.Array:
    """医疗机构执业许可证."""
    index = _holders(part)
    beds = _col(part, "beds")
    hospital = pc.greater(beds, 0)
    social = pc.equal(e["kind"].take(index), "social")
    return json_objects([
        ("机构名称", e["name"].take(index), "str"),
        ("地址", e["address"].take(index), "str"),
        ("法定代表人", e["rep_name"].take(index), "str"),
        ("主要负责人", e["rep_name"].take(index), "str"),
        ("所有制形式", pc.if_else(social, "非营利性", "私营"), "str"),
        ("诊疗科目", pc.if_else(hospital, "内科；外科；妇产科；儿科；医学检验科；医学影像科", "内科；中医科；预防保健科"), "str"),
        ("床位", beds, "num"),
        ("有效期限", _validity(_days(part, "valid_from"), _days(part, "valid_to")), "str"),
    ])


def _construction(p: dict, e: dict, marriages: pa.Table, part: pa.Table) -> pa.Array:
    """建筑业企业资质证书."""
    index = _holders(part)
    return json_objects([
        ("企业名称", e["name"].take(index), "str"),
        ("统一社会信用代码", e["uscc"].take(index), "str"),
        ("法定代表人", e["rep_name"].take(index), "str"),
        ("注册地址", e["address"].take(index), "str"),
        ("资质类别及等级", _col(part, "grade"), "str"),
        ("有效期", _validity(_days(part, "valid_from"), _days(part, "valid_to")), "str"),
    ])


def _real_estate(p: dict, e: dict, marriages: pa.Table, part: pa.Table) -> pa.Array:
    """不动产权证书 (the holder may be a person or an entity)."""
    n = part.num_rows
    refs = part.column("holder_ref").to_numpy() - 1
    person_mask = pc.equal(_col(part, "holder_kind"), "person").to_numpy(zero_copy_only=False)
    # Each holder's address from its own table, then back into row order with one take.
    people, firms = np.flatnonzero(person_mask), np.flatnonzero(~person_mask)
    stacked = pa.concat_arrays([p["address"].take(pa.array(refs[people])), e["address"].take(pa.array(refs[firms]))])
    position = np.empty(n, dtype=np.int64)
    position[np.concatenate([people, firms])] = np.arange(n)
    address = stacked.take(pa.array(position))
    year = _days(part, "issue_date").astype("datetime64[Y]").astype(int) + 1970
    firm = pc.equal(_col(part, "land_use"), "商服用地/商业").to_numpy(zero_copy_only=False)
    return json_objects([
        ("权利人", _col(part, "holder_name"), "str"),
        ("共有情况", _col(part, "shared"), "str"),
        ("坐落", address, "str"),
        ("不动产单元号", _col(part, "unit_no"), "str"),
        ("权利类型", const("国有建设用地使用权/房屋所有权", n), "str"),
        ("权利性质", const("出让/市场化商品房", n), "str"),
        ("用途", _col(part, "land_use"), "str"),
        ("面积", cat("共有宗地面积", pc.cast(_col(part, "land_area"), pa.string()), "㎡/房屋建筑面积",
                    pc.cast(_col(part, "house_area"), pa.string()), "㎡"), "str"),
        ("使用期限", cat(num(year, 4), "年起", num(year + np.where(firm, 40, 70), 4), "年止"), "str"),
    ])


def _marriage(p: dict, e: dict, marriages: pa.Table, part: pa.Table) -> pa.Array:
    """结婚证: both spouses are printed on each copy."""
    events = pa.array(part.column("event_id").to_numpy() - 1)
    husband = marriages.column("husband_id").combine_chunks().take(events).to_numpy() - 1
    wife = marriages.column("wife_id").combine_chunks().take(events).to_numpy() - 1
    birth = p["birth_date"].to_numpy(zero_copy_only=False).astype("datetime64[D]")

    def party(rows: np.ndarray, sex: str) -> pa.Array:
        """The face block of one spouse."""
        index = pa.array(rows)
        return json_objects([
            ("姓名", p["name"].take(index), "str"),
            ("性别", const(sex, len(rows)), "str"),
            ("国籍", const("中国", len(rows)), "str"),
            ("出生日期", iso_dates(birth[rows]), "str"),
            ("身份证件号", p["id_number"].take(index), "str"),
        ])

    return json_objects([
        ("持证人", _col(part, "holder_name"), "str"),
        ("登记日期", iso_dates(_days(part, "issue_date")), "str"),
        ("结婚证字号", _col(part, "number"), "str"),
        ("男方", party(husband, "男"), "raw"),
        ("女方", party(wife, "女"), "raw"),
    ])


_BUILDERS = {
    "yyzz": _business, "spjy": _food, "yljg": _medical, "jzzz": _construction, "bdcq": _real_estate, "jhz": _marriage,
}
