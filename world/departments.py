"""Government bodies of the province: registries, licence issuers, penalty authorities, courts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from world import ids, regions
from world.config import rng_for

# kind → (province-level name, prefecture-level pattern, county-level pattern); {p} = place name.
DEPARTMENT_KINDS: dict[str, tuple[str, str, str]] = {
    "scjg": ("湖北省市场监督管理局", "{p}市场监督管理局", "{p}市场监督管理局"),
    "minzheng": ("湖北省民政厅", "{p}民政局", "{p}民政局"),
    "weijian": ("湖北省卫生健康委员会", "{p}卫生健康委员会", "{p}卫生健康局"),
    "zhujian": ("湖北省住房和城乡建设厅", "{p}住房和城乡建设局", "{p}住房和城乡建设局"),
    "zrzy": ("湖北省自然资源厅", "{p}自然资源和规划局", "{p}自然资源和规划局"),
    "shuiwu": ("国家税务总局湖北省税务局", "国家税务总局{p}税务局", "国家税务总局{p}税务局"),
    "sthj": ("湖北省生态环境厅", "{p}生态环境局", "{p}生态环境分局"),
    "renshe": ("湖北省人力资源和社会保障厅", "{p}人力资源和社会保障局", "{p}人力资源和社会保障局"),
    "gongan": ("湖北省公安厅", "{p}公安局", "{p}公安局"),
    "fgw": ("湖北省发展和改革委员会", "{p}发展和改革委员会", "{p}发展和改革局"),
    "court": ("湖北省高级人民法院", "{p}中级人民法院", "{p}人民法院"),
}

# Chinese department names for world.json and file headers.
DEPARTMENT_TITLES = {
    "gongan": "公安厅", "scjg": "市场监督管理局", "minzheng": "民政厅", "renshe": "人力资源和社会保障厅",
    "court": "高级人民法院", "weijian": "卫生健康委员会", "zhujian": "住房和城乡建设厅", "zrzy": "自然资源厅",
    "shuiwu": "税务局", "sthj": "生态环境厅", "fgw": "发展和改革委员会",
}

def place_name(code: str) -> str:
    """How a county-level unit names itself: 武汉市江岸区, 阳新县, 大冶市, 仙桃市."""
    name = regions.current_name(code)
    city = regions.city_of(code)
    return regions.current_name(city) + name if city and name.endswith("区") else name


def dept_key(kind: str, region: str) -> str:
    """Key of a department: kind/region (region 420000 = the province itself)."""
    return f"{kind}/{region}"


def build(seed: int) -> pa.Table:
    """Every department of every kind at province, prefecture and county level, plus the national bodies."""
    rows: list[tuple[str, str, str, str, str]] = []
    counties = regions.counties()
    cities = sorted({regions.city_of(c) for c in counties if regions.city_of(c)})
    for kind, (province, city_pattern, county_pattern) in DEPARTMENT_KINDS.items():
        rows.append((dept_key(kind, "420000"), kind, "province", "420000", province))
        for city in cities:
            rows.append((dept_key(kind, city), kind, "city", city, city_pattern.format(p=regions.current_name(city))))
        for county in counties:
            level = "city" if county[2:4] == "90" else "county"
            pattern = city_pattern if level == "city" else county_pattern
            rows.append((dept_key(kind, county), kind, level, county, pattern.format(p=place_name(county))))
    rng = rng_for(seed, "departments")
    n = len(rows)
    region = np.array([r[3] for r in rows])
    org = ids.org_codes(ids.random_org_bodies(n, rng, np.ones(n, dtype=bool), head="MB"))
    uscc = ids.usccs(np.full(n, "11"), region, org)
    return pa.table({
        "dept_key": [r[0] for r in rows],
        "kind": [r[1] for r in rows],
        "level": [r[2] for r in rows],
        "region": region.tolist(),
        "name": [r[4] for r in rows],
        "uscc": pa.array(uscc, pa.string()),
    })
