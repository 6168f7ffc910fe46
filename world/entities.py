"""The true legal entities: enterprises, 个体工商户 and social organisations, each led by a true person."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import departments, ids, pools, regions
from world.config import WorldConfig, rng_for
from world.persons import DAYS_PER_YEAR, addresses

ACTIVE = ("存续", "在业")
NEW_STYLE_CODES_FROM = np.datetime64("2015-10-01")  # 三证合一: new organisation codes look like MA…
ENTERPRISE_STATUS = (("存续", 0.72), ("在业", 0.10), ("吊销", 0.06), ("注销", 0.12))
INDIVIDUAL_STATUS = (("存续", 0.70), ("在业", 0.12), ("吊销", 0.02), ("注销", 0.16))
CAPITALS = np.array([1, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000], dtype=float)
CAPITAL_P = np.array([2, 3, 6, 14, 8, 6, 14, 18, 8, 5, 7, 5, 2, 1.5, 0.5])


def build(cfg: WorldConfig, persons: pa.Table, depts: pa.Table) -> pa.Table:
    """The entity table of the truth (enterprises, then individual businesses, then social organisations)."""
    rng = rng_for(cfg.seed, "entities")
    counts = {"enterprise": cfg.count("enterprises", 20), "individual": cfg.count("individuals", 20),
              "social": cfg.count("social_orgs", 10)}
    n = sum(counts.values())
    kind = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
    reps = _representatives(persons, kind, cfg.ref, rng)
    birth = persons.column("birth_date").to_numpy().astype("datetime64[D]")[reps]
    ref = cfg.ref
    earliest = np.maximum(birth + np.timedelta64(int(20 * DAYS_PER_YEAR), "D"), np.datetime64("1992-01-01"))
    span = (ref - earliest).astype(np.int64) - 30
    # New registrations keep growing: recent years are over-represented, as in the real register.
    est = earliest + (span * (1 - rng.random(n) ** 1.3)).astype(np.int64).astype("timedelta64[D]")
    county_codes = np.array(regions.counties())
    rep_region = persons.column("region").to_numpy(zero_copy_only=False)[reps].astype(str)
    own = rng.random(n) < 0.3
    county_idx = np.where(own, rng.choice(len(county_codes), n, p=regions.county_weights()),
                          np.searchsorted(county_codes, rep_region))
    region = county_codes[county_idx]
    level = _registry_level(kind, rng)
    registry_region = np.where(level == "province", "420000",
                               np.where(level == "city", np.array([regions.city_of(c) or c for c in region]), region))
    registry_kind = np.where(kind == "social", "minzheng", "scjg")
    dept_index = {k: i for i, k in enumerate(depts.column("dept_key").to_pylist())}
    registry_rows = np.array([dept_index[f"{k}/{r}"] for k, r in zip(registry_kind, registry_region)])
    registry_name = depts.column("name").take(pa.array(registry_rows))
    category = _category(kind, rng)
    org = ids.org_codes(ids.random_org_bodies(n, rng, est >= NEW_STYLE_CODES_FROM))
    prefix = np.where(kind == "enterprise", "91", np.where(kind == "individual", "92", np.strings.add("5", category)))
    uscc = ids.usccs(prefix, registry_region.astype("U6"), org)
    status, status_date = _status(kind, est, ref, rng)
    industry = rng.integers(0, len(pools.INDUSTRIES), n)
    shop = rng.integers(0, len(pools.SHOP_KINDS), n)
    names, etype, scope, hint = _names_and_types(kind, category, region, level, industry, shop, reps, persons, rng)
    capital = np.where(kind == "enterprise", rng.choice(CAPITALS, n, p=CAPITAL_P / CAPITAL_P.sum()), np.nan)
    return pa.table({
        "entity_id": pa.array(np.arange(1, n + 1), pa.int64()),
        "kind": pa.array(kind, pa.string()),
        "uscc": pa.array(uscc, pa.string()),
        "org_code": pa.array(org.astype(object), pa.string()),
        "name": names,
        "entity_type": pa.array(etype, pa.string()),
        "rep_person_id": pa.array(reps + 1, pa.int64()),
        "rep_name": persons.column("name").take(pa.array(reps)),
        "rep_id_number": persons.column("id_number").take(pa.array(reps)),
        "region": pa.array(region.astype(object), pa.string()),
        "address": addresses(county_idx, rng),
        "registry_key": depts.column("dept_key").take(pa.array(registry_rows)),
        "registry_name": registry_name,
        "registry_uscc": depts.column("uscc").take(pa.array(registry_rows)),
        "established": pa.array(est, pa.date32()),
        "status": pa.array(status, pa.string()),
        "status_date": pa.array(status_date, pa.date32()),
        "capital": pa.array(np.where(np.isnan(capital), None, capital), pa.float64()),
        "scope": pa.array(scope, pa.string()),
        "licence_hint": pa.array(hint, pa.string()),
    })


def _representatives(persons: pa.Table, kind: np.ndarray, ref: np.datetime64, rng: np.random.Generator) -> np.ndarray:
    """Row indices of the legal representatives: living adults (no GB18030-only names for GBK-filed 民政)."""
    birth = persons.column("birth_date").to_numpy().astype("datetime64[D]")
    alive = pc.is_null(persons.column("death_date")).to_numpy(zero_copy_only=False)
    age = (ref - birth).astype(np.int64) / DAYS_PER_YEAR
    eligible = np.flatnonzero(alive & (age >= 25) & (age <= 75))
    gbk_safe = ~has_rare(persons.column("name").take(pa.array(eligible)))
    out = eligible[rng.integers(0, len(eligible), len(kind))]
    social = np.flatnonzero(kind == "social")
    safe = eligible[gbk_safe]
    out[social] = safe[rng.integers(0, len(safe), len(social))]
    return out


def has_rare(names: pa.Array) -> np.ndarray:
    """Mask of names containing one of the non-GBK characters the world uses."""
    hit = np.zeros(len(names), dtype=bool)
    for char in pools.RARE_CHARS:
        hit |= pc.match_substring(names, char).to_numpy(zero_copy_only=False)
    return hit


def _registry_level(kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whether the county, prefecture or province registered the entity."""
    u = rng.random(len(kind))
    enterprise = np.where(u < 0.05, "province", np.where(u < 0.2, "city", "county"))
    social = np.where(u < 0.15, "province", np.where(u < 0.5, "city", "county"))
    return np.where(kind == "enterprise", enterprise, np.where(kind == "social", social, "county"))


