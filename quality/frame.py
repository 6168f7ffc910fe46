"""A standardised batch as the rules see it: columns as Arrow or numpy, with the costly derivations done once.

Several rules read the same derived facts (the resident-ID check feeds the identifier rule, the birth-date
and gender comparisons, duplicate keys and the cross-source lookups), so a Frame computes each one on
first use and keeps it for the other rules of the same batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.catalogue import Catalogue, SourceProfile
from schemas import identifiers

if TYPE_CHECKING:
    from quality.staging import StagedRows

EPOCH = np.datetime64("1970-01-01", "D")
# First UTF-8 bytes of the characters Unicode calls white space: ASCII controls and space, U+0085/U+00A0 (C2),
# U+1680 (E1), U+2000–U+205F (E2), U+3000 (E3).
BLANK_LEAD_BYTES = np.array([9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 0xC2, 0xE1, 0xE2, 0xE3], dtype=np.uint8)
NO_DAY = np.iinfo(np.int64).min  # day number of a missing or unreadable date


@dataclass
class RuleContext:
    """Everything a rule needs besides the batch: the run's reference date, the catalogue, references."""

    source_id: str
    run_id: str
    reference_date: dt.date
    catalogue: Catalogue
    references: Any = None  # quality.references.References, None when no cross-source data is at hand
    known_keys: Any = None  # natural keys seen in earlier runs of the source (quality.engine.KnownKeys) or None
    waived: frozenset[tuple[str, str]] = frozenset()  # (source_key, rule_id) a steward accepted

    @property
    def profile(self) -> SourceProfile:
        """The source's profile in the catalogue."""
        return self.catalogue.profile(self.source_id)

    @property
    def reference_day(self) -> int:
        """The reference date as a day number (days since 1970-01-01)."""
        return int((np.datetime64(self.reference_date, "D") - EPOCH).astype(np.int64))


