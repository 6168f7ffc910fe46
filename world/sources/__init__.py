"""Department source systems derived from the truth: formatting, messiness and injected defects."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world.config import DATE_STYLE_MIX, MESSINESS_RATES, WorldConfig, rng_for
from world.defects import Fabricator, lanes
from world.text import format_dates, messy_text
from world.truth import Truth


@dataclass
class Derived:
    """One or more source tables of a department, ready to write, with their manifest entries."""

    tables: dict[str, pa.Table]
    manifest: pa.Table
    # Per output table: hidden grouping (e.g. file year) that must not be written as a column.
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    # Record-linkage ground truth: rows whose subject key is broken, with the true key (world.linkage).
    linkage: pa.Table | None = None


class Context:
    """The truth plus what every source derivation needs: lanes, reference masks, random streams."""

    def __init__(self, cfg: WorldConfig, truth: Truth) -> None:
        """Index the truth."""
        self.cfg = cfg
        self.truth = truth
        self.ref = cfg.ref
        self.n_persons = truth.persons.num_rows
        self.n_entities = truth.entities.num_rows
        self.person_lane = lanes(cfg.seed, self.n_persons, "persons")
        self.entity_lane = lanes(cfg.seed, self.n_entities, "entities")
        self.p = {c: truth.persons.column(c).combine_chunks() for c in truth.persons.column_names}
        self.e = {c: truth.entities.column(c).combine_chunks() for c in truth.entities.column_names}

    def rng(self, *names: str) -> np.random.Generator:
        """The random stream of a source step."""
        return rng_for(self.cfg.seed, "source", *names)

    @functools.cached_property
    def person_referenced(self) -> np.ndarray:
        """Persons another source refers to (their anchor key must stay intact)."""
        t = self.truth
        used = np.zeros(self.n_persons + 1, dtype=bool)
        used[t.entities.column("rep_person_id").to_numpy()] = True
        used[t.insurance.column("person_id").to_numpy()] = True
        used[t.marriages.column("husband_id").to_numpy()] = True
        used[t.marriages.column("wife_id").to_numpy()] = True
        for table, kind_col, ref_col in _subject_columns(t):
            kinds = table.column(kind_col).to_numpy(zero_copy_only=False)
            used[table.column(ref_col).to_numpy()[kinds == "person"]] = True
        return used[1:]

    @functools.cached_property
    def entity_referenced(self) -> np.ndarray:
        """Entities another source refers to."""
        t = self.truth
        used = np.zeros(self.n_entities + 1, dtype=bool)
        employers = t.insurance.column("employer_entity_id").drop_null().to_numpy()
        used[employers] = True
        for table, kind_col, ref_col in _subject_columns(t):
            kinds = table.column(kind_col).to_numpy(zero_copy_only=False)
            used[table.column(ref_col).to_numpy()[kinds == "entity"]] = True
        return used[1:]

    @functools.cached_property
    def _known_codes(self) -> tuple[set[str], set[str]]:
        """Every resident ID and USCC of the truth (fabricated subjects must avoid them)."""
        return set(self.p["id_number"].to_pylist()), set(self.e["uscc"].to_pylist())

    def fabricator(self, source: str) -> Fabricator:
        """Maker of subjects that exist nowhere, with its own random stream per source."""
        known_ids, known_usccs = self._known_codes
        return Fabricator(known_ids, known_usccs, self.rng(source, "fabricator"))

    def dates(self, days: np.ndarray, mix: str, rng: np.random.Generator) -> pa.Array:
        """Dates written in the department's mix of styles."""
        p = np.array(DATE_STYLE_MIX[mix])
        styles = rng.choice(len(p), size=len(days), p=p / p.sum())
        return format_dates(days, styles)

    def messy(self, values: pa.Array, rng: np.random.Generator, *, traditional: bool = False, spaces: bool = False,
              inner: bool = False, full_width: bool = False, scale: float = 1.0) -> pa.Array:
        """Text messiness at the world's rates for the kinds that suit the field."""
        rates = MESSINESS_RATES
        return messy_text(
            values, rng,
            traditional=rates["traditional_characters"] * scale if traditional else 0.0,
            spaces=rates["stray_spaces"] * scale if spaces else 0.0,
            inner=rates["inner_double_spaces"] * scale if inner else 0.0,
            full_width=rates["full_width"] * scale if full_width else 0.0,
        )


def _subject_columns(t: Truth) -> list[tuple[pa.Table, str, str]]:
    """(table, kind column, ref column) of every truth table that points at persons or entities."""
    out = [(t.licences, "holder_kind", "holder_ref")]
    out.extend((table, "subject_kind", "subject_ref") for table in t.credit.values())
    return out


def days(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A date column as datetime64[D] with NaT for nulls."""
    return values.to_numpy(zero_copy_only=False).astype("datetime64[D]") if isinstance(values, pa.Array) \
        else values.to_numpy().astype("datetime64[D]")


def replace(values: pa.Array, rows: np.ndarray, new: list[object]) -> pa.Array:
    """Put new values (None = null) at rows."""
    if not len(rows):
        return values
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    order = np.argsort(rows, kind="stable")
    return pc.replace_with_mask(values, pa.array(mask), pa.array([new[i] for i in order], values.type))


def timestamps_between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A random second in [low 00:00, high 00:00) per row (datetime64[s])."""
    lo = low.astype("datetime64[s]")
    span = np.maximum((high.astype("datetime64[s]") - lo).astype(np.int64), 1)
    return lo + (rng.random(len(low)) * span).astype(np.int64).astype("timedelta64[s]")
