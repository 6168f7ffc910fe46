"""Defect injection with a ground-truth manifest: one defect per record, drawn at configured rates."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from world import ids, pools, regions
from world.config import WorldConfig, rng_for
from world.text import ymd

MANIFEST_SCHEMA = pa.schema([
    ("source", pa.string()), ("record_key", pa.string()), ("field", pa.string()),
    ("defect_kind", pa.string()), ("detail", pa.string()),
])
RESIDENT_CHECK_ALPHABET = "0123456789X"
MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Values outside the code tables (GB 3304 has 01–56, 97, 98; GB/T 2261.2 has 10–40 and 90).
INVALID_ETHNICITY = ("60", "66", "76", "88")
INVALID_MARITAL = ("50", "60", "80", "15")
INVALID_HOLDER_CODE_TYPE = ("999", "000")
INVALID_SUBJECT_CATEGORY = ("05", "09")


@dataclass
class Injector:
    """Chooses the rows of one source that receive each defect and remembers them for the manifest."""

    cfg: WorldConfig
    source: str
    n: int
    rng: np.random.Generator
    free: np.ndarray = field(init=False)
    entries: list[tuple[np.ndarray, str, str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Every row starts clean."""
        self.free = np.ones(self.n, dtype=bool)

    def pick(self, kind: str, eligible: np.ndarray | None = None, share: float = 1.0) -> np.ndarray:
        """Rows (sorted) that get a defect of this kind; each row gets at most one defect."""
        mask = self.free if eligible is None else self.free & np.asarray(eligible, dtype=bool)
        candidates = np.flatnonzero(mask)
        expected = self.cfg.rate(kind) * share * self.n
        count = int(expected) + int(self.rng.random() < expected - int(expected))
        count = min(count, len(candidates))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        rows = np.sort(self.rng.choice(candidates, size=count, replace=False))
        self.free[rows] = False
        return rows

    def add(self, rows: np.ndarray, field_name: str, kind: str, details: list[str] | str) -> None:
        """Record defects of one kind in one field."""
        if len(rows):
            texts = details if isinstance(details, list) else [details] * len(rows)
            self.entries.append((np.asarray(rows, dtype=np.int64), field_name, kind, texts))

    def manifest(self, keys: np.ndarray) -> pa.Table:
        """Manifest rows with the record keys of the final source table."""
        if not self.entries:
            return MANIFEST_SCHEMA.empty_table()
        rows = np.concatenate([e[0] for e in self.entries])
        return pa.table({
            "source": [self.source] * len(rows),
            "record_key": [str(k) for k in np.asarray(keys, dtype=object)[rows]],
            "field": [e[1] for e in self.entries for _ in e[0]],
            "defect_kind": [e[2] for e in self.entries for _ in e[0]],
            "detail": [d for e in self.entries for d in e[3]],
        }, schema=MANIFEST_SCHEMA)


def lanes(seed: int, n: int, what: str) -> np.ndarray:
    """A fixed random number per person or entity: < 0.5 = may carry defects in its anchor source.

    Anchor sources (公安 for persons, 市场监管/民政 for entities) only damage subjects of the lower
    lane; cross-source conflicts elsewhere only concern the upper lane, so a conflict is always
    measured against a clean anchor row.
    """
    return rng_for(seed, "lanes", what).random(n)


def bad_resident_id(value: str, rng: np.random.Generator) -> tuple[str, str]:
    """The ID with a wrong check character, and a detail text."""
    right = value[-1]
    return value[:-1] + ids.wrong_char(right, RESIDENT_CHECK_ALPHABET, rng), f"校验位应为{right}"


def bad_uscc(value: str, rng: np.random.Generator) -> tuple[str, str]:
    """The USCC with a wrong check character, and a detail text."""
    right = value[-1]
    return value[:-1] + ids.wrong_char(right, ids.USCC_ALPHABET, rng), f"校验位应为{right}"


def bad_licence_id(value: str, rng: np.random.Generator) -> tuple[str, str]:
    """The licence identifier with a wrong MOD 37,36 check character, and a detail text."""
    right = value[-1]
    return value[:-1] + ids.wrong_char(right, MOD37_ALPHABET, rng), f"校验位应为{right}"


