"""Record linkage: quarantined rows without a usable key (missing or invalid resident ID / USCC) matched to a
golden record by what else they say — persons on name + birth date + region, companies on name + address.

Transparent by construction: every candidate gets per-component scores in [0, 1] (recorded in
linkage_decision.components) and score = Σ weight × component with the weights of libraries/linkage.yaml.
score ≥ link → linked (the row becomes a claim on the candidate and leaves quarantine), review ≤ score < link
or an ambiguous best (a runner-up within `margin`) → review (a steward confirms or rejects), below → no_match
(stays quarantined; looked at again when the library has grown). The broken key itself is never claimed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
import yaml
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from hub.crypto import get_cipher
from hub.models import LegalEntity, LinkageDecision, Person, QualityRun, QuarantinedRow, SourceRun
from libraries.bulk import chunks, driver_rows, in_values
from libraries.merge import merge_claims
from libraries.overrides import append_audit
from libraries.spec import Claims

CONFIG_PATH = Path(__file__).with_name("linkage.yaml")
LIBRARIES = ("population", "legal_entity")
# Company-form suffixes a clerk writes one way or another (longest first: 股份有限公司 before 有限公司).
COMPANY_SUFFIXES = ("股份有限公司", "有限责任公司", "股份公司", "有限公司", "公司")
PERSON_FIELDS = {"name": "name", "gender": "gender", "birth_date": "birth_date", "ethnicity": "ethnicity",
                 "region_code": "household_region", "address": "household_address", "phone": "phone",
                 "marital_status": "marital_status", "death_date": "death_date"}


@dataclass(frozen=True)
class Settings:
    """Linkage settings of one library."""

    sources: tuple[str, ...]
    key_rules: frozenset[str]
    weights: dict[str, float]
    link: float
    review: float
    margin: float


@lru_cache(maxsize=4)
def settings(library: str, path: Path = CONFIG_PATH) -> Settings:
    """The library's settings from linkage.yaml."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))[library]
    return Settings(tuple(raw["sources"]), frozenset(raw["key_rules"]), dict(raw["weights"]), float(raw["link"]),
                    float(raw["review"]), float(raw.get("margin", 0.0)))


# ---------------------------------------------------------------------------------------------------------
# Comparators: each returns a component score in [0, 1]; a missing value on either side scores 0 (no evidence).
# ---------------------------------------------------------------------------------------------------------

def clean_text(value: Any) -> str:
    """NFKC (full width → half width), no whitespace at all."""
    return "".join(unicodedata.normalize("NFKC", str(value or "")).split())


def levenshtein(a: str, b: str) -> int:
    """Levenshtein distance by Myers/Hyyrö's bit-parallel algorithm: one pass over b, a's positions as bits of an int.

    The same number as the textbook dynamic programme, about 9× faster in Python on 30-character addresses
    (linkage compares a row with every company of its region: this is the linkage stage's inner loop).
    """
    m = len(a)
    if not m:
        return len(b)
    positions: dict[str, int] = {}
    for i, character in enumerate(a):
        positions[character] = positions.get(character, 0) | (1 << i)
    mask, last = (1 << m) - 1, 1 << (m - 1)
    plus, minus, distance = mask, 0, m  # vertical +1 / −1 deltas of the current column
    for character in b:
        equal = positions.get(character, 0)
        x_vertical = equal | minus
        x_horizontal = (((equal & plus) + plus) ^ plus) | equal
        h_plus = (minus | ~(x_horizontal | plus)) & mask
        h_minus = plus & x_horizontal
        if h_plus & last:
            distance += 1
        elif h_minus & last:
            distance -= 1
        h_plus = ((h_plus << 1) | 1) & mask
        h_minus = (h_minus << 1) & mask
        plus = (h_minus | ~(x_vertical | h_plus)) & mask
        minus = h_plus & x_vertical
    return distance


