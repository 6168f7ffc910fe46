"""The true electronic licences (GB/T 36903 metadata, GB/T 36904 identifiers) of persons and entities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from world import departments, ids, regions
from world.config import WorldConfig, rng_for
from world.persons import DAYS_PER_YEAR, MARRIAGE_REGISTER_START
from world.text import cat, const, num

TOTAL_PER_SCALE = 1_000_000
ELECTRONIC_FROM = np.datetime64("2018-01-01")  # electronic business licences were rolled out from 2018
REAL_ESTATE_FROM = np.datetime64("2015-03-01")  # unified real-estate registration
LONG_TERM = "长期"


@dataclass(frozen=True)
class LicenceType:
    """One licence type: key, Chinese name, issuing department kind, type-code suffix, file format."""

    key: str
    name: str
    dept: str
    table_code: str  # code in the schemas licence_types table (which holds the 证照类型代码)
    file_format: str


LICENCE_TYPES: tuple[LicenceType, ...] = (
    LicenceType("yyzz", "营业执照", "scjg", "business_licence", "jsonl"),
    LicenceType("spjy", "食品经营许可证", "scjg", "food_business_licence", "jsonl"),
    LicenceType("yljg", "医疗机构执业许可证", "weijian", "medical_institution_licence", "csv"),
    LicenceType("jzzz", "建筑业企业资质证书", "zhujian", "construction_qualification", "csv"),
    LicenceType("bdcq", "不动产权证书", "zrzy", "real_estate_certificate", "jsonl"),
    LicenceType("jhz", "结婚证", "minzheng", "marriage_certificate", "csv"),
)
TYPES_BY_KEY = {t.key: t for t in LICENCE_TYPES}
STATUSES = ("有效", "已注销", "已吊销", "已过期")
FACE_FACTS = {
    "event_id": pa.int64(), "beds": pa.int64(), "grade": pa.string(), "unit_no": pa.string(),
    "land_area": pa.float64(), "house_area": pa.float64(), "shared": pa.string(), "land_use": pa.string(),
}
GRADES = ("建筑工程施工总承包二级", "建筑工程施工总承包三级", "市政公用工程施工总承包三级",
          "建筑装修装饰工程专业承包二级", "地基基础工程专业承包三级")


def type_code(t: LicenceType) -> str:
    """证照类型代码 of a licence type, as the hub's code table records it."""
    from schemas.code_tables import load_table

    row = load_table("licence_types").row(t.table_code)
    if row is None or row.get("label") != t.name:
        raise LookupError(f"licence_types 代码表缺少 {t.table_code} ({t.name})")
    return row["type_code"]