def _category(kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Organisation category under 民政: 1 社会团体, 2 民办非企业单位, 3 基金会."""
    return rng.choice(np.array(["1", "2", "3"]), size=len(kind), p=[0.45, 0.5, 0.05])


def _status(kind: np.ndarray, est: np.ndarray, ref: np.datetime64, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Registration status and, for 吊销/注销, the day it changed (always after establishment)."""
    n = len(kind)
    out = np.full(n, "存续", dtype=object)
    for k, table in (("enterprise", ENTERPRISE_STATUS), ("individual", INDIVIDUAL_STATUS)):
        rows = np.flatnonzero(kind == k)
        values = np.array([v for v, _ in table], dtype=object)
        p = np.array([w for _, w in table])
        out[rows] = rng.choice(values, size=len(rows), p=p / p.sum())
    out[kind == "social"] = "正常"
    gap = (ref - est).astype(np.int64) - 181
    ended = np.isin(out, ["吊销", "注销"])
    out[ended & (gap < 30)] = "存续"
    ended &= gap >= 30
    when = est + 180 + (np.maximum(gap, 1) * rng.random(n)).astype(np.int64).astype("timedelta64[D]")
    return out, np.where(ended, when, np.datetime64("NaT"))


def _names_and_types(
    kind: np.ndarray, category: np.ndarray, region: np.ndarray, level: np.ndarray, industry: np.ndarray,
    shop: np.ndarray, reps: np.ndarray, persons: pa.Table, rng: np.random.Generator,
) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct names, 企业类型/组织类型, business scope and licence hint per entity."""
    n = len(kind)
    county_codes = np.array(regions.counties())
    county_idx = np.searchsorted(county_codes, region.astype(str))
    place_of = np.array([departments.place_name(c) for c in county_codes], dtype=object)
    city_of = np.array([regions.current_name(regions.city_of(c)) if regions.city_of(c) else departments.place_name(c)
                        for c in county_codes], dtype=object)
    place = place_of[county_idx]
    prefix = np.where(level == "province", "湖北", np.where(level == "city", city_of[county_idx], place))
    forms = pools.ENTERPRISE_FORMS
    form_p = np.array([f[2] for f in forms])
    form = rng.choice(len(forms), size=n, p=form_p / form_p.sum())
    suffix = np.array([f[0] for f in forms], dtype=object)[form]
    etype = np.array([f[1] for f in forms], dtype=object)[form]
    industry_word = np.array([i[0] for i in pools.INDUSTRIES], dtype=object)[industry]
    scope = np.array([i[1] for i in pools.INDUSTRIES], dtype=object)[industry]
    hint = np.array([i[2] for i in pools.INDUSTRIES], dtype=object)[industry]
    # 个体工商户: 字号 is a trade word or the operator's surname + 记.
    shop_word = np.array([k[0] for k in pools.SHOP_KINDS], dtype=object)[shop]
    surname = np.asarray(pc.utf8_slice_codeunits(persons.column("name").combine_chunks().take(pa.array(reps)), 0, 1)
                         .to_numpy(zero_copy_only=False), dtype=object)
    social_kind = category.astype(int) - 1
    tails = [k[2] for k in pools.SOCIAL_KINDS]
    social_tail = np.empty(n, dtype=object)
    for k, options in enumerate(tails):
        rows = np.flatnonzero(social_kind == k)
        social_tail[rows] = np.array(options, dtype=object)[rng.integers(0, len(options), len(rows))]
    social_type = np.array([k[1] for k in pools.SOCIAL_KINDS], dtype=object)[social_kind]
    ind = kind == "individual"
    soc = kind == "social"
    etype = np.where(ind, "个体工商户", np.where(soc, social_type, etype))
    scope = np.where(ind, np.array([k[1] for k in pools.SHOP_KINDS], dtype=object)[shop],
                     np.where(soc, np.array([pools.SOCIAL_SCOPES[k[1]] for k in pools.SOCIAL_KINDS], dtype=object)[social_kind], scope))
    hint = np.where(ind, np.array([k[2] for k in pools.SHOP_KINDS], dtype=object)[shop], hint)
    medical = np.array([("医院" in t or "康复" in t) if t else False for t in social_tail], dtype=bool)
    hint = np.where(soc & medical, "weijian", np.where(soc, "", hint))
    names = np.empty(n, dtype=object)
    todo = np.arange(n)
    trades = np.array(pools.TRADE_NAMES, dtype=object)
    attempt = 0
    while todo.size:
        trade = trades[rng.integers(0, len(trades), todo.size)]
        if attempt:
            # Ran out of single trade words: coin two-character ones from two stems.
            mixed = np.array([a[0] + b[0] for a, b in zip(trade, trades[rng.integers(0, len(trades), todo.size)])], dtype=object)
            trade = np.where(rng.random(todo.size) < 0.7, mixed, trade)
        k = kind[todo]
        enterprise_name = prefix[todo] + trade + industry_word[todo] + suffix[todo]
        use_surname = rng.random(todo.size) < 0.4
        shop_name = place[todo] + np.where(use_surname, surname[todo] + "记", trade) + shop_word[todo]
        with_trade = (category[todo] != "1") | (attempt > 0)
        social_name = prefix[todo] + np.where(with_trade & (rng.random(todo.size) < 0.6 + 0.4 * (attempt > 0)), trade, "") + social_tail[todo]
        names[todo] = np.where(k == "enterprise", enterprise_name, np.where(k == "individual", shop_name, social_name))
        # Registered names are unique (individual shops may share a name: they are told apart by USCC).
        check = np.flatnonzero(kind != "individual")
        dup = ids.duplicated(names[check].astype(str))
        todo = check[dup]
        attempt += 1
    return pa.array(names, pa.string()), etype, scope, hint