def other_gender_id(value: str) -> str:
    """The same person's number with the sequence parity flipped (and a correct check character)."""
    body = value[:16] + str((int(value[16]) + 1) % 10 if int(value[16]) < 9 else 8)
    from schemas.identifiers import resident_id_check_char

    return body + resident_id_check_char(body)


def shifted_date(day: np.datetime64, ref: np.datetime64, rng: np.random.Generator) -> np.datetime64:
    """Another real past date near the given one."""
    delta = int(rng.integers(3, 400)) * (1 if rng.random() < 0.5 else -1)
    out = day + np.timedelta64(delta, "D")
    return day - np.timedelta64(abs(delta), "D") if out > ref else out


def future_day(ref: np.datetime64, rng: np.random.Generator) -> np.datetime64:
    """A date after the reference date."""
    return ref + np.timedelta64(int(rng.integers(15, 900)), "D")


def different_name(name: str, rng: np.random.Generator) -> str:
    """Another plausible name: a given-name character replaced (never a script or spacing variant)."""
    pool = "".join(dict.fromkeys("".join(pools.GIVEN_CHARS.values())))
    clean = name.strip()
    while True:
        char = pool[int(rng.integers(0, len(pool)))]
        candidate = clean[:-1] + char if len(clean) > 1 else clean + char
        if candidate != clean:
            return candidate


def unknown_regions(count: int, rng: np.random.Generator) -> list[str]:
    """Region codes no table knows (loc.dat or the schemas region table)."""
    extra: frozenset[str] = frozenset()
    try:
        from schemas.code_tables import load_table

        extra = frozenset(load_table("regions").codes)
    except Exception:  # noqa: BLE001 - the schemas table is optional for generation
        pass
    return regions.unknown_codes(count, rng, extra)


@dataclass
class Fabricator:
    """Subjects that exist nowhere in the province (for orphan licences and credit records)."""

    known_ids: set[str]
    known_usccs: set[str]
    rng: np.random.Generator

    def persons(self, count: int) -> tuple[list[str], list[str]]:
        """(names, valid 18-digit IDs) of people who are not residents."""
        counties = np.array(regions.counties())
        out_ids: list[str] = []
        while len(out_ids) < count:
            k = count - len(out_ids)
            births = np.datetime64("1960-01-01") + self.rng.integers(0, 40 * 365, k).astype("timedelta64[D]")
            region = counties[self.rng.integers(0, len(counties), k)]
            bodies = ids.resident_id_bodies(region, births, self.rng.integers(1, 999, k))
            years = births.astype("datetime64[Y]").astype(int) + 1970
            for value, code, year in zip(ids.resident_ids(bodies).tolist(), region.tolist(), years.tolist()):
                # A valid number: its region must exist in the birth year (the strict checkers' rule).
                if regions.valid_in_year(code, year) and value not in self.known_ids and value not in out_ids:
                    out_ids.append(value)
        surnames = [s for s, _ in pools.SURNAMES[:40]]
        given = "".join(pools.GIVEN_CHARS[("mid", "m")] + pools.GIVEN_CHARS[("mid", "f")])
        names = [surnames[int(self.rng.integers(0, len(surnames)))] + given[int(self.rng.integers(0, len(given)))]
                 + given[int(self.rng.integers(0, len(given)))] for _ in range(count)]
        return names, out_ids

    def entities(self, count: int) -> tuple[list[str], list[str]]:
        """(names, valid USCCs) of firms that are registered nowhere in the province."""
        counties = np.array(regions.counties())
        out: list[str] = []
        while len(out) < count:
            k = count - len(out)
            org = ids.org_codes(ids.random_org_bodies(k, self.rng, np.ones(k, dtype=bool), head="MA"))
            region = counties[self.rng.integers(0, len(counties), k)]
            for value in ids.usccs(np.full(k, "91"), region, org).tolist():
                if value not in self.known_usccs and value not in out:
                    out.append(value)
        trades = pools.TRADE_NAMES
        names = [f"{regions.current_name(u[2:8])}{trades[int(self.rng.integers(0, len(trades)))]}"
                 f"{trades[int(self.rng.integers(0, len(trades)))]}贸易有限公司" for u in out]
        return names, out


def birth_text(day: np.datetime64) -> str:
    """YYYY-MM-DD of a day."""
    y, m, d = ymd(np.array([day]))
    return f"{y[0]:04d}-{m[0]:02d}-{d[0]:02d}"