@dataclass
class Frame:
    """One standardised batch with lazily derived columns."""

    table: "pa.Table | StagedRows"  # a staged run reads only the columns the rules ask for
    context: RuleContext
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        """Number of rows."""
        return self.table.num_rows

    @cached_property
    def columns(self) -> set[str]:
        """Column names of the batch."""
        return set(self.table.column_names)

    def _cached(self, kind: str, name: str, make: Any) -> Any:
        """Compute a derived column once per (kind, column)."""
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def column(self, name: str) -> pa.Array:
        """One column as a single Arrow array (zero-copy when the table holds it in one chunk)."""
        def make() -> pa.Array:
            column = self.table.column(name)
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        return self._cached("arrow", name, make)

    def present(self, name: str) -> np.ndarray:
        """Whether each value is there (not null, not blank text)."""
        def make() -> np.ndarray:
            # Chunk by chunk when the column has not been combined yet: a rule reading only presence (a long
            # address) then never copies the column into one array.
            chunks = [self._cache[("arrow", name)]] if ("arrow", name) in self._cache else self.table.column(name).chunks
            if len(chunks) == 1:
                return _present(chunks[0])
            if not chunks:
                return _present(self.column(name))
            return np.concatenate([_present(chunk) for chunk in chunks])
        return self._cached("present", name, make)

    def text(self, name: str) -> pa.Array:
        """The column as Arrow strings (null stays null)."""
        def make() -> pa.Array:
            values = self.column(name)
            return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        return self._cached("text", name, make)

    def strings_at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Like strings(name)[rows], converting only those rows (messages concern the failing few)."""
        if name in self.columns and ("strings", name) in self._cache:
            return self._cache[("strings", name)][rows]
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, dtype=object)
        return np.asarray(self.text(name).take(pa.array(rows)).to_numpy(zero_copy_only=False), dtype=object)

    def strings(self, name: str) -> np.ndarray:
        """The column as a numpy object array of str/None (for messages over a few rows)."""
        return self._cached("strings", name, lambda: np.asarray(self.text(name).to_numpy(zero_copy_only=False), dtype=object))

    def days(self, name: str) -> np.ndarray:
        """Dates and timestamps as day numbers since 1970-01-01 (NO_DAY where missing)."""
        def make() -> np.ndarray:
            values = self.column(name)
            if pa.types.is_timestamp(values.type):
                values = pc.cast(values, pa.date32())
            if not pa.types.is_date(values.type):  # text dates come only from declared non-element fields
                from schemas.normalize import date as parse_date

                values = parse_date(values)[0]
            numbers = pc.cast(pc.cast(values, pa.date32()), pa.int32())
            return np.asarray(pc.fill_null(pc.cast(numbers, pa.int64()), NO_DAY).to_numpy(zero_copy_only=False))
        return self._cached("days", name, make)

    def unicode(self, name: str) -> np.ndarray:
        """The column as a fixed-width numpy unicode array ('' where missing): the identifier checks' fastest input."""
        return self._cached("unicode", name, lambda: unicode_array(pc.fill_null(self.text(name), "")))

    def resident(self, name: str) -> identifiers.ResidentIdResult:
        """The resident-ID check of a column (birth date not after the reference date)."""
        return self._cached("resident-id", name, lambda: identifiers.check_resident_ids(
            self.unicode(name), today=self.context.reference_date))

    def uscc(self, name: str) -> identifiers.UsccResult:
        """The USCC check of a column."""
        return self._cached("uscc", name, lambda: identifiers.check_usccs(self.unicode(name)))

    def licence(self, name: str) -> identifiers.LicenceIdResult:
        """The licence-identifier check of a column."""
        return self._cached("licence-id", name, lambda: identifiers.check_licence_ids(self.text(name)))

    def identifier_key(self, name: str, kind: str | None) -> pa.Array:
        """Comparable key of an identifier column as Arrow text: the normalised 18-digit form of a valid resident
        ID ('' for an invalid one); for other kinds the trimmed, upper-cased text ('' if missing)."""
        def make() -> pa.Array:
            if kind != "resident-id":
                return pc.fill_null(pc.utf8_upper(pc.utf8_trim_whitespace(self.text(name))), "")
            check = self.resident(name)
            # A valid ID's key is its normalised form (18 characters); '' where invalid.
            fast = ascii_strings(check.normalised, np.where(check.valid, 18, 0)) if check.normalised.dtype == "<U18" else None
            if fast is not None:
                return fast
            keys = pc.if_else(pa.array(check.valid), pc.fill_null(self.text(name), ""), "")
            # Rows whose text is not already the normalised form (legacy 15-digit, lower-case x, spaces) get it written in.
            changed = check.valid & (self.unicode(name) != check.normalised)
            if changed.any():
                keys = pc.replace_with_mask(keys, pa.array(changed), pa.array(check.normalised[changed].tolist(), pa.string()))
            return keys
        return self._cached(f"key-{kind}", name, make)

    def resident_codes(self, name: str) -> np.ndarray:
        """Valid resident IDs as int64 (their first 17 digits determine the 18th); -1 where invalid. Cheap to group."""
        def make() -> np.ndarray:
            check = self.resident(name)
            return np.where(check.valid, resident_codes(check.normalised), -1)
        return self._cached("resident-codes", name, make)

    def source_keys(self) -> pa.Array:
        """The source's own key of every row as Arrow text ('' where missing): a run's keys stay compact, never a
        Python str each."""
        return self._cached("keys", "_source_key", lambda: pc.fill_null(self.text("_source_key"), ""))


def _present(values: pa.Array) -> np.ndarray:
    """Whether each value of one array is there (not null, not blank text)."""
    there = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_string(values.type) and len(values):
        first, empty = first_bytes(values)
        there &= ~empty
        # Only text whose first byte can begin a white-space character can be all blank: test those few in
        # full instead of scanning every long address.
        suspects = np.flatnonzero(there & np.isin(first, BLANK_LEAD_BYTES))
        if len(suspects):
            blank = np.asarray(pc.utf8_is_space(values.take(pa.array(suspects))).to_numpy(zero_copy_only=False), dtype=bool)
            there[suspects[blank]] = False
    return there


