"""The true population: residents with IDs, names, addresses, marriages and deaths."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import ids, pools, regions
from world.config import MESSINESS_RATES, WorldConfig, rng_for
from world.text import cat, num, set_values, take

# Population pyramid (2020 census, millions) by 5-year age band 0-4 … 95-99.
AGE_BANDS = np.array([
    77.9, 90.2, 85.3, 72.7, 74.9, 91.8, 124.1, 99.0, 93.0, 114.2,
    121.2, 101.4, 73.4, 74.0, 49.6, 31.2, 20.4, 10.7, 4.3, 1.2,
])
DAYS_PER_YEAR = 365.2425
MARRIAGE_REGISTER_START = np.datetime64("2004-01-01")
# Counties where 土家族 live in numbers (恩施州, 长阳, 五峰).
TUJIA_COUNTIES = ("4228", "420528", "420529")


def _years(value: float) -> np.timedelta64:
    """A duration of whole days close to the given number of years."""
    return np.timedelta64(int(round(value * DAYS_PER_YEAR)), "D")


def build(cfg: WorldConfig) -> tuple[pa.Table, pa.Table]:
    """The persons table and the marriage-event table of the truth."""
    n = cfg.count("persons", minimum=200)
    rng = rng_for(cfg.seed, "persons")
    ref = cfg.ref
    male = rng.random(n) < 0.512
    band = rng.choice(len(AGE_BANDS), size=n, p=AGE_BANDS / AGE_BANDS.sum())
    age_days = ((band * 5 + rng.random(n) * 5) * DAYS_PER_YEAR).astype(np.int64) + 1
    birth = ref - age_days.astype("timedelta64[D]")
    county_codes = np.array(regions.counties())
    county_idx = rng.choice(len(county_codes), size=n, p=regions.county_weights())
    region = county_codes[county_idx]
    ethnicity = _ethnicity(region, rng)
    id_region = _id_regions(region, birth, rng)
    id18 = _unique_ids(id_region, birth, male, rng)
    id15 = np.full(n, None, dtype=object)
    birth_year = birth.astype("datetime64[Y]").astype(int) + 1970
    legacy = (birth_year < 2000) & (rng.random(n) < MESSINESS_RATES["legacy_15_digit_id"])
    id15[legacy] = ids.legacy_ids(id18[legacy]).astype(object)
    name = _names(male, birth_year, rng)
    phone = _phones(n, rng)
    phone = np.where(age_days < 16 * DAYS_PER_YEAR, None, phone)
    address = addresses(county_idx, rng)
    marital, spouse, death, events = _marriages_and_deaths(male, birth, rng, ref)
    events = _with_offices(events, region, rng)
    name = _rare_names(name, events, rng, n)
    persons = pa.table({
        "person_id": pa.array(np.arange(1, n + 1), pa.int64()),
        "id_number": pa.array(id18.astype(object), pa.string()),
        "legacy_id15": pa.array(id15, pa.string()),
        "name": name,
        "gender": pa.array(np.where(male, "1", "2"), pa.string()),
        "birth_date": pa.array(birth, pa.date32()),
        "ethnicity": pa.array(ethnicity, pa.string()),
        "region": pa.array(region, pa.string()),
        "address": address,
        "phone": pa.array(phone, pa.string()),
        "marital_status": pa.array(marital, pa.string()),
        "spouse_id": pa.array(np.where(spouse > 0, spouse, None), pa.int64()),
        "death_date": pa.array(death, pa.date32()),
    })
    return persons, events


def _ethnicity(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GB 3304 codes: mostly 汉, 土家 and 苗 where they live."""
    codes, probs = pools.weighted(pools.ETHNICITY_SHARE)
    out = rng.choice(codes, size=len(region), p=probs)
    tujia_home = np.zeros(len(region), dtype=bool)
    for prefix in TUJIA_COUNTIES:
        tujia_home |= np.char.startswith(region.astype(str), prefix)
    u = rng.random(len(region))
    out = np.where(tujia_home & (u < 0.48), "15", out)
    return np.where(tujia_home & (u >= 0.48) & (u < 0.53), "06", out)


