"""Reference data for cross-source comparison (比对) and referential integrity (关联性).

Built from standardised batches of the anchor sources (公安 for persons; 市场监管 and 民政 for legal
entities; 民政 marriage registrations for marital status), wherever those batches come from: the staging
area of the hub, or a world read in-process. Every row of an anchor counts, quarantined or not: a person
quarantined for a bad ethnicity code still exists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quality.catalogue import load_catalogue
from schemas import identifiers

CODE_BLOCK_KEYS = 1_000_000  # resident IDs turned into integer codes at a time


def comparable_names(values: pa.Array) -> pa.Array:
    """Names as compared across departments: NFKC, no white space at all (messiness is not a conflict)."""
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    return pc.replace_substring_regex(pc.utf8_normalize(text, "NFKC"), r"\s+", "")


@dataclass
class Lookup:
    """Unique keys with one value per key (and where the value came from)."""

    keys: pa.Array
    values: pa.Array
    source_ids: pa.Array
    source_keys: pa.Array
    details: pa.Array  # a second value per key where one is needed (the date of a registration), else nulls

    @classmethod
    def empty(cls) -> "Lookup":
        """A lookup that knows nothing."""
        nothing = pa.array([], pa.string())
        return cls(nothing, nothing, nothing, nothing, nothing)

    @classmethod
    def build(cls, parts: list[tuple[pa.Array, pa.Array, str, pa.Array]], details: list[pa.Array] | None = None) -> "Lookup":
        """From (keys, values, source id, source keys) parts; the first row of a key wins, blank keys are dropped."""
        if not parts:
            return cls.empty()
        keys = pa.concat_arrays([p[0] for p in parts])
        values = pa.concat_arrays([pc.cast(p[1], pa.string()) for p in parts])
        # one byte a key (a dictionary of the few anchor sources), not the source id's text again for every key
        names = sorted({p[2] for p in parts})
        source_ids = pa.DictionaryArray.from_arrays(
            pa.array(np.concatenate([np.full(len(p[0]), names.index(p[2]), dtype=np.int8) for p in parts])), pa.array(names, pa.string()))
        source_keys = pa.concat_arrays([pc.cast(p[3], pa.string()) for p in parts])
        extra = pa.concat_arrays([pc.cast(d, pa.string()) for d in details]) if details else pa.nulls(len(keys), pa.string())
        usable = pc.and_(pc.is_valid(keys), pc.not_equal(pc.fill_null(keys, ""), ""))
        keys, values, extra = keys.filter(usable), values.filter(usable), extra.filter(usable)
        source_ids, source_keys = source_ids.filter(usable), source_keys.filter(usable)
        codes = np.asarray(pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        first = np.full(int(codes.max()) + 1 if len(codes) else 0, -1, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes))[::-1]  # the last write wins: walking backwards keeps each key's first row
        take = pa.array(np.sort(first))
        return cls(keys.take(take), values.take(take), source_ids.take(take), source_keys.take(take), extra.take(take))

    def __len__(self) -> int:
        """Number of keys."""
        return len(self.keys)

    def positions(self, keys: np.ndarray | pa.Array) -> np.ndarray:
        """Index of each key in the lookup, -1 where unknown."""
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        wanted = keys if isinstance(keys, pa.Array) else pa.array(np.asarray(keys).astype(str), pa.string())
        index = self._text_index
        if index is not None and (pa.types.is_string(wanted.type) or pa.types.is_large_string(wanted.type)):
            text = pd.array(pc.cast(wanted, pa.string()), dtype="string[pyarrow]")
            return np.asarray(index.get_indexer(text), dtype=np.int64)
        found = pc.index_in(wanted, value_set=self.keys)
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)

    @cached_property
    def _text_index(self) -> pd.Index | None:
        """A hash index over the keys, built once (None if a key repeats): pc.index_in would hash all of them again
        on every call, 0.27 s a call against 1 M persons, and a stage asks per rule, field and run."""
        index = pd.Index(pd.array(pc.cast(self.keys, pa.string()), dtype="string[pyarrow]"))
        return index if index.is_unique else None

    def _codes(self) -> np.ndarray:
        """The keys' int64 resident codes, in key order, a block of keys' fixed-width text (72 bytes a key) at a time."""
        from quality.frame import resident_codes, unicode_array

        codes = np.empty(len(self.keys), dtype=np.int64)
        for start in range(0, len(self.keys), CODE_BLOCK_KEYS):
            keys = self.keys.slice(start, CODE_BLOCK_KEYS)
            codes[start:start + len(keys)] = resident_codes(unicode_array(keys))
        return codes

    @cached_property
    def _sorted_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted int64 resident codes of the keys, their positions): the integer lookup when codes repeat."""
        codes = self._codes()
        order = np.argsort(codes, kind="stable")
        return codes[order], order

    @cached_property
    def _code_index(self):
        """A hashed pandas index over the keys' int64 codes (None if two keys share a code); only it is kept, not a
        sorted copy of the codes beside it."""
        index = pd.Index(self._codes())
        return index if index.is_unique else None

    def positions_of_codes(self, codes: np.ndarray) -> np.ndarray:
        """Like positions() for resident IDs given as int64 codes (-1 = invalid): a binary search, no hashing of text."""
        if len(self.keys) == 0:
            return np.full(len(codes), -1, dtype=np.int64)
        index = self._code_index
        if index is not None:  # unique keys (as built): one hash probe per row instead of a binary search
            return np.where(codes >= 0, index.get_indexer(codes), -1)
        sorted_codes, order = self._sorted_codes
        at = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
        return np.where((codes >= 0) & (sorted_codes[at] == codes), order[at], -1)

    def contains(self, keys: np.ndarray | pa.Array) -> np.ndarray:
        """Whether each key is known."""
        return self.positions(keys) >= 0


