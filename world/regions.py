"""GB/T 2260 region codes of the simulated province (湖北省), read from python-stdnum's loc.dat."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import stdnum

PROVINCE_CODE = "42"
PROVINCE_NAME = "湖北省"
LOC_DAT = Path(stdnum.__file__).parent / "cn" / "loc.dat"

# Retired codes that loc.dat lists without a year range; never generate them as current.
NOT_CURRENT = frozenset({"422900", "422921", "429001"})

# 2020 census population (millions) per prefecture prefix: drives where people and companies live.
PREFECTURE_WEIGHT = {
    "4201": 12.3, "4202": 2.5, "4203": 3.2, "4205": 4.0, "4206": 5.3, "4207": 1.1, "4208": 2.6,
    "4209": 4.3, "4210": 5.2, "4211": 5.9, "4212": 2.7, "4213": 2.0, "4228": 3.5,
    "429004": 1.1, "429005": 0.9, "429006": 1.2, "429021": 0.07,
}

# Prefecture codes before the 1980s–90s reorganisations (地区), for IDs issued under the old codes.
OLD_PREFECTURE = {
    "4209": "4222", "4211": "4221", "4212": "4223", "4210": "4224", "4208": "4224", "4290": "4224",
    "4206": "4225", "4213": "4225", "4203": "4226", "4205": "4227", "4207": "4221",
}

# Provinces migrants come from (their ID numbers carry these regions).
MIGRANT_PROVINCES = ("43", "41", "36", "50", "34")

_RANGE = re.compile(r"^\[(\d*)-(\d*)\](.*)$")


@dataclass(frozen=True)
class Period:
    """One name a code carried between two years (inclusive; None = open)."""

    start: int | None
    end: int | None
    name: str


@functools.cache
def loc_table() -> dict[str, tuple[Period, ...]]:
    """Every code of loc.dat (all provinces, current and historical) with its named periods."""
    table: dict[str, tuple[Period, ...]] = {}
    province = ""
    for line in LOC_DAT.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            province = line.split()[0]
            table[province + "0000"] = (Period(None, None, line.split('"')[1]),)
            continue
        suffix, rest = line.split(None, 1)
        periods = []
        for part in rest.split("=", 1)[1].strip().strip('"').split(","):
            match = _RANGE.match(part)
            if match:
                start, end, name = match.groups()
                periods.append(Period(int(start) if start else None, int(end) if end else None, name))
            else:
                periods.append(Period(None, None, part))
        table[province + suffix] = tuple(periods)
    return table


def known_codes() -> frozenset[str]:
    """All codes loc.dat knows, current or historical, of any province."""
    return frozenset(loc_table())


def is_current(code: str) -> bool:
    """Whether the code's latest period is still open."""
    periods = loc_table().get(code)
    return bool(periods) and periods[-1].end is None and code not in NOT_CURRENT


def valid_in_year(code: str, year: int) -> bool:
    """Whether the code was assigned in that year (python-stdnum's birth-place rule)."""
    return any(
        (p.start is None or year >= p.start) and (p.end is None or year <= p.end)
        for p in loc_table().get(code, ())
    )


def current_name(code: str) -> str:
    """The latest name of a code."""
    return loc_table()[code][-1].name


def _is_county(code: str) -> bool:
    """County-level code that is not a prefecture or an unnamed 市辖区."""
    return not code.endswith("00") and not code.endswith("0000") and current_name(code) != "市辖区"


@functools.cache
def counties() -> tuple[str, ...]:
    """Current county-level codes of the province, sorted."""
    return tuple(
        sorted(c for c in loc_table() if c.startswith(PROVINCE_CODE) and _is_county(c) and is_current(c))
    )


@functools.cache
def county_weights() -> np.ndarray:
    """Population weight of each current county (prefecture weight split evenly)."""
    codes = counties()
    groups: dict[str, list[int]] = {}
    for i, code in enumerate(codes):
        key = code if code in PREFECTURE_WEIGHT else code[:4]
        groups.setdefault(key, []).append(i)
    weights = np.zeros(len(codes))
    for key, members in groups.items():
        # Wuhan's central districts hold more people than its outer ones; keep it simple: even split.
        weights[members] = PREFECTURE_WEIGHT.get(key, 1.0) / len(members)
    return weights / weights.sum()


def city_of(code: str) -> str:
    """Code of the prefecture a county belongs to ('' for 省直辖 units)."""
    return "" if code[2:4] == "90" else code[:4] + "00"


def city_name(code: str) -> str:
    """Name of the prefecture of a county, or the county itself for 省直辖 units."""
    city = city_of(code)
    return current_name(city) if city else current_name(code)


def county_prefix(code: str) -> str:
    """Address prefix below the province: 武汉市江岸区, 仙桃市, 恩施土家族苗族自治州恩施市."""
    city = city_of(code)
    return current_name(code) if not city else current_name(city) + current_name(code)


@functools.cache
def id_region_candidates() -> tuple[str, ...]:
    """County-level codes (any period) of the province and the migrant provinces, for ID numbers."""
    prefixes = (PROVINCE_CODE, *MIGRANT_PROVINCES)
    return tuple(
        sorted(
            c for c, periods in loc_table().items()
            if c[:2] in prefixes and not c.endswith("00") and periods[-1].name != "市辖区"
            and c not in NOT_CURRENT
        )
    )


def unknown_codes(count: int, rng: np.random.Generator, extra_known: frozenset[str] = frozenset()) -> list[str]:
    """Six-digit codes inside the province's prefix that no version of GB/T 2260 ever assigned."""
    known = known_codes() | extra_known
    out: list[str] = []
    while len(out) < count:
        code = f"42{rng.integers(0, 10000):04d}"
        if code not in known and code[2:4] != "00":
            out.append(code)
    return out
