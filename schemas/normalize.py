"""Vectorised normalisers for the formats departments really send.

Each normaliser takes an Arrow array and returns (normalised array, error array): the error array holds a
Chinese message where a value could not be normalised (the value becomes null), else null. Nothing is
dropped silently: the caller keeps the errors beside the row.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, reduce

import pyarrow as pa
import pyarrow.compute as pc

Result = tuple[pa.Array, pa.Array]

# Full-width ASCII (U+FF01..U+FF5E) sits 0xFEE0 above its half-width twin; U+3000 is the ideographic space.
_HALFWIDTH_TABLE = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULLWIDTH_PATTERN = "[\uff01-\uff5e\u3000]"

_COMPACT_DATE = r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$"
_SEPARATED_DATE = (
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"
)


def _no_errors(length: int) -> pa.Array:
    """An error column with no errors."""
    return pa.nulls(length, pa.string())


def _as_text(values: pa.Array) -> pa.Array:
    """Any array as strings (dates and numbers keep their canonical text)."""
    return values if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) else pc.cast(values, pa.string())


def _translate_where(values: pa.Array, pattern: str, convert: Callable[[str], str]) -> pa.Array:
    """Apply a per-value Python conversion only to the values matching a regex (usually a small share)."""
    values = _as_text(values)
    hits = pc.fill_null(pc.match_substring_regex(values, pattern), False)
    if not pc.any(hits).as_py():
        return values
    python = values.to_pylist()
    for index in pc.indices_nonzero(hits).to_pylist():
        python[index] = convert(python[index])
    return pa.array(python, type=pa.string())


def halfwidth(values: pa.Array) -> Result:
    """Full-width digits, letters, punctuation and spaces to half-width."""
    return _translate_where(values, _FULLWIDTH_PATTERN, lambda s: s.translate(_HALFWIDTH_TABLE)), _no_errors(len(values))


def text(values: pa.Array) -> Result:
    """Trim, collapse runs of white space, and treat an empty string as missing."""
    values = _as_text(values)
    cleaned = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, r"\s+", " "))
    cleaned = pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, pa.string()), cleaned)
    return cleaned, _no_errors(len(values))


def upper(values: pa.Array) -> Result:
    """Upper case (identifiers: a trailing 'x' of an ID number is 'X')."""
    return pc.utf8_upper(_as_text(values)), _no_errors(len(values))


@lru_cache(maxsize=1)
def _traditional_characters() -> tuple[str, dict[str, str]]:
    """A regex class of the characters zhconv converts to simplified Chinese, and the converter map."""
    import zhconv

    zhconv.zhconv.loaddict()
    mapping = zhconv.zhconv.zhcdicts["zh2Hans"]
    singles = sorted(k for k, v in mapping.items() if len(k) == 1 and k != v)
    return "[" + "".join(singles) + "]", mapping


def simplified(values: pa.Array) -> Result:
    """Traditional characters to simplified (only values that contain one are converted)."""
    import zhconv

    pattern, _ = _traditional_characters()
    return _translate_where(values, pattern, lambda s: zhconv.convert(s, "zh-hans")), _no_errors(len(values))


def date(values: pa.Array) -> Result:
    """Dates written as 1990-01-02, 19900102, 1990/1/2, 1990.1.2 or 1990年1月2日 (time part ignored) to date32."""
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        return pc.cast(values, pa.date32()), _no_errors(len(values))
    raw, _ = text(halfwidth(values)[0])
    compact = pc.extract_regex(raw, _COMPACT_DATE)
    separated = pc.extract_regex(raw, _SEPARATED_DATE)
    parts = {}
    for name in ("y", "m", "d"):
        parts[name] = pc.coalesce(pc.struct_field(compact, name), pc.struct_field(separated, name))
    iso = pc.binary_join_element_wise(
        parts["y"], pc.utf8_lpad(parts["m"], 2, "0"), pc.utf8_lpad(parts["d"], 2, "0"), "-"
    )
    parsed = pc.cast(pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True), pa.date32())
    # strptime rolls impossible days over (2001-02-30 -> 2001-03-02): keep only dates whose year, month and day are
    # the ones written (what printing them back would show, without strftime's cost: 1.3 s a million values).
    # Year 0000 is no date anyone has (Python's dates start at year 1: it would fail later, in the merge).
    written = [pc.equal(pc.year(parsed), pc.cast(parts["y"], pa.int64())), pc.greater_equal(pc.year(parsed), 1),
               pc.equal(pc.month(parsed), pc.cast(parts["m"], pa.int64())),
               pc.equal(pc.day(parsed), pc.cast(parts["d"], pa.int64()))]
    round_trip = reduce(pc.and_, written)
    parsed = pc.if_else(pc.fill_null(round_trip, False), parsed, pa.scalar(None, pa.date32()))
    failed = pc.and_(pc.is_valid(raw), pc.is_null(parsed))
    errors = pc.if_else(failed, pc.binary_join_element_wise("无法识别的日期 unparseable date: ", raw, ""), pa.scalar(None, pa.string()))
    return parsed, errors


def datetime_(values: pa.Array) -> Result:
    """Timestamps (already typed, ISO text, or a date alone = midnight) to timestamp[us]."""
    if pa.types.is_timestamp(values.type):
        return pc.cast(values, pa.timestamp("us")), _no_errors(len(values))
    raw, _ = text(halfwidth(values)[0])
    normalised = pc.replace_substring(raw, "T", " ")
    parsed = pc.strptime(normalised, format="%Y-%m-%d %H:%M:%S", unit="us", error_is_null=True)
    # A date alone means midnight (Excel writes midnight datetimes as dates; some departments send only the day).
    day_only, _ = date(raw)
    parsed = pc.coalesce(parsed, pc.cast(day_only, pa.timestamp("us")))
    failed = pc.and_(pc.is_valid(raw), pc.is_null(parsed))
    errors = pc.if_else(failed, pc.binary_join_element_wise("无法识别的时间 unparseable timestamp: ", raw, ""), pa.scalar(None, pa.string()))
    return parsed, errors


def decimal(values: pa.Array) -> Result:
    """Amounts to decimal(20, 6); text that is not a number becomes an error."""
    target = pa.decimal128(20, 6)
    if pa.types.is_decimal(values.type) or pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.cast(values, target), _no_errors(len(values))
    raw, _ = text(halfwidth(values)[0])
    number = pc.fill_null(pc.match_substring_regex(raw, r"^-?\d+(\.\d{1,6})?$"), False)
    # decimal(20, 6) holds 14 digits before the point (leading zeros aside): a longer number is out of range, not
    # a cast error
    fits = pc.fill_null(pc.match_substring_regex(raw, r"^-?0*\d{1,14}(\.\d{1,6})?$"), False)
    usable = pc.if_else(fits, raw, pa.scalar(None, pa.string()))
    parsed = pc.cast(usable, target)
    failed = pc.and_(pc.is_valid(raw), pc.is_null(parsed))
    message = pc.if_else(number, pa.scalar("金额超出范围（整数部分最多 14 位） amount out of range: "), pa.scalar("无法识别的金额 not a number: "))
    errors = pc.if_else(failed, pc.binary_join_element_wise(message, raw, ""), pa.scalar(None, pa.string()))
    return parsed, errors


def code_map(values: pa.Array, mapping: dict[str, str]) -> Result:
    """Translate source codes or labels (e.g. 男 → 1) to standard codes; other values pass unchanged."""
    values = _as_text(values)
    if not mapping:
        return values, _no_errors(len(values))
    keys = pa.array(list(mapping), pa.string())
    index = pc.index_in(values, value_set=keys)
    translated = pc.take(pa.array(list(mapping.values()), pa.string()), index)
    return pc.coalesce(translated, values), _no_errors(len(values))


NORMALISERS: dict[str, Callable[[pa.Array], Result]] = {
    "halfwidth": halfwidth,
    "text": text,
    "upper": upper,
    "simplified": simplified,
    "date": date,
    "datetime": datetime_,
    "decimal": decimal,
}


def join_messages(parts: list[pa.Array], rows: int, separator: str = "; ") -> pa.Array:
    """Per row, the non-null messages of all parts joined with `separator`; null where a row has none.

    Done by hand over the few rows that have a message: pyarrow 26's binary_join_element_wise with
    null_handling='skip' returns a short array when one of its inputs is entirely null.
    """
    parts = [p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p for p in parts]
    parts = [p for p in parts if p.null_count < len(p)]
    if not parts:
        return pa.nulls(rows, pa.string())
    has_message = parts[0].is_valid()
    for part in parts[1:]:
        has_message = pc.or_(has_message, part.is_valid())
    where = pc.indices_nonzero(has_message)
    taken = [pc.take(part, where).to_pylist() for part in parts]
    joined: list[str | None] = [None] * rows
    for index, messages in zip(where.to_pylist(), zip(*taken)):
        joined[index] = separator.join(m for m in messages if m is not None)
    return pa.array(joined, pa.string())