class References:
    """Persons, legal entities and marriage registrations as the anchor sources have them, built on first use."""

    def __init__(self, tables: dict[str, pa.Table], reference_date: dt.date) -> None:
        self.tables = tables
        self.reference_date = reference_date
        ready = set()
        if any(_has(tables.get(s), {"resident_id", "name"}) for s in anchor_sources("population")):
            ready.add("persons")
        if any(_has(tables.get(s), {"uscc", "entity_name"}) for s in anchor_sources("legal_entity")):
            ready.add("entities")
        params = registration_params()
        if params and tables.get(params["source"]) is not None:
            ready.add("registrations")
        self.ready = frozenset(ready)

    @cached_property
    def persons(self) -> Lookup:
        """Normalised resident ID → comparable name, from the population anchors."""
        parts = []
        for source_id in anchor_sources("population"):
            table = self.tables.get(source_id)
            if _has(table, {"resident_id", "name"}):
                parts.append((_resident_ids(table.column("resident_id").combine_chunks(), self.reference_date),
                              comparable_names(table.column("name").combine_chunks()), source_id,
                              table.column("_source_key").combine_chunks()))
        return Lookup.build(parts)

    @cached_property
    def entities(self) -> Lookup:
        """USCC → comparable name, from the legal-entity anchors."""
        parts = []
        for source_id in anchor_sources("legal_entity"):
            table = self.tables.get(source_id)
            if _has(table, {"uscc", "entity_name"}):
                codes = pc.utf8_upper(pc.utf8_trim_whitespace(table.column("uscc").combine_chunks()))
                parts.append((codes, comparable_names(table.column("entity_name").combine_chunks()), source_id,
                              table.column("_source_key").combine_chunks()))
        return Lookup.build(parts)

    @cached_property
    def registrations(self) -> Lookup:
        """Resident ID → kind of the latest marriage registration (its date in details)."""
        params = registration_params()
        if "registrations" not in self.ready:
            return Lookup.empty()
        return _latest_registrations(self.tables[params["source"]], params, self.reference_date)


def _has(table: pa.Table | None, columns: set[str]) -> bool:
    """Whether a batch is there and has the columns."""
    return table is not None and columns <= set(table.column_names)


def anchor_sources(library: str) -> list[str]:
    """The sources the catalogue marks as anchors of a library (they define which subjects exist)."""
    return sorted(p.source_id for p in load_catalogue(library).profiles.values() if p.anchor)


def registration_params() -> dict:
    """Where marriage registrations come from (the population catalogue's marital comparison rule)."""
    for rule in load_catalogue("population").rules:
        if rule.check == "compare_marital_status":
            return dict(rule.params.get("registrations") or {})
    return {}


def needed_sources() -> list[str]:
    """Every source whose batches the references are built from."""
    registrations = registration_params().get("source")
    return anchor_sources("population") + anchor_sources("legal_entity") + ([registrations] if registrations else [])


def needed_columns() -> dict[str, set[str]]:
    """Per source of needed_sources(), the staged columns the lookups read (`_source_key` comes with every read)."""
    columns: dict[str, set[str]] = {}
    for source_id in anchor_sources("population"):
        columns.setdefault(source_id, set()).update({"resident_id", "name"})
    for source_id in anchor_sources("legal_entity"):
        columns.setdefault(source_id, set()).update({"uscc", "entity_name"})
    params = registration_params()
    if params.get("source"):
        columns.setdefault(params["source"], set()).update({params["kind"], params["date"], *params["people"]})
    return columns


def _resident_ids(values: pa.Array, today: dt.date) -> pa.Array:
    """Normalised 18-digit resident IDs ('' where invalid)."""
    check = identifiers.check_resident_ids(values, today=today)
    ids = pa.array(np.where(check.valid, check.normalised, ""), pa.string())
    return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids  # pyarrow may chunk big numpy text


def build_references(tables: dict[str, pa.Table], reference_date: dt.date) -> References:
    """References from standardised batches by source id; each lookup is built when a rule first needs it."""
    return References(tables, reference_date)


def _latest_registrations(table: pa.Table, params: dict, reference_date: dt.date) -> Lookup:
    """Per person, the kind and date of the latest usable registration ("kind|YYYY-MM-DD")."""
    kinds = table.column(params["kind"]).combine_chunks()
    dates = pc.cast(table.column(params["date"]).combine_chunks(), pa.date32())
    usable = pc.and_(pc.is_in(kinds, value_set=pa.array([str(k) for k in params.get("kinds", [])] or ["20", "23", "40"])),
                     pc.less_equal(dates, pa.scalar(reference_date, pa.date32())))
    usable = pc.fill_null(usable, False)
    keys = table.column("_source_key").combine_chunks()
    people, kind_parts, day_parts, key_parts = [], [], [], []
    for column in params["people"]:
        people.append(_resident_ids(table.column(column).combine_chunks(), reference_date).filter(usable))
        kind_parts.append(kinds.filter(usable))
        day_parts.append(dates.filter(usable))
        key_parts.append(keys.filter(usable))
    if not people:
        return Lookup.empty()
    person = pa.concat_arrays(people)
    day = pa.concat_arrays(day_parts)
    order = pc.sort_indices(pa.table({"p": person, "d": day, "i": pa.array(np.arange(len(person)))}),
                            sort_keys=[("p", "ascending"), ("d", "descending"), ("i", "descending")])
    person, day = person.take(order), day.take(order)
    kind = pa.concat_arrays(kind_parts).take(order)
    key = pa.concat_arrays(key_parts).take(order)
    return Lookup.build([(person, kind, params["source"], key)], details=[pc.strftime(day, format="%Y-%m-%d")])