def edit_similarity(a: str, b: str) -> float:
    """1 − Levenshtein distance / longer length (1 for two equal strings, 0 when either is empty)."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def name_score(a: Any, b: Any) -> float:
    """Person names: exact = 1, else edit similarity (a one-character typo in a 3-character name ≈ 0.67)."""
    return edit_similarity(clean_text(a), clean_text(b))


def as_date(value: Any) -> dt.date | None:
    """A date from a date, datetime or ISO text."""
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def birth_score(a: Any, b: Any) -> float:
    """Birth dates: exact = 1; month and day transposed, or one digit mistyped = 0.7; otherwise 0."""
    x, y = as_date(a), as_date(b)
    if x is None or y is None:
        return 0.0
    if x == y:
        return 1.0
    if (x.year, x.month, x.day) == (y.year, y.day, y.month):
        return 0.7
    digits = sum(p != q for p, q in zip(x.strftime("%Y%m%d"), y.strftime("%Y%m%d")))
    return 0.7 if digits == 1 else 0.0


def region_score(a: Any, b: Any) -> float:
    """Region codes (GB/T 2260): same county = 1, same prefecture = 0.6, same province = 0.3."""
    x, y = clean_text(a), clean_text(b)
    if len(x) < 6 or len(y) < 6:
        return 0.0
    return 1.0 if x == y else 0.6 if x[:4] == y[:4] else 0.3 if x[:2] == y[:2] else 0.0


def company_name(value: Any) -> str:
    """A company name without whitespace, bracket width or the company-form suffix (有限公司 = 有限责任公司)."""
    text = clean_text(value).replace("(", "").replace(")", "")
    for suffix in COMPANY_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def company_name_score(a: Any, b: Any) -> float:
    """Company names compared without their form suffix: exact = 1, else edit similarity."""
    return edit_similarity(company_name(a), company_name(b))


def address_text(value: Any) -> str:
    """An address without whitespace, the province prefix and the 号 of house numbers."""
    return clean_text(value).removeprefix("湖北省").replace("号", "")


def address_score(a: Any, b: Any) -> float:
    """Addresses: edit similarity of the normalised texts."""
    return edit_similarity(address_text(a), address_text(b))


def person_components(record: dict[str, Any], candidate: dict[str, Any]) -> dict[str, float]:
    """Component scores of a quarantined person row against a golden person."""
    return {"name": name_score(record.get("name"), candidate.get("name")),
            "birth_date": birth_score(record.get("birth_date"), candidate.get("birth_date")),
            "region": region_score(record.get("household_region"), candidate.get("region_code"))}


def company_components(record: dict[str, Any], candidate: dict[str, Any]) -> dict[str, float]:
    """Component scores of a quarantined company row against a golden legal entity."""
    return {"name": company_name_score(record.get("entity_name"), candidate.get("name")),
            "address": address_score(record.get("registered_address"), candidate.get("address")),
            "region": region_score(record.get("registration_region"), candidate.get("region_code"))}


COMPONENTS = {"population": person_components, "legal_entity": company_components}


def total(components: dict[str, float], weights: dict[str, float]) -> float:
    """The weighted score, rounded so equal evidence gives equal scores on every platform."""
    return round(sum(weights[k] * components.get(k, 0.0) for k in weights) / sum(weights.values()), 6)


def decide(score: float | None, runner_up: float | None, cfg: Settings) -> str:
    """linked / review / no_match for the best score (an ambiguous best goes to review)."""
    if score is None or score < cfg.review:
        return "no_match"
    if score >= cfg.link and (runner_up is None or score - runner_up > cfg.margin):
        return "linked"
    return "review"


# ---------------------------------------------------------------------------------------------------------
# Blocking against the golden table: candidates share a birth date or a name (persons), a region or a core name
# (companies). The golden columns used are clear text in both tables.
# ---------------------------------------------------------------------------------------------------------

class _Records:
    """Golden records by position, as dicts made on first use (a 1 % run looks at a few thousand of a million)."""

    def __init__(self, fields: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.fields = fields
        self.rows = rows
        self._made: dict[int, dict[str, Any]] = {}

    def __getitem__(self, i: int) -> dict[str, Any]:
        made = self._made.get(i)
        if made is None:
            made = self._made[i] = dict(zip(self.fields, self.rows[i]))
        return made

    def column(self, name: str) -> list[Any]:
        """One column of every record."""
        at = self.fields.index(name)
        return [row[at] for row in self.rows]


class Index:
    """The golden records of one library, bucketed for blocking.

    Given the rows to be linked, only the buckets those rows can reach are kept; the golden blocking values are
    normalised once per distinct value (names and dates repeat), not once per record.
    """

    def __init__(self, engine: sa.Engine, library: str, rows: list[dict[str, Any]] | None = None) -> None:
        """Read the clear blocking columns of the library's current table."""
        self.library = library
        if library == "population":
            t = Person.__table__
            query = sa.select(t.c.person_id.label("key"), t.c.name, t.c.birth_date, t.c.region_code)
        else:
            t = LegalEntity.__table__
            query = sa.select(t.c.uscc.label("key"), t.c.name, t.c.address, t.c.region_code)
        with engine.connect() as connection:  # the driver's rows: a date may be ISO text, which the comparators read
            self.records = _Records(list(query.selected_columns.keys()), [r for part in driver_rows(connection, query) for r in part])
        wanted = None if rows is None else {b for r in rows for b in self._row_buckets(r)}
        self.buckets: dict[tuple[str, Any], list[int]] = defaultdict(list)
        for i, buckets in enumerate(self._golden_buckets()):
            for bucket in buckets:
                if wanted is None or bucket in wanted:
                    self.buckets[bucket].append(i)

    def _golden_buckets(self) -> Iterator[list[tuple[str, Any]]]:
        """Blocking keys of every golden record in order: name and birth date (persons) or core name and region
        (companies), each distinct value normalised once."""
        person = self.library == "population"
        first, second = self.records.column("name"), self.records.column("birth_date" if person else "region_code")
        name_of = functools.cache(clean_text if person else company_name)  # names, dates, regions repeat
        other_of = functools.cache(as_date if person else clean_text)
        for name_value, other_value in zip(first, second):
            name, other = name_of(name_value), other_of(other_value)
            out = [("name", name)] if name else []
            if other is not None and other != "":
                out.append(("birth" if person else "region", other))
            yield out

    def _row_buckets(self, r: dict[str, Any]) -> list[tuple[str, Any]]:
        """Blocking keys of a quarantined row (the golden records' keys, plus a birth date read month/day swapped)."""
        if self.library == "population":
            name = clean_text(r.get("name"))
            birth = as_date(r.get("birth_date"))
            out = [("name", name)] if name else []
            if birth is not None:
                out.append(("birth", birth))
                if birth.day <= 12 and birth.day != birth.month:  # month/day transposed
                    out.append(("birth", birth.replace(month=birth.day, day=birth.month)))
            return out
        name = company_name(r.get("entity_name"))
        region = clean_text(r.get("registration_region"))
        return [b for b in (("name", name), ("region", region)) if b[1]]

    def candidate_ids(self, record: dict[str, Any]) -> list[int]:
        """Positions of the golden records sharing a blocking key with the row, in first-seen order."""
        seen: dict[int, None] = {}
        for bucket in self._row_buckets(record):
            for i in self.buckets.get(bucket, ()):
                seen[i] = None
        return list(seen)

    def candidates(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Golden records sharing a blocking key with the row."""
        return [self.records[i] for i in self.candidate_ids(record)]

    @functools.cached_property
    def region_codes(self) -> list[Any]:
        """The region code of every golden record, by position."""
        return self.records.column("region_code")

    @functools.cached_property
    def company_texts(self) -> list[tuple[str, str]]:
        """(core name, address text) of every golden company, prepared once for the vectorised search."""
        return [(company_name(n), address_text(a)) for n, a in zip(self.records.column("name"), self.records.column("address"))]

    @functools.cached_property
    def person_columns(self) -> tuple[list[Any], list[Any]]:
        """(name, birth date) of every golden person, by position (converted when a search reads them)."""
        return self.records.column("name"), self.records.column("birth_date")

    @functools.cached_property
    def cleaned(self) -> Callable[[Any], str]:
        """clean_text remembered per value: golden names repeat across the rows' buckets."""
        return functools.cache(clean_text)

    @functools.cached_property
    def day_number(self) -> Callable[[Any], int]:
        """date_number remembered per value: golden birth dates repeat."""
        return functools.cache(date_number)

    def similarity_columns(self, record: dict[str, Any], ids: list[int]) -> dict[str, np.ndarray]:
        """Each component's score of the row against every candidate, as `person_components` /
        `company_components` give them but computed at once: text similarities by rapidfuzz, birth dates as numbers,
        regions once per distinct code."""
        regions = self.region_codes
        record_region = record.get("household_region" if self.library == "population" else "registration_region")
        region_of = {r: region_score(record_region, r) for r in {regions[i] for i in ids}}  # a bucket shares a few
        columns = {"region": np.array([region_of[regions[i]] for i in ids], dtype=np.float64)}
        if self.library == "population":
            names, births = self.person_columns
            cleaned, day_number = self.cleaned, self.day_number
            columns["name"] = _similarities(clean_text(record.get("name")), [cleaned(names[i]) for i in ids])
            columns["birth_date"] = birth_scores(date_number(record.get("birth_date")),
                                                 np.array([day_number(births[i]) for i in ids], dtype=np.int64))
        else:
            texts = self.company_texts
            columns["name"] = _similarities(company_name(record.get("entity_name")), [texts[i][0] for i in ids])
            columns["address"] = _similarities(address_text(record.get("registered_address")), [texts[i][1] for i in ids])
        return columns


NO_DAY = -1  # date_number of a missing or unreadable date
DIGIT_PLACES = 10 ** np.arange(7, -1, -1, dtype=np.int64)  # the eight digits of YYYYMMDD


def date_number(value: Any) -> int:
    """A date as the number YYYYMMDD (NO_DAY when missing or unreadable)."""
    day = as_date(value)
    return NO_DAY if day is None else day.year * 10_000 + day.month * 100 + day.day


def birth_scores(row: int, golden: np.ndarray) -> np.ndarray:
    """birth_score of a row's date against many golden dates, all given as date_number: 1 for the same day, 0.7
    for month and day transposed or one of the eight digits different, else 0. Years before 1000 print in fewer
    digits, which birth_score compares as printed: those pairs are scored by it."""
    if row == NO_DAY:
        return np.zeros(len(golden))
    transposed = row // 10_000 * 10_000 + row % 100 * 100 + row // 100 % 100
    digits_differing = ((golden[:, None] // DIGIT_PLACES) % 10 != (row // DIGIT_PLACES) % 10).sum(axis=1)
    near = (golden == transposed) | (digits_differing == 1)
    scores = np.where(golden == row, 1.0, np.where(near, 0.7, 0.0))
    scores[golden == NO_DAY] = 0.0
    for n in np.flatnonzero((golden != NO_DAY) & ((golden < 10_000_000) | (row < 10_000_000))).tolist():
        scores[n] = birth_score(_day_of(row), _day_of(int(golden[n])))
    return scores


def _day_of(number: int) -> dt.date:
    """The date of a date_number."""
    return dt.date(number // 10_000, number // 100 % 100, number % 100)


def top_two(record: dict[str, Any], index: Index, ids: list[int], cfg: Settings) -> list[tuple[float, str, dict]]:
    """The two best (score, key, components) of a row, as sorting every candidate's score would give them.

    A bucket holds dozens (a birth date) to thousands (a region) of golden records, and scoring each in Python costs
    edit distances. Every candidate's components are computed at once (`Index.similarity_columns`: rapidfuzz's C++
    Levenshtein similarity); only the candidates within EXACT_MARGIN of the runner-up are then scored exactly as
    `COMPONENTS` and `total` score them, so rounding and ties (broken by key) decide as before.
    """
    if not ids:
        return []
    weights = cfg.weights
    components = index.similarity_columns(record, ids)
    approximate = sum(weights[k] * components.get(k, 0.0) for k in weights) / sum(weights.values())  # total() unrounded
    floor = np.partition(approximate, -2)[-2] if len(ids) > 1 else approximate[0]
    scored = []
    for n in np.flatnonzero(approximate >= floor - EXACT_MARGIN).tolist():
        golden = index.records[ids[n]]
        exact = COMPONENTS[index.library](record, golden)
        scored.append((total(exact, weights), str(golden["key"]), exact))
    return sorted(scored, key=lambda s: (-s[0], s[1]))[:2]


# Scores are rounded to 6 decimals (total): a candidate more than 2e-6 below the runner-up's unrounded score cannot
# reach the top two, whatever the rounding or the last bits of the vectorised similarity.
EXACT_MARGIN = 2e-6


def _similarities(text: str, others: list[str]) -> np.ndarray:
    """edit_similarity(text, other) for every other: 1 − Levenshtein distance / longer length, 0 for an empty side."""
    if not text:
        return np.zeros(len(others))
    found = process.cdist([text], others, scorer=Levenshtein.normalized_similarity, dtype=np.float64, workers=1)[0]
    found[[not other for other in others]] = 0.0
    return found


def best_match(record: dict[str, Any], index: Index, cfg: Settings) -> dict[str, Any]:
    """The decision for one row: best candidate, its score and components, the runner-up's score, the status."""
    ids = index.candidate_ids(record)
    scored = top_two(record, index, ids, cfg)
    if not scored:
        return {"candidate_key": None, "score": None, "components": {}, "status": "no_match"}
    score, key, components = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else None
    status = decide(score, runner_up, cfg)
    detail = {**components, "weights": cfg.weights, "runner_up": runner_up, "candidates": len(ids)}
    return {"candidate_key": key, "score": score, "components": detail, "status": status}


# ---------------------------------------------------------------------------------------------------------
# Quarantined rows → decisions → claims.
# ---------------------------------------------------------------------------------------------------------

def candidates_for_linkage(engine: sa.Engine, library: str, cfg: Settings) -> list[Any]:
    """Quarantined rows of the configured sources held only by key rules, without a final decision yet."""
    q, d = QuarantinedRow.__table__, LinkageDecision.__table__
    decided = sa.select(d.c.source_key).where(d.c.library == library, d.c.source_id == q.c.source_id,
                                              d.c.source_key == q.c.source_key, d.c.status != "no_match")
    query = (sa.select(q.c.id, q.c.source_id, q.c.source_key, q.c.run_id, q.c.rule_ids, q.c.row_enc)
             .where(q.c.library == library, q.c.status == "quarantined", q.c.source_id.in_(cfg.sources),
                    ~sa.exists(decided)).order_by(q.c.id))
    with engine.connect() as connection:
        rows = list(connection.execute(query))
    return [r for r in rows if set(r.rule_ids.split(",")) <= cfg.key_rules]


def record_decisions(connection: sa.Connection, library: str, decided: list[tuple[Any, dict[str, Any]]],
                     now: dt.datetime, decided_by: str | None = None) -> None:
    """Insert or replace the decisions of quarantined rows (one per source record: the last given wins), in bulk."""
    from quality.store import upsert

    rows = {(row.source_id, row.source_key): {
        "library": library, "source_id": row.source_id, "run_id": row.run_id, "source_key": row.source_key,
        "candidate_key": decision["candidate_key"], "score": decision["score"], "components": decision["components"],
        "status": decision["status"], "created_at": now, "decided_by": decided_by, "decided_at": now if decided_by else None}
        for row, decision in decided}
    upsert(connection, LinkageDecision.__table__, list(rows.values()), ["library", "source_id", "source_key"])


def staged_rows(engine: sa.Engine, source_id: str, run_id: str, keys: list[str]) -> pa.Table:
    """The staged (standardised) rows of one run with these source keys."""
    from quality.staging import rows_with_keys

    with sa.orm.Session(engine) as session:
        checked = session.scalars(sa.select(QualityRun).where(QualityRun.source_id == source_id,
                                                              QualityRun.run_id == run_id)).first()
    if checked is None:
        raise RuntimeError(f"{source_id}/{run_id}: 尚未经过质量检查 not checked by the quality stage")
    return rows_with_keys(Path(checked.staging_path), keys)


def linked_id_numbers(engine: sa.Engine, person_keys: list[str]) -> dict[str, str]:
    """The resident ID numbers of the persons rows were linked to (person_id → ID number), from their golden records."""
    found: dict[str, bytes] = {}
    with engine.connect() as connection:
        for part in chunks(person_keys):
            found.update(connection.execute(sa.select(Person.person_id, Person.id_number_enc)
                                            .where(in_values(connection, Person.person_id, part))).tuples().all())
    keys = list(found)
    return dict(zip(keys, get_cipher().decrypt_many([found[k] for k in keys])))


def link_claims(library: str, rows: pa.Table, keys: dict[str, str], id_numbers: dict[str, str] | None = None) -> Claims:
    """Claims of linked rows on their candidates' keys (source_key → key), with everything but the broken key.

    id_numbers (population): the linked persons' ID numbers, claimed with the row. A source holds one claim per
    person, so a key-less row linked to a person the same source already knows by a keyed record replaces that
    record's claim; without the ID number in it, a person only that source knew lost its ID number (found at scale 2)."""
    from libraries.adapt import column, local_utc, plain

    if library == "legal_entity":
        from libraries.registry import get_library

        # The USCC column becomes the linked company's code; the rest is the library's own adapter.
        uscc = pa.array([keys[k] for k in rows.column("_source_key").to_pylist()], pa.string())
        rows = rows.set_column(rows.column_names.index("uscc"), "uscc", uscc) if "uscc" in rows.column_names \
            else rows.append_column("uscc", uscc)
        return get_library(library).claims(rows, rows.column("_source_id")[0].as_py() if rows.num_rows else "")
    from libraries.adapt import standard_codes

    out = Claims()
    values = {golden: column(rows, element) for golden, element in PERSON_FIELDS.items()}
    if "gender" in rows.column_names:
        values["gender"] = standard_codes(values["gender"], "gender")
    updated, source_keys = column(rows, "updated_at"), column(rows, "_source_key")
    for i in range(rows.num_rows):
        fields = {golden: plain(v[i]) for golden, v in values.items() if golden in PERSON_FIELDS and
                  PERSON_FIELDS[golden] in rows.column_names}
        key = keys[str(source_keys[i])]
        if id_numbers and id_numbers.get(key):
            fields["id_number"] = id_numbers[key]
        out.add(key, fields, local_utc(updated[i]), i, source_key=str(source_keys[i]))
    return out


def merge_linked(engine: sa.Engine, library: str, source_id: str, run_id: str, keys: dict[str, str],
                 now: dt.datetime) -> int:
    """Merge linked rows of one run as claims and release them from quarantine; returns how many."""
    rows = staged_rows(engine, source_id, run_id, list(keys))
    id_numbers = linked_id_numbers(engine, sorted(set(keys.values()))) if library == "population" else None
    claims = link_claims(library, rows, keys, id_numbers)
    with sa.orm.Session(engine) as session:
        run = session.scalars(sa.select(SourceRun).where(SourceRun.source_id == source_id, SourceRun.run_id == run_id)).first()
        checked = session.scalars(sa.select(QualityRun).where(QualityRun.source_id == source_id,
                                                              QualityRun.run_id == run_id)).first()
    extracted_at = (run.finished_at or run.started_at) if run else now
    merge_claims(engine, library, claims, source_id=source_id, run_id=run_id, extracted_at=extracted_at,
                 ruleset_version=checked.ruleset_version if checked else None)
    q = QuarantinedRow.__table__
    with engine.begin() as connection:
        connection.execute(sa.update(q).where(q.c.source_id == source_id, q.c.source_key.in_(list(keys)),
                                              q.c.status == "quarantined")
                           .values(status="released", released_at=now, released_run_id=run_id))
    return rows.num_rows


def link_pending(library: str, engine: sa.Engine | None = None, now: dt.datetime | None = None) -> dict[str, int]:
    """Decide every undecided key-less quarantined row of a library and merge the automatic links.

    The merge DAG calls this after loading. Returns counts per status plus `merged` (claims released).
    """
    if library not in LIBRARIES:
        return {}
    if engine is None:
        from hub.db import engine_for
        from hub.settings import get_settings

        engine = engine_for(get_settings().database_url)
    cfg = settings(library)
    now = now or dt.datetime.now(dt.UTC)
    rows = candidates_for_linkage(engine, library, cfg)
    counts = {"linked": 0, "review": 0, "no_match": 0, "merged": 0}
    if not rows:
        return counts
    records = [json.loads(payload) for payload in get_cipher().decrypt_many([r.row_enc for r in rows])]
    index = Index(engine, library, records)
    linked: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    decided = [(row, best_match(record, index, cfg)) for row, record in zip(rows, records)]
    for row, decision in decided:
        counts[decision["status"]] += 1
        if decision["status"] == "linked":
            linked[(row.source_id, row.run_id)][row.source_key] = decision["candidate_key"]
    with engine.begin() as connection:
        record_decisions(connection, library, decided, now)
    for (source_id, run_id), keys in linked.items():
        counts["merged"] += merge_linked(engine, library, source_id, run_id, keys, now)
    return counts


def steward_decide(engine: sa.Engine, decision_id: int, action: str, steward: str,
                   candidate_key: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """A steward confirms (the row is linked and merged) or rejects (it stays quarantined) a decision."""
    if action not in ("confirm", "reject"):
        raise ValueError(f"未知操作 unknown action: {action}")
    if not steward:
        raise ValueError("须注明数据专员 a steward must be named")
    now = now or dt.datetime.now(dt.UTC)
    d = LinkageDecision.__table__
    with engine.connect() as connection:
        found = connection.execute(sa.select(d).where(d.c.id == decision_id)).first()
    if found is None:
        raise LookupError(f"无此关联判定 no linkage decision {decision_id}")
    if found.status in ("linked", "confirmed", "rejected"):
        raise ValueError(f"判定 {decision_id} 已是 {found.status}，不能再{action} already decided")
    key = candidate_key or found.candidate_key
    if action == "confirm" and not key:
        raise ValueError("无候选主体，须指定 --candidate no candidate: name one")
    status = "confirmed" if action == "confirm" else "rejected"
    with engine.begin() as connection:
        connection.execute(sa.update(d).where(d.c.id == decision_id).values(
            status=status, candidate_key=key, decided_by=steward, decided_at=now))
        # Attributed and tamper-evident like every other steward action (libraries.overrides keeps the chain).
        append_audit(connection, actor=steward, action=f"linkage_{action}", library=found.library, entity_key=key or "",
                     field=None, detail={"decision_id": decision_id, "source_id": found.source_id,
                                         "source_key": found.source_key, "score": found.score}, at=now)
    if action == "confirm":
        merge_linked(engine, found.library, found.source_id, found.run_id, {found.source_key: key}, now)
    return {"id": decision_id, "status": status, "candidate_key": key, "decided_by": steward}


def list_decisions(engine: sa.Engine, library: str | None = None, status: str | None = "review",
                   limit: int = 100) -> list[dict[str, Any]]:
    """Decisions (the review queue by default), oldest first."""
    d = LinkageDecision.__table__
    query = sa.select(d).order_by(d.c.id).limit(limit)
    if library:
        query = query.where(d.c.library == library)
    if status:
        query = query.where(d.c.status == status)
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(query)]


# ---------------------------------------------------------------------------------------------------------
# Measurement against the simulated province's linkage_truth.parquet.
# ---------------------------------------------------------------------------------------------------------

def evaluate(engine: sa.Engine, world_dir: Path) -> dict[str, Any]:
    """Precision and recall of the decisions against the planted cases, per library.

    A case is linkable when its true subject is in the golden table; it is in scope when its source is one the
    linkage reads and the quality stage holds the row only for its key. precision = correct links / links,
    recall = correct links / linkable in-scope cases; review decisions are counted apart (with how many name the
    true subject).
    """
    import pyarrow.parquet as pq

    truth = pq.read_table(Path(world_dir) / "linkage_truth.parquet").to_pylist()
    d, q = LinkageDecision.__table__, QuarantinedRow.__table__
    with engine.connect() as connection:
        decisions = {(r.source_id, r.source_key): r for r in connection.execute(sa.select(d))}
        held = {(r.source_id, r.source_key) for r in connection.execute(sa.select(q.c.source_id, q.c.source_key))}
        golden = {"population": {r[0] for r in connection.execute(sa.select(Person.__table__.c.person_id))},
                  "legal_entity": {r[0] for r in connection.execute(sa.select(LegalEntity.__table__.c.uscc))}}
    cipher = get_cipher()
    out: dict[str, Any] = {}
    for library in LIBRARIES:
        cfg = settings(library)
        c = defaultdict(int)
        for case in (t for t in truth if t["library"] == library):
            key = cipher.index_hash(case["true_key"]) if library == "population" else case["true_key"]
            c["cases"] += 1
            in_scope = case["source"] in cfg.sources and (case["source"], case["record_key"]) in held
            linkable = in_scope and key in golden[library]
            c["in_scope"] += in_scope
            c["linkable"] += linkable
            c["hard_negative_cases"] += bool(case.get("hard_negative")) and in_scope
            found = decisions.get((case["source"], case["record_key"]))
            status = found.status if found is not None else None
            if status in ("linked", "confirmed"):
                c["linked_correct" if found.candidate_key == key else "linked_wrong"] += 1
                if found.candidate_key != key and case.get("hard_negative"):
                    c["hard_negative_linked_wrong"] += 1
            elif status == "review":
                c["review"] += 1
                c["review_true_candidate"] += found.candidate_key == key
            elif linkable:
                c["missed"] += 1
            elif in_scope:
                c["no_match_correct"] += status == "no_match"
        links = c["linked_correct"] + c["linked_wrong"]
        out[library] = {**dict(sorted(c.items())),
                        "precision": round(c["linked_correct"] / links, 4) if links else None,
                        "recall": round(c["linked_correct"] / c["linkable"], 4) if c["linkable"] else None,
                        "recall_with_review": round((c["linked_correct"] + c["review_true_candidate"]) / c["linkable"], 4)
                        if c["linkable"] else None}
    return out


__all__ = ["best_match", "decide", "evaluate", "link_pending", "list_decisions", "settings", "steward_decide"]