def _id_regions(region: np.ndarray, birth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Region of each ID number: home county if assigned in the birth year, else a code valid then.

    python-stdnum (and a strict checker) require the region to exist in the birth year, so people
    born before their county got its current code carry an older code of the same area.
    """
    n = len(region)
    year = birth.astype("datetime64[Y]").astype(int) + 1970
    candidates = np.array(regions.id_region_candidates())
    cand_int = candidates.astype(np.int64)
    years = np.arange(year.min(), year.max() + 1)
    valid_table = np.array([[regions.valid_in_year(c, int(y)) for y in years] for c in candidates])
    region_int = region.astype(np.int64)
    home = np.searchsorted(cand_int, region_int)
    migrant = rng.random(n) < 0.03
    need = ~valid_table[home, year - years[0]] | migrant
    provinces = np.array(regions.MIGRANT_PROVINCES).astype(np.int64) * 100  # 4300 = all of 43xxxx
    area = np.where(migrant, provinces[rng.integers(0, len(provinces), n)], region_int // 100)
    out = region.astype("U6").copy()
    idx = np.flatnonzero(need)
    keys = area[idx] * 10000 + year[idx]
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    bounds = np.append(starts, len(order))
    for k, key in enumerate(uniq.tolist()):
        members = idx[order[bounds[k]:bounds[k + 1]]]
        a, y = f"{key // 10000:04d}", key % 10000
        ok = valid_table[:, y - years[0]]
        pool = candidates[:0]
        for wider in (a, regions.OLD_PREFECTURE.get(a, ""), a[:2], regions.PROVINCE_CODE):
            if wider and not wider.endswith("00") and not pool.size:
                pool = candidates[ok & np.strings.startswith(candidates, wider)]
            elif wider.endswith("00") and not pool.size:
                pool = candidates[ok & np.strings.startswith(candidates, wider[:2])]
        out[members] = pool[rng.integers(0, len(pool), len(members))]
    return out


def _unique_ids(id_region: np.ndarray, birth: np.ndarray, male: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distinct 18-digit IDs; the 17th digit is odd for men and even for women."""
    n = len(birth)
    seq = rng.integers(1, 500, n) * 2 + male.astype(int)
    while True:
        bodies = ids.resident_id_bodies(id_region, birth, seq)
        dup = ids.duplicated(bodies)
        if not dup.any():
            return ids.resident_ids(bodies)
        seq[dup] = rng.integers(1, 500, int(dup.sum())) * 2 + male[dup].astype(int)


def _names(male: np.ndarray, birth_year: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Surname + one or two given-name characters drawn from era- and gender-specific pools."""
    n = len(male)
    surnames, probs = pools.weighted(pools.SURNAMES)
    surname = take(list(surnames), rng.choice(len(surnames), size=n, p=probs))
    era = np.where(birth_year < 1965, 0, np.where(birth_year < 2000, 1, 2))
    group = era * 2 + (~male).astype(int)
    keys = [(e, g) for e in ("old", "mid", "new") for g in ("m", "f")]
    chars = [list(dict.fromkeys(pools.GIVEN_CHARS[k])) for k in keys]
    lengths = np.array([len(c) for c in chars])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = [c for group_chars in chars for c in group_chars]
    first = offsets[group] + (rng.random(n) * lengths[group]).astype(np.int64)
    second = offsets[group] + (rng.random(n) * lengths[group]).astype(np.int64)
    one_char = rng.random(n) < 0.12
    second_text = pa.array(np.where(one_char, "", np.array(flat, dtype=object)[second]), pa.string())
    return cat(surname, take(flat, first), second_text)


def _phones(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mobile numbers with real prefixes."""
    prefixes = np.array(["13", "15", "18", "17", "19", "14", "16"])
    p = np.array([0.3, 0.25, 0.25, 0.1, 0.06, 0.02, 0.02])
    head = rng.choice(prefixes, size=n, p=p)
    rest = rng.integers(0, 1_000_000_000, n)
    return np.char.add(head, np.char.zfill(rest.astype(str), 9)).astype(object)


def addresses(county_idx: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Full addresses: 湖北省 + prefecture/county + town + community + house."""
    codes = regions.counties()
    n = len(county_idx)
    towns_per_county = 8
    town_rng = rng_for(0, "towns")  # the map of towns is the same in every world
    town_names = []
    for code in codes:
        stems = town_rng.choice(pools.TOWN_STEMS, size=towns_per_county, replace=False)
        urban = regions.current_name(code).endswith("区")
        for stem in stems:
            town_names.append(stem + ("街道" if urban or town_rng.random() < 0.3 else "镇"))
    prefixes = [regions.PROVINCE_NAME + regions.county_prefix(c) for c in codes]
    town = take(town_names, county_idx * towns_per_county + rng.integers(0, towns_per_county, n))
    urban = np.array([regions.current_name(c).endswith("区") for c in codes])[county_idx]
    rural = ~urban & (rng.random(n) < 0.45)
    community = cat(
        take(pools.COMMUNITY_STEMS, rng.integers(0, len(pools.COMMUNITY_STEMS), n)),
        pa.array(np.where(rural, "村", "社区"), pa.string()),
    )
    road = cat(
        take(pools.ROAD_STEMS, rng.integers(0, len(pools.ROAD_STEMS), n)),
        take(pools.ROAD_SUFFIX, rng.integers(0, len(pools.ROAD_SUFFIX), n)),
        num(rng.integers(1, 999, n)), "号",
    )
    flat = cat(
        take(pools.ESTATE_STEMS, rng.integers(0, len(pools.ESTATE_STEMS), n)),
        num(rng.integers(1, 40, n)), "栋", num(rng.integers(1, 7, n)), "单元",
        num(rng.integers(1, 33, n)), num(rng.integers(1, 5, n), 2), "室",
    )
    with_flat = rng.random(n) < 0.6
    urban_house = pa.array(np.where(with_flat, 1, 0), pa.int8())
    house_urban = pc.choose(urban_house, road, cat(road, flat))
    house_rural = cat(num(rng.integers(1, 16, n)), "组", num(rng.integers(1, 120, n)), "号")
    house = pc.if_else(pa.array(rural), house_rural, house_urban)
    return cat(take(prefixes, county_idx), town, community, house)


def _legal_age_date(birth: np.ndarray, years: int) -> np.ndarray:
    """The day (give or take a leap day) a person born on birth reaches the age."""
    return birth + np.timedelta64(int(years * DAYS_PER_YEAR) + 1, "D")


def _pair(men: np.ndarray, women: np.ndarray, birth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Couples of similar age (husbands about two years older)."""
    k = min(len(men), len(women))
    men = rng.choice(men, size=k, replace=False) if len(men) > k else men
    women = rng.choice(women, size=k, replace=False) if len(women) > k else women
    key_m = birth[men].astype(np.int64) + rng.normal(0, 700, k)
    key_w = birth[women].astype(np.int64) - 730 + rng.normal(0, 700, k)
    return men[np.argsort(key_m, kind="stable")], women[np.argsort(key_w, kind="stable")]


def _marriages_and_deaths(
    male: np.ndarray, birth: np.ndarray, rng: np.random.Generator, ref: np.datetime64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Table]:
    """Marital status, spouse, death date and the marriage/divorce events behind them."""
    n = len(male)
    age = (ref - birth).astype(np.int64) / DAYS_PER_YEAR
    of_age = np.where(male, age >= 23, age >= 21)
    p_ever = np.interp(age, [20, 23, 27, 32, 38, 45], [0.0, 0.2, 0.5, 0.8, 0.9, 0.95])
    ever = of_age & (rng.random(n) < p_ever)
    divorced = ever & (rng.random(n) < 0.06) & (age < 75)
    married = ever & ~divorced
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, mask in (("married", married), ("divorced", divorced)):
        pairs[label] = _pair(np.flatnonzero(mask & male), np.flatnonzero(mask & ~male), birth, rng)

    marital = np.full(n, "10", dtype=object)
    spouse = np.zeros(n, dtype=np.int64)
    last_event = birth.copy()
    event_parts = []
    for label, (h, w) in pairs.items():
        earliest = np.maximum(_legal_age_date(birth[h], 22), _legal_age_date(birth[w], 20))
        room = (ref - earliest).astype(np.int64) - 2
        delay = rng.exponential(5 * DAYS_PER_YEAR, len(h)).astype(np.int64)
        late = delay > room
        delay[late] = (rng.random(int(late.sum())) * room[late]).astype(np.int64)
        wed = earliest + np.maximum(delay, 0).astype("timedelta64[D]")
        if label == "married":
            code = rng.choice(np.array(["20", "21", "22"], dtype=object), size=len(h), p=[0.8, 0.15, 0.05])
            marital[h] = code
            marital[w] = code
            spouse[h] = w + 1
            spouse[w] = h + 1
            last_event[h] = wed
            last_event[w] = wed
            event_parts.append((h, w, wed, "结婚"))
        else:
            gap = (ref - wed).astype(np.int64) - 1
            split = wed + np.maximum((gap * rng.uniform(0.1, 0.95, len(h))).astype(np.int64), 1).astype("timedelta64[D]")
            marital[h] = "40"
            marital[w] = "40"
            last_event[h] = split
            last_event[w] = split
            event_parts.append((h, w, wed, "结婚"))
            event_parts.append((h, w, split, "离婚"))

    # Deaths: mostly the old, always after the person's last marriage event.
    p_die = np.interp(age, [0, 40, 60, 75, 85, 100], [0.0005, 0.001, 0.02, 0.06, 0.15, 0.3])
    dies = rng.random(n) < p_die
    death = ref - rng.integers(1, 5 * 365, n).astype("timedelta64[D]")
    floor = np.maximum(last_event, birth) + np.timedelta64(30, "D")
    dies &= death > floor
    death_out = np.where(dies, death, np.datetime64("NaT"))
    # The surviving spouse of a dead husband or wife is widowed (丧偶).
    h, w = pairs["married"]
    marital[w[dies[h] & ~dies[w]]] = "30"
    marital[h[dies[w] & ~dies[h]]] = "30"
    events = _event_table(event_parts, rng)
    return marital, spouse, death_out, events


def _event_table(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], rng: np.random.Generator) -> pa.Table:
    """Marriage and divorce events (person ids are 1-based), ordered by date."""
    husband = np.concatenate([p[0] for p in parts]) + 1
    wife = np.concatenate([p[1] for p in parts]) + 1
    date = np.concatenate([p[2] for p in parts])
    kind = np.concatenate([np.full(len(p[0]), p[3], dtype=object) for p in parts])
    order = np.lexsort((husband, kind, date))
    return pa.table({
        "event_id": pa.array(np.arange(1, len(order) + 1), pa.int64()),
        "kind": pa.array(kind[order], pa.string()),
        "date": pa.array(date[order], pa.date32()),
        "husband_id": pa.array(husband[order], pa.int64()),
        "wife_id": pa.array(wife[order], pa.int64()),
    })


def _with_offices(events: pa.Table, region: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Registration office (county of the husband or the wife) and certificate number of each event."""
    h = events.column("husband_id").to_numpy() - 1
    w = events.column("wife_id").to_numpy() - 1
    office = np.where(rng.random(len(h)) < 0.7, region[h], region[w]).astype("U6")
    year = events.column("date").to_numpy().astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970
    letter = np.where(events.column("kind").to_numpy(zero_copy_only=False) == "结婚", "J", "L")
    # Running number per office, year and kind, in date order (events are sorted by date).
    key = np.strings.add(np.strings.add(letter, office), year.astype("U4"))
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(key), dtype=np.int64)
    sorted_key = key[order]
    starts = np.r_[True, sorted_key[1:] != sorted_key[:-1]] if len(key) else np.array([], bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(key)), 0)) if len(key) else starts
    ranks[order] = np.arange(len(key)) - group_start + 1
    cert = cat(pa.array(letter.astype(object)), pa.array(office.astype(object)), "-", num(year, 4), "-", num(ranks, 6))
    return events.append_column("office_region", pa.array(office.astype(object), pa.string())).append_column("certificate_no", cert)


def _rare_names(name: pa.Array, events: pa.Table, rng: np.random.Generator, n: int) -> pa.Array:
    """Give a few people a character outside GBK; only those whose registrations all fall in UTF/GB18030 years."""
    date = events.column("date").to_numpy().astype("datetime64[D]")
    year = date.astype("datetime64[Y]").astype(int) + 1970
    people = np.concatenate([events.column("husband_id").to_numpy(), events.column("wife_id").to_numpy()])
    years = np.concatenate([year, year])
    first_year = np.full(n + 1, 9999)
    np.minimum.at(first_year, people, years)
    eligible = np.flatnonzero((first_year[1:] >= 2020) & (first_year[1:] < 9999))
    k = min(len(eligible), max(1, int(round(n * 0.0002))))
    if k == 0:
        return name
    chosen = np.sort(rng.choice(eligible, size=k, replace=False))
    old = name.take(pa.array(chosen)).to_pylist()
    new = [v[:-1] + pools.RARE_CHARS[int(i) % len(pools.RARE_CHARS)] for v, i in zip(old, chosen)]
    return set_values(name, chosen, new)