def first_bytes(values: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(first UTF-8 byte of each value, whether the value is empty) read straight from the Arrow buffers."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=4 * values.offset)
    data = values.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None and data.size else np.zeros(1, dtype=np.uint8)
    empty = offsets[1:] == offsets[:-1]
    first = raw[np.minimum(offsets[:-1], len(raw) - 1)]
    return np.where(empty, 0, first).astype(np.uint8), empty


def unicode_array(values: pa.Array) -> np.ndarray:
    """A null-free Arrow string array as a fixed-width numpy unicode array (straight from the buffers when ASCII)."""
    fast = ascii_unicode(values)
    if fast is not None:
        return fast
    width = max(int(pc.max(pc.utf8_length(values)).as_py() or 1), 1) if len(values) else 1
    return np.asarray(values.to_numpy(zero_copy_only=False)).astype(f"<U{width}")


def ascii_unicode(values: pa.Array) -> np.ndarray | None:
    """A null-free Arrow string array of pure ASCII text as a fixed-width numpy unicode array, built straight from
    the Arrow buffers (the same array as converting through Python strings); None when any byte is not ASCII."""
    if not pa.types.is_string(values.type) or values.null_count or not len(values):
        return None
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=4 * values.offset)
    data = values.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None and data.size else np.zeros(0, dtype=np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    if end > start and raw[start:end].max() >= 128:
        return None
    width = max(int((offsets[1:] - offsets[:-1]).max()), 1)
    padded = pc.utf8_rpad(values, width=width, padding="\x00")  # NUL padding: numpy's own fixed-width fill
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32, count=len(padded) + 1, offset=4 * padded.offset)
    start = int(offsets[0])
    raw = np.frombuffer(padded.buffers()[2], dtype=np.uint8)[start:start + len(padded) * width]
    return raw.astype(np.uint32).view(f"<U{width}")


def ascii_strings(values: np.ndarray, lengths: np.ndarray | None = None) -> pa.Array | None:
    """A numpy unicode array of ASCII text as an Arrow string array (no nulls), built from its code points without
    Python strings; None when some character is not ASCII. ``lengths`` (characters per value) may be given when known."""
    values = np.ascontiguousarray(values)
    if values.dtype.kind != "U" or values.ndim != 1 or values.dtype.itemsize == 0:
        return None
    width = values.dtype.itemsize // 4
    codes = values.view(np.uint32).reshape(-1, width)
    lengths = np.strings.str_len(values).astype(np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths.sum() >= 2**31:
        return None
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    full = lengths == width
    if (full | (lengths == 0)).all():  # e.g. normalised IDs: 18 characters, or '' where invalid
        used = codes if full.all() else codes[full]
    else:
        used = codes[np.arange(width) < lengths[:, None]]  # row-major: each value's characters in order
    if used.size and used.max() >= 128:
        return None
    data = used.astype(np.uint8).ravel()
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(data))


def resident_codes(ids: np.ndarray) -> np.ndarray:
    """Normalised 18-character resident IDs as int64 (the first 17 digits; the 18th follows from them)."""
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    chars = np.ascontiguousarray(np.asarray(ids), dtype="<U18").view(np.uint32).reshape(-1, 18)
    codes = np.empty(len(chars), dtype=np.int64)
    # Block by block: each pass of Horner's scheme reads one character column, and a block's characters
    # (32k rows × 72 bytes) stay in cache across the 17 passes instead of being read from memory 17 times
    # (≈2.5× faster over a million rows).
    for start in range(0, len(chars), _CODE_BLOCK_ROWS):
        block = chars[start:start + _CODE_BLOCK_ROWS]
        out = codes[start:start + _CODE_BLOCK_ROWS]
        out[:] = block[:, 0]
        out -= 48
        for column in range(1, 17):  # Horner over the columns: no [rows, 17] int64 temporary
            out *= 10
            out += block[:, column]
            out -= 48
    return codes


_CODE_BLOCK_ROWS = 32768


def day_texts(days: np.ndarray) -> list[str]:
    """Day numbers as YYYY-MM-DD texts (vectorised day_text)."""
    return (EPOCH + np.asarray(days, dtype=np.int64).astype("timedelta64[D]")).astype(str).tolist()


def day_text(day: int) -> str:
    """A day number as YYYY-MM-DD."""
    return str(EPOCH + np.timedelta64(int(day), "D"))