def build(cfg: WorldConfig, persons: pa.Table, entities: pa.Table, events: pa.Table, depts: pa.Table) -> pa.Table:
    """All licences of the truth, one row each, ordered by type then issue."""
    rng = rng_for(cfg.seed, "licences")
    ctx = _Context(cfg, persons, entities, events, depts)
    blocks = [
        _business(ctx, rng), _food(ctx, rng), _medical(ctx, rng), _construction(ctx, rng), _marriage(ctx, rng),
    ]
    target = max(50, int(round(TOTAL_PER_SCALE * cfg.scale)))
    remaining = max(target - sum(b.num_rows for b in blocks), int(0.1 * target))
    blocks.insert(4, _real_estate(ctx, rng, remaining))
    table = pa.concat_tables(blocks)
    n = table.num_rows
    licence_id = np.arange(1, n + 1)
    issue = table.column("issue_date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    year = issue.astype("datetime64[Y]").astype(int) + 1970
    serial = cat(num(year, 4), num(licence_id, 8))
    version = pc.if_else(pa.array(rng.random(n) < 0.05), "002", "001")
    table = table.combine_chunks()
    identifier = ids.licence_identifiers(table.column("type_code").chunk(0), table.column("issuer_code").chunk(0),
                                         serial, version)
    table = table.add_column(0, "licence_id", pa.array(licence_id, pa.int64()))
    return table.add_column(1, "identifier", identifier)


class _Context:
    """Truth tables and lookups shared by the per-type builders."""

    def __init__(self, cfg: WorldConfig, persons: pa.Table, entities: pa.Table, events: pa.Table, depts: pa.Table):
        """Index the truth for fast column access."""
        self.cfg = cfg
        self.ref = cfg.ref
        self.persons = persons
        self.entities = entities
        self.events = events
        self.depts = depts
        self.dept_row = {k: i for i, k in enumerate(depts.column("dept_key").to_pylist())}
        self.e = {name: entities.column(name).combine_chunks() for name in entities.column_names}
        self.p = {name: persons.column(name).combine_chunks() for name in persons.column_names}
        self.kind = self.e["kind"].to_numpy(zero_copy_only=False)
        self.status = self.e["status"].to_numpy(zero_copy_only=False)
        self.est = self.e["established"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
        self.ended = self.e["status_date"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
        self.region = self.e["region"].to_numpy(zero_copy_only=False).astype(str)
        self.hint = self.e["licence_hint"].to_numpy(zero_copy_only=False)
        self.active = np.isin(self.status, ["存续", "在业", "正常"])

    def type_code(self, t: LicenceType) -> str:
        """证照类型代码 (defining body's USCC + 3 digits) from the schemas licence_types table."""
        return type_code(t)

    def dept_rows(self, kind: str, region_codes: np.ndarray) -> np.ndarray:
        """Rows in the department table of (kind, region) pairs."""
        codes, uniq = pd.factorize(np.asarray(region_codes, dtype=object))
        rows = np.array([self.dept_row[f"{kind}/{r}"] for r in uniq], dtype=np.int64)
        return rows[codes]

    def issuer_columns(self, rows: np.ndarray) -> dict[str, pa.Array]:
        """颁发机构 and 颁发机构代码 for department rows."""
        index = pa.array(rows)
        d = self.depts
        return {"issuer_name": d.column("name").combine_chunks().take(index),
                "issuer_code": d.column("uscc").combine_chunks().take(index),
                "issuer_key": d.column("dept_key").combine_chunks().take(index)}

    def entity_holder(self, rows: np.ndarray) -> dict[str, pa.Array]:
        """持证主体 columns for entity rows."""
        index = pa.array(rows)
        return {
            "holder_name": self.e["name"].take(index),
            "holder_code": self.e["uscc"].take(index),
            "holder_code_type": const("001", len(rows)),
            "holder_kind": const("entity", len(rows)),
            "holder_ref": self.e["entity_id"].take(index),
        }

    def person_holder(self, rows: np.ndarray) -> dict[str, pa.Array]:
        """持证主体 columns for person rows."""
        index = pa.array(rows)
        return {
            "holder_name": self.p["name"].take(index),
            "holder_code": self.p["id_number"].take(index),
            "holder_code_type": const("111", len(rows)),
            "holder_kind": const("person", len(rows)),
            "holder_ref": self.p["person_id"].take(index),
        }


def _random_between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A random day in [low, high) (low where the range is empty)."""
    span = np.maximum((high - low).astype(np.int64), 1)
    return low + (rng.random(len(low)) * span).astype(np.int64).astype("timedelta64[D]")


def _add_years(days: np.ndarray, years: int | np.ndarray) -> np.ndarray:
    """The day before the same date `years` later (validity periods end the day before)."""
    return days + (np.asarray(years) * DAYS_PER_YEAR).astype(np.int64).astype("timedelta64[D]") - np.timedelta64(1, "D")


def _finish(ctx: _Context, t: LicenceType, cols: dict[str, object], n: int) -> pa.Table:
    """A licence block with the common columns in a fixed order."""
    valid_to = np.asarray(cols["valid_to"], dtype="datetime64[D]")
    out = {
        "type_key": const(t.key, n),
        "type_name": const(t.name, n),
        "type_code": const(ctx.type_code(t), n),
        "dept": const(t.dept, n),
        "number": cols["number"],
        "issuer_name": cols["issuer_name"],
        "issuer_code": cols["issuer_code"],
        "issuer_key": cols["issuer_key"],
        "issue_date": pa.array(np.asarray(cols["issue_date"], dtype="datetime64[D]"), pa.date32()),
        "holder_name": cols["holder_name"],
        "holder_code": cols["holder_code"],
        "holder_code_type": cols["holder_code_type"],
        "holder_kind": cols["holder_kind"],
        "holder_ref": cols["holder_ref"],
        "valid_from": pa.array(np.asarray(cols["valid_from"], dtype="datetime64[D]"), pa.date32()),
        "valid_to": pa.array(valid_to, pa.date32()),
        "status": pa.array(np.asarray(cols["status"], dtype=object), pa.string()),
    }
    # Facts printed on the licence face that no other truth table holds (null for other types).
    for name, kind in FACE_FACTS.items():
        value = cols.get(name)
        out[name] = pa.nulls(n, kind) if value is None else (value.cast(kind) if isinstance(value, pa.Array) else pa.array(value, kind))
    return pa.table(out)


def _status_for(ctx: _Context, rows: np.ndarray, valid_to: np.ndarray) -> np.ndarray:
    """有效 / 已过期 / 已注销 / 已吊销 from the holder's status and the validity end."""
    status = np.full(len(rows), "有效", dtype=object)
    expired = ~np.isnat(valid_to) & (valid_to < ctx.ref)
    status[expired] = "已过期"
    status[ctx.status[rows] == "注销"] = "已注销"
    status[ctx.status[rows] == "吊销"] = "已吊销"
    return status


def _city_codes(region_codes: np.ndarray) -> np.ndarray:
    """The prefecture code of each county (the county itself for 省直辖 units)."""
    codes, uniq = pd.factorize(np.asarray(region_codes, dtype=object))
    return np.array([regions.city_of(c) or c for c in uniq], dtype=object)[codes]


def _alive_until(ctx: _Context, rows: np.ndarray) -> np.ndarray:
    """Last day an entity existed (the reference date for living ones)."""
    end = ctx.ended[rows]
    return np.where(np.isnat(end), ctx.ref, end)


def _business(ctx: _Context, rng: np.random.Generator) -> pa.Table:
    """营业执照 of enterprises and 个体工商户 that existed after electronic licences arrived."""
    t = TYPES_BY_KEY["yyzz"]
    until = _alive_until(ctx, np.arange(len(ctx.kind)))
    rows = np.flatnonzero(np.isin(ctx.kind, ["enterprise", "individual"]) & (until >= ELECTRONIC_FROM + 180))
    n = len(rows)
    est = ctx.est[rows]
    issue = np.where(est >= ELECTRONIC_FROM, est, _random_between(rng, np.full(n, ELECTRONIC_FROM), until[rows]))
    term = rng.choice(np.array([0, 20, 30, 50]), size=n, p=[0.8, 0.06, 0.09, 0.05])
    valid_to = np.where(term > 0, _add_years(est, term), np.datetime64("NaT"))
    valid_to = np.where(valid_to < ctx.ref, np.datetime64("NaT"), valid_to)  # living firms never outlive their term
    registry = np.array([ctx.dept_row[k] for k in ctx.e["registry_key"].take(pa.array(rows)).to_pylist()])
    year = issue.astype("datetime64[Y]").astype(int) + 1970
    reg_region = np.array([k.split("/")[1] for k in ctx.e["registry_key"].take(pa.array(rows)).to_pylist()], dtype=object)
    number = cat(pa.array(reg_region, pa.string()), num(year, 4), num(np.arange(1, n + 1), 7))
    cols = {"number": number, "issue_date": issue, "valid_from": est, "valid_to": valid_to,
            "status": _status_for(ctx, rows, valid_to),
            **ctx.issuer_columns(registry), **ctx.entity_holder(rows)}
    return _finish(ctx, t, cols, n)


def _periodic(ctx: _Context, rng: np.random.Generator, rows: np.ndarray, years: np.ndarray, since_years: int) -> tuple[np.ndarray, np.ndarray]:
    """Issue day and validity end for renewable licences issued in the last `since_years` years."""
    low = np.maximum(ctx.est[rows], ctx.ref - int(since_years * DAYS_PER_YEAR))
    issue = _random_between(rng, low, _alive_until(ctx, rows))
    return issue, _add_years(issue, years)


def _food(ctx: _Context, rng: np.random.Generator) -> pa.Table:
    """食品经营许可证 of food sellers and caterers (5 years)."""
    t = TYPES_BY_KEY["spjy"]
    until = _alive_until(ctx, np.arange(len(ctx.kind)))
    rows = np.flatnonzero((ctx.hint == "food") & (until >= ctx.ref - 8 * 365) & (rng.random(len(ctx.kind)) < 0.85))
    n = len(rows)
    issue, valid_to = _periodic(ctx, rng, rows, np.full(n, 5), 8)
    catering = np.array(["餐" in s or "小餐饮" in s for s in ctx.e["scope"].take(pa.array(rows)).to_pylist()])
    issuer = ctx.dept_rows("scjg", ctx.region[rows])
    number = cat("JY", pa.array(np.where(catering, "2", "1").astype(object)), pa.array(ctx.region[rows].astype(object)),
                 num(np.arange(1, n + 1), 7))
    cols = {"number": number, "issue_date": issue, "valid_from": issue, "valid_to": valid_to,
            "status": _status_for(ctx, rows, valid_to),
            **ctx.issuer_columns(issuer), **ctx.entity_holder(rows)}
    return _finish(ctx, t, cols, n)


def _medical(ctx: _Context, rng: np.random.Generator) -> pa.Table:
    """医疗机构执业许可证 of hospitals and clinics (5 years; 15 for hospitals)."""
    t = TYPES_BY_KEY["yljg"]
    until = _alive_until(ctx, np.arange(len(ctx.kind)))
    rows = np.flatnonzero((ctx.hint == "weijian") & (until >= ctx.ref - 10 * 365) & (rng.random(len(ctx.kind)) < 0.9))
    n = len(rows)
    names = ctx.e["name"].take(pa.array(rows)).to_pylist()
    hospital = np.array(["医院" in v for v in names])
    issue, valid_to = _periodic(ctx, rng, rows, np.where(hospital, 15, 5), 10)
    issuer_region = np.where(hospital, np.array([regions.city_of(r) or r for r in ctx.region[rows]]), ctx.region[rows])
    issuer = ctx.dept_rows("weijian", issuer_region)
    org = ctx.e["org_code"].take(pa.array(rows))
    number = cat("PDY", org, pa.array(ctx.region[rows].astype(object)), num(np.arange(1, n + 1) % 10000, 4))
    beds = np.where(hospital, rng.integers(20, 500, n), 0)
    cols = {"number": number, "issue_date": issue, "valid_from": issue, "valid_to": valid_to,
            "status": _status_for(ctx, rows, valid_to), "beds": beds,
            **ctx.issuer_columns(issuer), **ctx.entity_holder(rows)}
    return _finish(ctx, t, cols, n)


def _construction(ctx: _Context, rng: np.random.Generator) -> pa.Table:
    """建筑业企业资质证书 of construction enterprises (5 years)."""
    t = TYPES_BY_KEY["jzzz"]
    until = _alive_until(ctx, np.arange(len(ctx.kind)))
    rows = np.flatnonzero((ctx.hint == "zhujian") & (ctx.kind == "enterprise") & (until >= ctx.ref - 8 * 365))
    n = len(rows)
    issue, valid_to = _periodic(ctx, rng, rows, np.full(n, 5), 8)
    provincial = rng.random(n) < 0.3
    issuer_region = np.where(provincial, "420000", np.array([regions.city_of(r) or r for r in ctx.region[rows]]))
    issuer = ctx.dept_rows("zhujian", issuer_region)
    number = cat("D", pa.array(np.where(provincial, "3", "2").astype(object)), "42", num(np.arange(1, n + 1), 6))
    grade = np.array(GRADES, dtype=object)[rng.integers(0, len(GRADES), n)]
    cols = {"number": number, "issue_date": issue, "valid_from": issue, "valid_to": valid_to,
            "status": _status_for(ctx, rows, valid_to), "grade": grade,
            **ctx.issuer_columns(issuer), **ctx.entity_holder(rows)}
    return _finish(ctx, t, cols, n)


def _real_estate(ctx: _Context, rng: np.random.Generator, count: int) -> pa.Table:
    """不动产权证书 of living adults (most) and active enterprises (long-term, some cancelled on sale)."""
    t = TYPES_BY_KEY["bdcq"]
    p = ctx.persons
    birth = p.column("birth_date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    alive = pc.is_null(p.column("death_date")).to_numpy(zero_copy_only=False)
    adult_from = birth + int(20 * DAYS_PER_YEAR) + 1
    owners = np.flatnonzero(alive & (adult_from < ctx.ref - 30))
    active_firms = np.flatnonzero((ctx.kind == "enterprise") & ctx.active)
    n_firm = min(int(count * 0.12), len(active_firms) * 3)
    n_person = count - n_firm
    person_rows = np.sort(owners[rng.integers(0, len(owners), n_person)])
    firm_rows = np.sort(active_firms[rng.integers(0, len(active_firms), n_firm)]) if n_firm else np.zeros(0, np.int64)
    person_issue = _random_between(rng, np.maximum(adult_from[person_rows], REAL_ESTATE_FROM), np.full(n_person, ctx.ref))
    firm_issue = _random_between(rng, np.maximum(ctx.est[firm_rows], REAL_ESTATE_FROM), np.full(n_firm, ctx.ref))
    issue = np.concatenate([person_issue, firm_issue])
    person_region = p.column("region").to_numpy(zero_copy_only=False)[person_rows].astype(str)
    region = np.concatenate([person_region, ctx.region[firm_rows]])
    issuer_region = _city_codes(region)
    issuer = ctx.dept_rows("zrzy", issuer_region)
    holder = {k: pa.concat_arrays([ctx.person_holder(person_rows)[k], ctx.entity_holder(firm_rows)[k]])
              for k in ("holder_name", "holder_code", "holder_code_type", "holder_kind", "holder_ref")}
    n = count
    year = issue.astype("datetime64[Y]").astype(int) + 1970
    city_names = {c: departments.place_name(c) if c[2:4] == "90" or not c.endswith("00") else regions.current_name(c)
                  for c in set(issuer_region.tolist())}
    place = pa.array([city_names[c] for c in issuer_region], pa.string())
    number = cat("鄂(", num(year, 4), ")", place, "不动产权第", num(np.arange(1, n + 1), 7), "号")
    unit = cat(pa.array(region.astype(object)), num(rng.integers(0, 1_000_000, n), 6), "GB",
               num(rng.integers(0, 100_000, n), 5), "F", num(rng.integers(0, 100_000_000, n), 8))
    house = np.round(rng.gamma(6, 18, n), 2)
    land = np.round(house * rng.uniform(20, 80, n), 2)
    firm = np.r_[np.zeros(n_person, bool), np.ones(n_firm, bool)]
    use = np.where(firm, "商服用地/商业", "城镇住宅用地/住宅")
    shared = np.where(firm | (rng.random(n) < 0.5), "单独所有", "共同共有")
    status = np.where(rng.random(n) < 0.05, "已注销", "有效")
    cols = {"number": number, "issue_date": issue, "valid_from": issue, "valid_to": np.full(n, np.datetime64("NaT")),
            "status": status, "unit_no": unit, "land_area": land, "house_area": house, "shared": shared,
            "land_use": use, **ctx.issuer_columns(issuer), **holder}
    return _finish(ctx, t, cols, n)


def _marriage(ctx: _Context, rng: np.random.Generator) -> pa.Table:
    """结婚证 (one per spouse) of marriages registered since electronic registration began."""
    t = TYPES_BY_KEY["jhz"]
    ev = ctx.events
    date = ev.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    kind = ev.column("kind").to_numpy(zero_copy_only=False)
    rows = np.flatnonzero((kind == "结婚") & (date >= MARRIAGE_REGISTER_START))
    husband = ev.column("husband_id").to_numpy(zero_copy_only=False)[rows] - 1
    wife = ev.column("wife_id").to_numpy(zero_copy_only=False)[rows] - 1
    divorced_pairs = set(zip(ev.column("husband_id").to_numpy(zero_copy_only=False)[kind == "离婚"].tolist(),
                             ev.column("wife_id").to_numpy(zero_copy_only=False)[kind == "离婚"].tolist()))
    divorced = np.array([(h + 1, w + 1) in divorced_pairs for h, w in zip(husband, wife)], dtype=bool)
    k = len(rows)
    # Interleave: husband's certificate, then wife's, for each marriage.
    holder_rows = np.empty(2 * k, dtype=np.int64)
    holder_rows[0::2] = husband
    holder_rows[1::2] = wife
    event_rows = np.repeat(rows, 2)
    n = 2 * k
    issue = date[event_rows]
    office = ev.column("office_region").to_numpy(zero_copy_only=False)[event_rows].astype(str)
    issuer = ctx.dept_rows("minzheng", office)
    cert = ev.column("certificate_no").combine_chunks().take(pa.array(event_rows))
    holder = ctx.person_holder(holder_rows)
    status = np.where(np.repeat(divorced, 2), "已注销", "有效")
    cols = {"number": cert, "issue_date": issue, "valid_from": issue, "valid_to": np.full(n, np.datetime64("NaT")),
            "status": status, "event_id": ev.column("event_id").to_numpy()[event_rows],
            **ctx.issuer_columns(issuer), **holder}
    return _finish(ctx, t, cols, n)
