"""Vectorised string building (pyarrow) and the messiness departments add to text: formats, widths, scripts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zhconv

Strings = pa.Array | str

# Date styles departments really write; the index is the style code used everywhere in the world.
DATE_STYLES = ("iso", "compact", "slash", "chinese", "fullwidth")


def cat(*parts: Strings) -> pa.Array:
    """Element-wise concatenation of arrays and literal strings (null if any part is null)."""
    # An empty column built from an empty numpy array has arrow type null: give it the string type.
    typed = [p.cast(pa.string()) if isinstance(p, pa.Array) and p.type == pa.null() else p for p in parts]
    return pc.binary_join_element_wise(*typed, "")


def const(value: str | None, count: int) -> pa.Array:
    """A string column repeating one value."""
    return pa.repeat(pa.scalar(value, pa.string()), count)


def num(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as decimal strings, left-padded with zeros to width."""
    out = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return pc.utf8_lpad(out, width, padding="0") if width else out


def take(pool: Sequence[str] | pa.Array, index: np.ndarray) -> pa.Array:
    """Pool entries at the given indices."""
    pool_array = pool if isinstance(pool, pa.Array) else pa.array(list(pool), pa.string())
    return pool_array.take(pa.array(np.asarray(index, dtype=np.int64)))


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month and day of datetime64[D] values."""
    d = np.asarray(days, dtype="datetime64[D]")
    years = d.astype("datetime64[Y]")
    months = d.astype("datetime64[M]")
    return (
        years.astype(np.int64) + 1970,
        (months - years.astype("datetime64[M]")).astype(np.int64) + 1,
        (d - months.astype("datetime64[D]")).astype(np.int64) + 1,
    )


def iso_dates(days: np.ndarray) -> pa.Array:
    """YYYY-MM-DD strings."""
    y, m, d = ymd(days)
    return cat(num(y, 4), "-", num(m, 2), "-", num(d, 2))


def format_dates(days: np.ndarray, styles: np.ndarray) -> pa.Array:
    """Dates written in the style chosen per row (see DATE_STYLES); NaT stays null.

    Each style is built only for its own rows, then one take puts the rows back in order.
    """
    d = np.asarray(days, dtype="datetime64[D]")
    styles = np.where(np.isnat(d), -1, np.asarray(styles))
    order = np.argsort(styles, kind="stable")
    pieces = [pa.nulls(int((styles == -1).sum()), pa.string())]
    for style in range(len(DATE_STYLES)):
        rows = np.flatnonzero(styles == style)
        if rows.size:
            pieces.append(_dates_in_style(d[rows], style))
    ordered = pa.concat_arrays(pieces)
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return ordered.take(pa.array(inverse))


def _dates_in_style(days: np.ndarray, style: int) -> pa.Array:
    """Dates (no NaT) in one style."""
    y, m, dd = ymd(days)
    ys = num(y, 4)
    if style == 1:
        return cat(ys, num(m, 2), num(dd, 2))
    if style == 2:
        return cat(ys, "/", num(m), "/", num(dd))
    if style == 3:
        return cat(ys, "年", num(m), "月", num(dd), "日")
    iso = cat(ys, "-", num(m, 2), "-", num(dd, 2))
    return mutate(iso, np.ones(len(iso), dtype=bool), to_full_width) if style == 4 else iso


def mutate(values: pa.Array, mask: np.ndarray, fn: Callable[[str], str | None]) -> pa.Array:
    """Replace the masked, non-null values by fn(value); the few rows touched go through Python."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return values
    index = np.flatnonzero(mask)
    old = values.take(pa.array(index)).to_pylist()
    new = [None if v is None else fn(v) for v in old]
    return pc.replace_with_mask(values, pa.array(mask), pa.array(new, values.type))


def set_values(values: pa.Array, index: np.ndarray, new: Sequence[object]) -> pa.Array:
    """Put new values at the given row indices (in order)."""
    mask = np.zeros(len(values), dtype=bool)
    mask[index] = True
    order = np.argsort(index, kind="stable")
    ordered = [new[i] for i in order]
    return pc.replace_with_mask(values, pa.array(mask), pa.array(ordered, values.type))


_FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-/"}
_FULL_WIDTH_TABLE = str.maketrans(_FULL_WIDTH)


def to_full_width(value: str) -> str:
    """ASCII digits and letters written with their full-width forms (as some input methods do)."""
    return value.translate(_FULL_WIDTH_TABLE)


@functools.cache
def _traditional_table() -> dict[int, str]:
    """Per-character simplified→traditional map over the CJK block, only where it round-trips."""
    table: dict[int, str] = {}
    for code in range(0x4E00, 0x9FA6):
        char = chr(code)
        trad = zhconv.convert(char, "zh-hant")
        if len(trad) == 1 and trad != char and zhconv.convert(trad, "zh-hans") == char:
            table[code] = trad
    return table


@functools.lru_cache(maxsize=65536)
def to_traditional(value: str) -> str:
    """The value in traditional characters, or unchanged if the conversion would not come back."""
    trad = value.translate(_traditional_table())
    if trad == value:
        return value
    # A normaliser converts whole strings back (zh-hans, with phrase tables): keep only faithful variants.
    return trad if zhconv.convert(trad, "zh-hans") == value else value


def pad_spaces(value: str, variant: int) -> str:
    """Stray whitespace around a value: leading, trailing, both, or an ideographic space."""
    return (" " + value, value + " ", " " + value + "  ", value + "\u3000")[variant % 4]


def inner_double_space(value: str, position: float) -> str:
    """A double space inside a value (between two characters)."""
    if len(value) < 2:
        return value + "  "
    cut = 1 + int(position * (len(value) - 1))
    return value[:cut] + "  " + value[cut:]


def messy_text(
    values: pa.Array, rng: np.random.Generator, *, traditional: float = 0.0, spaces: float = 0.0,
    inner: float = 0.0, full_width: float = 0.0,
) -> pa.Array:
    """Apply each kind of text messiness to a random share of the rows (each row at most one kind)."""
    n = len(values)
    u = rng.random(n)
    pick = rng.random(n)
    edges = np.cumsum([traditional, spaces, inner, full_width])
    kinds = np.searchsorted(edges, u, side="right")  # 0..3 = the kind, 4 = untouched
    out = mutate(values, kinds == 0, to_traditional)
    variants = iter(rng.integers(0, 4, int((kinds == 1).sum())).tolist())
    out = mutate(out, kinds == 1, lambda v: pad_spaces(v, next(variants)))
    positions = iter(pick[kinds == 2].tolist())
    out = mutate(out, kinds == 2, lambda v: inner_double_space(v, next(positions)))
    return mutate(out, kinds == 3, to_full_width)


def json_escape(values: pa.Array) -> pa.Array:
    """Values escaped for the inside of a JSON string literal (control characters never occur in the world)."""
    data = np.frombuffer(joined_view(values), dtype=np.uint8)
    if not ((data == 34) | (data == 92)).any():  # no quote, no backslash: nothing to escape (the usual case)
        return values
    out = pc.replace_substring(values, "\\", "\\\\")
    return pc.replace_substring(out, '"', '\\"')


def json_objects(fields: Sequence[tuple[str, pa.Array, str]]) -> pa.Array:
    """One JSON object text per row from (key, values, kind) with kind 'str', 'raw' (already JSON) or 'num'.

    Nulls become JSON null. Built column-wise so a million objects cost a few arrow passes.
    """
    parts: list[Strings] = []
    for i, (key, values, kind) in enumerate(fields):
        prefix = ("{" if i == 0 else ",") + '"' + key + '":'
        if kind == "str":
            text = cat('"', json_escape(values), '"')
        else:
            text = pc.cast(values, pa.string()) if values.type != pa.string() else values
        parts.extend([prefix, pc.fill_null(text, "null")])
    parts.append("}")
    return cat(*parts)


def joined_view(values: pa.Array) -> memoryview:
    """All values of a string array concatenated as UTF-8 (nulls count as empty), zero-copy."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = pc.fill_null(values, "") if values.null_count else values
    if not len(values) or values.buffers()[2] is None:
        return memoryview(b"")
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=4 * values.offset)
    return memoryview(values.buffers()[2])[int(offsets[0]):int(offsets[-1])]
