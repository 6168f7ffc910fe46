"""Identifier checks of the national standards, vectorised over whole columns. 标识符校验（按列向量化）。

Covers 公民身份号码 (GB 11643), 统一社会信用代码 USCC (GB 32100) with its embedded GB 11714
organisation code, and the e-licence identifier 证照标识 (GB/T 36904).

Two kinds of function live here:
* ``*_check_chars`` compute check characters for bodies that are already well formed; the
  simulated-province generator uses them to *generate* valid identifiers. Malformed bodies raise
  ``ValueError`` because they are programming errors, not data defects.
* ``check_*`` validate arbitrary column values (strings, None, NaN, numbers…) and never raise for
  bad data: every value gets ``valid`` and, when invalid, a ``reason``.

Strings are turned into a 2-D matrix of character codes (one row per value) and every rule is a
numpy operation on that matrix, so no Python loop runs per value on the hot path.
"""

from __future__ import annotations

import datetime as _dt
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from schemas._columns import as_str_array as _as_str_array
from schemas.code_tables import YEAR_MAX, YEAR_MIN, load_table

# ---------------------------------------------------------------------------------------------
# Alphabets and lookup tables (index = ASCII code, value = numeric value, -1 = not allowed)
# ---------------------------------------------------------------------------------------------

RESIDENT_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
RESIDENT_ID_CHECK_ALPHABET = "10X98765432"  # S = Σ mod 11 → character

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I O Z S V
USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64)

ORG_CODE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_CODE_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ORG_CODE_CHECK_ALPHABET = "0123456789X0"  # C = 11 − (Σ mod 11): 10 → X, 11 → 0

MOD_37_36_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

LICENCE_ID_PREFIX = "1.2.156.3005.2."

_NON_ASCII = 255  # every character outside ASCII becomes this code in the matrix


def _lookup(alphabet: str) -> np.ndarray:
    """A 256-entry table from character code to its value in ``alphabet`` (-1 elsewhere)."""
    table = np.full(256, -1, dtype=np.int8)  # int8 + np.take: the cheapest lookup numpy offers
    for value, char in enumerate(alphabet):
        table[ord(char)] = value
    return table


_DIGIT_LUT = _lookup("0123456789")
_USCC_LUT = _lookup(USCC_ALPHABET)
_ORG_LUT = _lookup(ORG_CODE_ALPHABET)
_MOD37_LUT = _lookup(MOD_37_36_ALPHABET)


def _chars(alphabet: str) -> np.ndarray:
    """The alphabet as an array of one-character strings, for vectorised lookup."""
    return np.array(list(alphabet), dtype="<U1")


_RESIDENT_CHECK_CHARS = _chars(RESIDENT_ID_CHECK_ALPHABET)
_USCC_CHARS = _chars(USCC_ALPHABET)
_ORG_CHECK_CHARS = _chars(ORG_CODE_CHECK_ALPHABET)
_MOD37_CHARS = _chars(MOD_37_36_ALPHABET)
_MOD37_CODES = np.frombuffer(MOD_37_36_ALPHABET.encode(), dtype=np.uint8)


def _mod37_transition() -> np.ndarray:
    """Table T[state, value] of the ISO 7064 MOD 37,36 recurrence; column 36 = padding (no change)."""
    states = np.arange(36)[:, None]
    values = np.arange(36)[None, :]
    step = (((np.where(states == 0, 36, states) * 2) % 37) + values) % 36
    return np.concatenate([step, np.arange(36)[:, None]], axis=1).astype(np.uint8)


_MOD37_STEP = _mod37_transition()
# Two steps at once: STEP2[s, v1 * 37 + v2] = STEP[STEP[s, v1], v2].
_MOD37_STEP2 = np.stack([_MOD37_STEP[_MOD37_STEP[state]] for state in range(36)]).reshape(36, 37 * 37)
_MOD37_STEP2_OFFSET = (_MOD37_STEP2.astype(np.intp) * 37 * 37).ravel()  # next state, pre-multiplied as a row offset
_MOD37_PAD = 36

# ---------------------------------------------------------------------------------------------
# Turning columns into character-code matrices
# ---------------------------------------------------------------------------------------------


def _code_matrix(text: np.ndarray, width: int) -> np.ndarray:
    """The first ``width`` characters of each string as ASCII codes (0 = past the end, 255 = non-ASCII)."""
    n = text.size
    itemsize = max(text.dtype.itemsize // 4, 1)
    if n == 0:
        return np.zeros((0, width), dtype=np.uint8)
    codes = text.view(np.uint32).reshape(n, itemsize) if text.dtype.itemsize else np.zeros((n, 1), np.uint32)
    matrix = np.zeros((n, width), dtype=np.uint8)
    used = min(width, itemsize)
    np.minimum(codes[:, :used], _NON_ASCII, out=matrix[:, :used], casting="unsafe")  # one pass, no temporary
    return matrix


def _bodies_matrix(bodies: Any, width: int, what: str) -> np.ndarray:
    """Well-formed fixed-width bodies as an upper-case code matrix; raises ValueError on wrong length."""
    text, missing = _as_str_array(bodies)
    lengths = np.strings.str_len(text)
    bad = missing | (lengths != width)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}须为{width}个字符 body must have {width} characters: {text[first]!r} at index {first}")
    matrix = _code_matrix(text, width)
    _upper_in_place(matrix)
    return matrix


def _upper_in_place(matrix: np.ndarray) -> np.ndarray:
    """ASCII a–z → A–Z in a code matrix; returns the mask of rows that had lower case."""
    lower = (matrix - 97) < 26  # uint8 arithmetic wraps: only 97–122 ('a'–'z') land below 26 (one compare, not two)
    np.subtract(matrix, 32, out=matrix, where=lower)  # in place, no fancy indexing
    return _any_per_row(lower)


def _any_per_row(mask: np.ndarray) -> np.ndarray:
    """Rows of a 2-D boolean matrix holding any True, i.e. ``mask.any(axis=1)``.

    Found through the positions of the Trues, which mark defects and are few: numpy's reduction along a
    short row axis costs a loop per row (≈8× slower over the 18-character matrices here).
    """
    rows = np.zeros(mask.shape[0], dtype=bool)
    if mask.shape[1]:
        rows[np.flatnonzero(mask) // mask.shape[1]] = True
    return rows


def _values(matrix: np.ndarray, lut: np.ndarray, what: str) -> np.ndarray:
    """Numeric values of a body matrix through ``lut``; raises ValueError on a character outside it."""
    values = np.take(lut, matrix)
    if (values < 0).any():
        row = int(np.flatnonzero((values < 0).any(axis=1))[0])
        body = bytes(matrix[row]).decode("latin-1")
        raise ValueError(f"{what}含非法字符 body has a character outside the alphabet: {body!r} at index {row}")
    return values.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Check-character computation (vectorised) — used to GENERATE identifiers; keep these stable.
# ---------------------------------------------------------------------------------------------


def _resident_sums(values: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 11-2 weighted sums of 17-digit bodies, mod 11."""
    return (values @ RESIDENT_ID_WEIGHTS) % 11


def _uscc_check_index(values: np.ndarray) -> np.ndarray:
    """Index in the USCC alphabet of the check character of 17-value bodies."""
    return (31 - (values @ USCC_WEIGHTS) % 31) % 31


def _org_check_index(values: np.ndarray) -> np.ndarray:
    """Index in '0123456789X0' of the GB 11714 check character of 8-value bodies."""
    return 11 - (values @ ORG_CODE_WEIGHTS) % 11


def _mod37_state(values: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 37,36 running state after all columns of a [rows, columns] value matrix (36 = padding)."""
    return _mod37_state_by_column(np.ascontiguousarray(values.T))


def _mod37_state_by_column(by_column: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 37,36 running state of a [columns, rows] value matrix (values 0–35, 36 = padding).

    Two characters are consumed per step through a precomputed 36×37×37 table, which halves the
    number of passes; each pass reads one contiguous row of the transposed matrix.
    """
    columns = by_column.shape[0]
    even = columns - columns % 2
    pairs = by_column[0:even:2].astype(np.intp) * 37 + by_column[1:even:2]  # intp: take() needs no index conversion
    offset = np.full(by_column.shape[1], 18 * 37 * 37, dtype=np.intp)  # 18 = modulus // 2, the initial state
    for pair in pairs:
        offset = np.take(_MOD37_STEP2_OFFSET, offset + pair)
    state = offset // (37 * 37)
    if columns % 2:
        state = _MOD37_STEP[state, by_column[-1]]
    return state.astype(np.uint8)


def _mod37_check_index(state: np.ndarray) -> np.ndarray:
    """Index in 0–9A–Z of the MOD 37,36 check character that completes a payload with this state."""
    state = state.astype(np.int64)
    return (1 - (np.where(state == 0, 36, state) * 2) % 37) % 36


def resident_id_check_chars(bodies: np.ndarray) -> np.ndarray:
    """Check characters (ISO 7064 MOD 11-2) of 17-digit resident-ID bodies; returns '<U1' array."""
    matrix = _bodies_matrix(bodies, 17, "身份号码本体 resident-ID body ")
    return _RESIDENT_CHECK_CHARS[_resident_sums(_values(matrix, _DIGIT_LUT, "身份号码本体 "))]


def uscc_check_chars(bodies: np.ndarray) -> np.ndarray:
    """Check characters (GB 32100, mod 31) of 17-character USCC bodies; returns '<U1' array."""
    matrix = _bodies_matrix(bodies, 17, "统一社会信用代码本体 USCC body ")
    return _USCC_CHARS[_uscc_check_index(_values(matrix, _USCC_LUT, "统一社会信用代码本体 "))]


def org_code_check_chars(bodies: np.ndarray) -> np.ndarray:
    """Check characters (GB 11714, mod 11) of 8-character organisation-code bodies; returns '<U1' array."""
    matrix = _bodies_matrix(bodies, 8, "组织机构代码本体 organisation-code body ")
    return _ORG_CHECK_CHARS[_org_check_index(_values(matrix, _ORG_LUT, "组织机构代码本体 "))]


def licence_id_check_chars(payloads: np.ndarray) -> np.ndarray:
    """Check characters (ISO 7064 MOD 37,36) of licence payloads = the four fields joined without dots."""
    text, missing = _as_str_array(payloads)
    if missing.any():
        raise ValueError(f"证照标识载荷为空 empty licence payload at index {int(np.flatnonzero(missing)[0])}")
    width = max(text.dtype.itemsize // 4, 1)
    matrix = _code_matrix(text, width)
    _upper_in_place(matrix)
    values = np.take(_MOD37_LUT, matrix)
    values[matrix == 0] = _MOD37_PAD  # past the end of a shorter payload: state unchanged
    if (values < 0).any():
        row = int(np.flatnonzero((values < 0).any(axis=1))[0])
        raise ValueError(f"证照标识载荷含非法字符 payload has a character outside 0-9A-Z: {text[row]!r} at index {row}")
    return _MOD37_CHARS[_mod37_check_index(_mod37_state(values.astype(np.uint8)))]


def resident_id_check_char(body: str) -> str:
    """Check character of one 17-digit resident-ID body."""
    return str(resident_id_check_chars(np.array([body]))[0])


def uscc_check_char(body: str) -> str:
    """Check character of one 17-character USCC body."""
    return str(uscc_check_chars(np.array([body]))[0])


def org_code_check_char(body: str) -> str:
    """Check character of one 8-character organisation-code body."""
    return str(org_code_check_chars(np.array([body]))[0])


def licence_id_check_char(payload: str) -> str:
    """Check character of one licence payload (four fields joined without dots)."""
    return str(licence_id_check_chars(np.array([payload]))[0])


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CheckResult:
    """Outcome of checking a column: one entry per input value, in input order.

    ``reason`` is None where valid; ``normalised`` is the canonical form ('' where invalid);
    ``note`` (None or text) explains a normalisation applied to a *valid* value, e.g. the
    conversion of a legacy 15-digit number or upper-casing of a lower-case 'x'.
    """

    valid: np.ndarray
    reason: np.ndarray
    normalised: np.ndarray
    note: np.ndarray

    def __len__(self) -> int:
        """Number of values checked."""
        return int(self.valid.size)

    def columns(self) -> dict[str, np.ndarray]:
        """Every column of the result by name (derived columns of subclasses included)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_frame(self) -> Any:
        """The result as a pandas DataFrame, one row per value."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def records(self, values: Any = None) -> list[dict[str, Any]]:
        """Per-value dicts {value?, valid, reason, normalised, note} (small inputs; tests and CLI)."""
        rows = [
            {"valid": bool(v), "reason": r, "normalised": (str(n) or None), "note": t}
            for v, r, n, t in zip(self.valid.tolist(), self.reason.tolist(), self.normalised.tolist(), self.note.tolist())
        ]
        if values is not None:
            text, _ = _as_str_array(values)
            rows = [{"value": value, **row} for value, row in zip(text.tolist(), rows)]
        return rows


@dataclass(frozen=True, eq=False)
class ResidentIdResult(CheckResult):
    """Check of 公民身份号码 with the columns quality rules compare against other fields.

    Derived columns are filled wherever they can be read (length and characters right), even if the
    check character is wrong, so that a steward sees both defects; ``birth_date`` is NaT when the
    date part is not a real date. ``gender`` uses GB/T 2261.1 codes: '1' male, '2' female.
    """

    birth_date: np.ndarray
    gender: np.ndarray
    region: np.ndarray
    legacy: np.ndarray


@dataclass(frozen=True, eq=False)
class UsccResult(CheckResult):
    """Check of 统一社会信用代码 with its parts and both check outcomes."""

    department: np.ndarray
    category: np.ndarray
    region: np.ndarray
    org_code: np.ndarray
    check_ok: np.ndarray
    org_check_ok: np.ndarray


@dataclass(frozen=True, eq=False)
class LicenceIdResult(CheckResult):
    """Check of 证照标识; its four fields are split out of the valid values on first access ('' elsewhere)."""

    @cached_property
    def _text(self) -> np.ndarray:
        """The normalised values as a numpy unicode array ('' where invalid)."""
        return self.normalised.astype(str) if len(self) else np.zeros(0, dtype="<U1")

    @cached_property
    def _serial_end(self) -> np.ndarray:
        """Index of the dot that ends each valid value's serial."""
        return np.maximum(np.strings.str_len(self._text) - 6, 56)

    @cached_property
    def licence_type_code(self) -> np.ndarray:
        """证照类型代码 (defining body's USCC + 3 digits)."""
        return np.where(self.valid, np.strings.slice(self._text, 15, 36), "")

    @cached_property
    def issuer_code(self) -> np.ndarray:
        """颁发机构代码 (the issuer's USCC)."""
        return np.where(self.valid, np.strings.slice(self._text, 37, 55), "")

    @cached_property
    def serial(self) -> np.ndarray:
        """流水号."""
        return np.where(self.valid, np.strings.slice(self._text, 56, self._serial_end), "")

    @cached_property
    def version(self) -> np.ndarray:
        """版本号 (3 digits)."""
        return np.where(self.valid, np.strings.slice(self._text, self._serial_end + 1, self._serial_end + 4), "")

    def columns(self) -> dict[str, np.ndarray]:
        """Every column including the four fields."""
        return {**super().columns(), **{name: getattr(self, name) for name in ("licence_type_code", "issuer_code", "serial", "version")}}


# ---------------------------------------------------------------------------------------------
# Shared machinery of the checks
# ---------------------------------------------------------------------------------------------

CHECK_THREADS = min(4, os.cpu_count() or 1)  # threads checking blocks in parallel (1 = no threads)
_CHUNK_ROWS = 32768  # rows per block: keeps the code matrices in cache (≈3× faster than one big block)
EMPTY = "空值 empty"
NOTE_STRIPPED = "已去除首尾空白 surrounding whitespace removed"
NOTE_UPPER = "小写字母已转为大写 lower-case letters normalised to upper case"
MAX_LICENCE_ID_LENGTH = 256

# Python's str.isspace() code points: values with surrounding blanks are stripped (and noted).
_SPACE_CODES = np.array([9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, *range(8192, 8203),
                         8232, 8233, 8239, 8287, 12288], dtype=np.uint32)


@dataclass
class _Block:
    """One block of values as an upper-cased ASCII code matrix plus per-row facts."""

    text: np.ndarray  # the values (surrounding whitespace stripped)
    matrix: np.ndarray  # uint8 [rows, width]
    lengths: np.ndarray  # characters per value
    empty: np.ndarray  # missing or blank
    stripped: np.ndarray  # had surrounding whitespace
    lowered: np.ndarray  # had lower-case ASCII letters within the first `width` characters


def _prepare(text: np.ndarray, missing: np.ndarray, width: int) -> _Block:
    """Strip, measure and encode one block of values."""
    n = text.size
    lengths = np.strings.str_len(text).astype(np.int64)
    stripped = np.zeros(n, dtype=bool)
    if n and text.dtype.itemsize:
        codes = text.view(np.uint32).reshape(n, -1)
        last = codes[np.arange(n), np.maximum(lengths - 1, 0)]
        stripped = (lengths > 0) & (np.isin(codes[:, 0], _SPACE_CODES) | np.isin(last, _SPACE_CODES))
        if stripped.any():
            text = text.copy()
            text[stripped] = np.strings.strip(text[stripped])
            lengths[stripped] = np.strings.str_len(text[stripped])
    matrix = _code_matrix(text, width)
    lowered = _upper_in_place(matrix)
    return _Block(text, matrix, lengths, missing | (lengths == 0), stripped, lowered)


def _blocks(values: Any) -> tuple[int, list[tuple[slice, np.ndarray, np.ndarray]]]:
    """The input as (length, [(slice, text, missing) per block])."""
    text, missing = _as_str_array(values)
    n = text.size
    return n, [(slice(s, s + _CHUNK_ROWS), text[s : s + _CHUNK_ROWS], missing[s : s + _CHUNK_ROWS])
               for s in range(0, n, _CHUNK_ROWS)]


class _Reasons:
    """First-failure-wins reasons for one block: rules are applied in order of precedence."""

    def __init__(self, n: int) -> None:
        """Start with every value passing."""
        self.reason = np.full(n, None, dtype=object)
        self.open = np.ones(n, dtype=bool)

    def add(self, fail: np.ndarray, message: Any) -> np.ndarray:
        """Record ``message`` (text, or function of the hit mask giving texts) where ``fail`` is first."""
        hit = self.open & fail
        if hit.any():
            self.reason[hit] = message if isinstance(message, str) else message(hit)
            self.open &= ~hit
        return hit


def _texts(prefix: str, parts: np.ndarray, suffix: str = "") -> np.ndarray:
    """prefix + part + suffix for each part, as an object array (vectorised string concatenation)."""
    joined = np.strings.add(np.strings.add(prefix, parts.astype(str)), suffix)
    return joined.astype(object)


def _by_key(keys: np.ndarray, make: Any) -> np.ndarray:
    """Messages for small-domain keys (lengths, positions, char pairs): one f-string per distinct key."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    return np.array([make(key) for key in distinct.tolist()], dtype=object)[inverse.ravel()]


def _matrix_text(matrix: np.ndarray) -> np.ndarray:
    """Rows of an ASCII code matrix as a numpy unicode array (trailing zeros dropped)."""
    if matrix.shape[1] == 0:
        return np.full(matrix.shape[0], "", dtype="<U1")
    return np.ascontiguousarray(matrix, dtype=np.uint32).view(f"<U{matrix.shape[1]}").ravel()


def _weighted_sum(digits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``digits @ weights`` (in the weights' integer type), column by column: numpy's integer matmul has no BLAS
    kernel, and over a few to 17 columns it costs 2–4× these whole-column passes."""
    total = digits[:, 0] * weights[0]
    for column in range(1, len(weights)):
        total += digits[:, column] * weights[column]
    return total


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Column index of the first True in each row."""
    return mask.argmax(axis=1)


def _notes(valid: np.ndarray, parts: list[tuple[np.ndarray, Any]]) -> np.ndarray:
    """'; '-joined notes for valid rows; each part is (mask, text or unicode array)."""
    notes = np.full(valid.size, "", dtype=object)
    any_note = np.zeros(valid.size, dtype=bool)
    for mask, text in parts:
        rows = mask & valid
        if rows.any():
            piece = text if isinstance(text, str) else (text(rows) if callable(text) else text[rows]).astype(object)
            separator = np.where(any_note[rows], "; ", "").astype(object)
            notes[rows] = notes[rows] + separator + piece
            any_note |= rows
    notes[~any_note] = None
    return notes


def _resolve_today(today: _dt.date | None) -> int:
    """The reference date as yyyymmdd (today by default; pass it explicitly for deterministic runs)."""
    day = today or _dt.date.today()
    return day.year * 10000 + day.month * 100 + day.day


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int16)
# Calendar facts of the years a four-digit field can hold (0–9999), looked up instead of computed per value: the
# leap-year test and the civil-date arithmetic cost a dozen integer passes (with divisions) over every block.
_YEARS = np.arange(10000, dtype=np.int64)
_LEAP = ((_YEARS % 4 == 0) & ((_YEARS % 100 != 0) | (_YEARS % 400 == 0))).astype(np.intp)
_YEAR_START = np.concatenate([[0], np.cumsum(365 + _LEAP)[:-1]])  # days from 1 January of year 0 …
_YEAR_START -= _YEAR_START[1970]  # … counted from 1970-01-01 instead
# Indexed by leap * 13 + month (month 0 = none): days in the month, and days of the year before it.
_MONTH_DAYS = np.concatenate([_DAYS_IN_MONTH, _DAYS_IN_MONTH + (np.arange(13) == 2)]).astype(np.int16)
_MONTH_START = np.concatenate([[0, *np.cumsum(_MONTH_DAYS[leap * 13:leap * 13 + 12])] for leap in (0, 1)]).astype(np.int64)


def _real_date(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Whether (year, month, day) is a real Gregorian date with year ≥ 1 (years as four digits: 0–9999)."""
    leap = np.take(_LEAP, year, mode="clip")
    days = np.take(_MONTH_DAYS, leap * 13 + np.clip(month, 0, 12))
    return (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days)


def _datetime64(year: np.ndarray, month: np.ndarray, day: np.ndarray, real: np.ndarray) -> np.ndarray:
    """datetime64[D] from parts, NaT where not ``real`` (real dates have four-digit years: 1–9999). Day numbers
    are looked up per year and month: numpy's datetime64[Y]/[M] → [D] conversions cost a calendar computation
    per element."""
    y = np.where(real, year, 1970)
    m = np.where(real, month, 1)
    days = np.take(_YEAR_START, y, mode="clip") + np.take(_MONTH_START, np.take(_LEAP, y, mode="clip") * 13 + m) + day
    days -= 1
    days[~real] = np.iinfo(np.int64).min  # NaT
    return days.view("datetime64[D]")


# ---------------------------------------------------------------------------------------------
# GB/T 2260 region lookup for resident IDs
# ---------------------------------------------------------------------------------------------

REGION_RULES = ("known", "birth_year", "none")
_region_cache: dict[str, Any] = {}


def _region_lookup() -> tuple[np.ndarray, np.ndarray]:
    """(known[code as int], index[code as int] into the year bitmap) for the current region table.

    Indexing a million-entry array by the numeric code is the cheapest vectorised lookup; it is
    rebuilt whenever load_table returns a new table (the CSV was edited or overridden).
    """
    table = load_table("regions")
    if _region_cache.get("table") is not table:
        index = np.full(1_000_000, -1, dtype=np.int32)
        for position, code in enumerate(table.sorted_codes.tolist()):
            if len(code) == 6 and code.isdigit():
                index[int(code)] = position
        _region_cache.update(table=table, known=index >= 0, index=index, bitmap=table.year_bitmap)
    return _region_cache["known"], _region_cache["index"]


def _region_ok(region: np.ndarray, year: np.ndarray, rule: str) -> np.ndarray:
    """Whether each 6-digit region code passes ``rule`` ('known', 'birth_year' or 'none')."""
    if rule == "none":
        return np.ones(region.size, dtype=bool)
    known, index = _region_lookup()
    if rule == "known":
        return known[region]
    position = index[region]
    offset = np.clip(year, YEAR_MIN, YEAR_MAX) - YEAR_MIN
    return (position >= 0) & _region_cache["bitmap"][np.maximum(position, 0), offset]


# ---------------------------------------------------------------------------------------------
# 公民身份号码 GB 11643
# ---------------------------------------------------------------------------------------------

_RESIDENT_CHECK_CODES = np.frombuffer(RESIDENT_ID_CHECK_ALPHABET.encode(), dtype=np.uint8)
_W16 = RESIDENT_ID_WEIGHTS.astype(np.int16)
_YEAR_W = np.array([1000, 100, 10, 1], dtype=np.int32)
_REGION_W = np.array([100000, 10000, 1000, 100, 10, 1], dtype=np.int32)


def _resident_block(block: _Block, today: int, region_rule: str) -> dict[str, np.ndarray]:
    """Check one block of resident IDs."""
    m, n = block.matrix, block.matrix.shape[0]
    is18 = ~block.empty & (block.lengths == 18)
    is15 = ~block.empty & (block.lengths == 15)
    bad = (m - 48) > 9  # not a digit: uint8 arithmetic wraps, so only '0'–'9' (48–57) land at 0–9
    bad[:, 17] = False  # a wrong last character is reported as a check-character mismatch, with the expected one
    bad[is15, 15:] = False
    well_formed = (is18 | is15) & ~_any_per_row(bad)
    # Normalise: a legacy number gets "19" before its 2-digit year; its check character is computed below.
    norm = m.copy()
    norm[is15, 8:17] = m[is15, 6:15]
    norm[is15, 6:8] = (ord("1"), ord("9"))
    nd = norm[:, :17] - 48  # digit values (uint8 arithmetic, cheaper than a table lookup); 0 for a non-digit
    nd[nd > 9] = 0
    expected = _RESIDENT_CHECK_CODES[_weighted_sum(nd, _W16) % 11]
    norm[is15, 17] = expected[is15]
    check_bad = well_formed & is18 & (m[:, 17] != expected)
    year = _weighted_sum(nd[:, 6:10], _YEAR_W)
    month = nd[:, 10].astype(np.int32) * 10 + nd[:, 11]
    day = nd[:, 12].astype(np.int32) * 10 + nd[:, 13]
    real = well_formed & _real_date(year, month, day)
    future = real & (year * 10000 + month * 100 + day > today)
    region = _weighted_sum(nd[:, :6], _REGION_W)
    region_bad = well_formed & ~_region_ok(region, year, region_rule)
    normtext = _matrix_text(norm)

    reasons = _Reasons(n)
    reasons.add(block.empty, EMPTY)
    reasons.add(~(is18 | is15), lambda hit: _by_key(block.lengths[hit], lambda k: f"长度错误 wrong length: 须为18位（或15位旧号码） expected 18 (or legacy 15) characters, got {k}"))
    reasons.add(~well_formed, lambda hit: _by_key(
        np.where(is15[hit], 100, 0) + _first_true(bad[hit]),
        lambda k: (f"格式错误 invalid character at position {k - 99}: 15位旧号码须全为数字 legacy 15-digit numbers are all digits" if k >= 100 else
                   f"格式错误 invalid character at position {k + 1}: 前17位须为数字 the first 17 characters must be digits")))
    reasons.add(check_bad, lambda hit: _pair_message("校验位错误 check character mismatch", expected[hit], m[hit, 17]))
    reasons.add(~real, lambda hit: _texts("出生日期无效 invalid birth date: ", np.strings.slice(normtext[hit], 6, 14)))
    reasons.add(future, lambda hit: _texts("出生日期晚于当前日期 birth date in the future: ", np.strings.slice(normtext[hit], 6, 14)))
    rule_text = "在出生年份有效的" if region_rule == "birth_year" else ""
    reasons.add(region_bad, lambda hit: _texts(f"行政区划代码未知 unknown {rule_text}GB/T 2260 region code: ", np.strings.slice(normtext[hit], 0, 6)))
    valid = reasons.open
    lower_x = block.lowered & is18  # the only letter an 18-digit number may have is the final X
    notes = _notes(valid, [
        (block.stripped, NOTE_STRIPPED),
        (lower_x, "小写x已转为大写X lower-case x normalised to X"),
        (is15, lambda rows: np.strings.add("15位旧号码，已转换为18位 legacy 15-digit number converted to 18 digits: ", normtext[rows])),
    ])
    return {
        "valid": valid,
        "reason": reasons.reason,
        "normalised": np.where(valid, normtext, ""),
        "note": notes,
        "birth_date": _datetime64(year, month, day, real),
        "gender": np.where(well_formed, np.where(nd[:, 16] % 2 == 1, "1", "2"), ""),
        "region": np.where(well_formed, _matrix_text(norm[:, :6]), ""),  # well-formed rows have six digits there
        "legacy": is15 & well_formed,
    }


_RESIDENT_DTYPES = {"valid": bool, "reason": object, "normalised": "<U18", "note": object,
                    "birth_date": "datetime64[D]", "gender": "<U1", "region": "<U6", "legacy": bool}


def _run(values: Any, dtypes: dict[str, Any], check_block: Any) -> dict[str, np.ndarray]:
    """Run ``check_block`` over the input block by block, filling preallocated columns.

    Blocks are independent and numpy releases the GIL inside its kernels, so blocks run on a few
    threads (up to ≈1.8× on two idle cores).
    """
    n, blocks = _blocks(values)
    out = {name: np.empty(n, dtype=dtype) for name, dtype in dtypes.items()}

    def one(where: slice, text: np.ndarray, missing: np.ndarray) -> None:
        """Check one block and write its slice of every column."""
        for name, column in check_block(text, missing).items():
            out[name][where] = column

    if len(blocks) > 1 and CHECK_THREADS > 1:
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            for future in [pool.submit(one, *block) for block in blocks]:
                future.result()
    else:
        for block in blocks:
            one(*block)
    return out


def check_resident_ids(values: Any, today: _dt.date | None = None, region_rule: str = "known") -> ResidentIdResult:
    """Check 公民身份号码 (GB 11643) column-wise; never raises for bad values.

    Rules, first failure reported: not empty; 18 characters (or 15 = legacy); characters; ISO 7064
    MOD 11-2 check character (18-digit only); birth date real and not after ``today``; region prefix
    per ``region_rule``: 'known' (default) = any current or historical GB/T 2260 code, because the
    code is the one valid when the number was *issued*, which may be years after birth;
    'birth_year' = valid in the birth year (python-stdnum's rule); 'none' = not checked.
    Lower-case 'x' is accepted and normalised to 'X' (with a note); legacy 15-digit numbers are
    valid when their parts are, with the converted 18-digit number in ``normalised`` and ``note``.
    """
    if region_rule not in REGION_RULES:
        raise ValueError(f"region_rule must be one of {REGION_RULES}, got {region_rule!r}")
    today_int = _resolve_today(today)
    if region_rule != "none":
        _region_lookup()  # build the lookup once, before blocks run on several threads
    columns = _run(values, _RESIDENT_DTYPES, lambda text, missing: _resident_block(_prepare(text, missing, 18), today_int, region_rule))
    return ResidentIdResult(**columns)


# ---------------------------------------------------------------------------------------------
# 统一社会信用代码 GB 32100 (+ GB 11714 organisation code)
# ---------------------------------------------------------------------------------------------

_USCC_CODES = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
_ORG_CHECK_CODES = np.frombuffer(ORG_CODE_CHECK_ALPHABET.encode(), dtype=np.uint8)
_USCC_W16 = USCC_WEIGHTS.astype(np.int16)
_ORG_W16 = ORG_CODE_WEIGHTS.astype(np.int16)
_USCC_POSITION_RULE = {
    **dict.fromkeys((1, 2), "须为 0-9A-HJ-NPQRTUWXY 登记管理部门/机构类别代码 must be a department/category character"),
    **dict.fromkeys(range(3, 9), "须为数字 must be a digit (登记管理机关行政区划码 region)"),
    **dict.fromkeys(range(9, 19), "须为 0-9A-HJ-NPQRTUWXY（不含 I O Z S V） must be in the USCC alphabet"),
}


def _uscc_parts(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an 18-column matrix: bad-character mask, expected check code, expected org-code check code."""
    values = np.take(_USCC_LUT, m)
    bad = values < 0
    bad[:, 2:8] = np.take(_DIGIT_LUT, m[:, 2:8]) < 0
    values = np.maximum(values, 0)
    expected = _USCC_CODES[(31 - (values[:, :17] @ _USCC_W16) % 31) % 31]
    org_values = np.maximum(np.take(_ORG_LUT, m[:, 8:16]), 0)
    org_expected = _ORG_CHECK_CODES[11 - (org_values @ _ORG_W16) % 11]
    return bad, expected, org_expected


def _show(code: int) -> str:
    """A character code for a message: letters and digits as such, anything else by name or code point.

    Keeps reasons free of quotes, backslashes and control characters (the CLI relies on that).
    """
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    return "非ASCII字符 a non-ASCII character" if code == _NON_ASCII else f"U+{code:04X}"


def _pair_message(prefix: str, expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """'<prefix>: expected E, got G' for each (expected, got) code pair."""
    return _by_key(expected.astype(np.int32) * 256 + got,
                   lambda k: f"{prefix}: expected {_show(k // 256)}, got {_show(k % 256)}")


def _uscc_block(block: _Block) -> dict[str, np.ndarray]:
    """Check one block of USCCs."""
    m, n = block.matrix, block.matrix.shape[0]
    right_length = ~block.empty & (block.lengths == 18)
    bad, expected, org_expected = _uscc_parts(m)
    bad[:, 17] = False  # a wrong last character is reported as a check-character mismatch, with the expected one
    well_formed = right_length & ~_any_per_row(bad)
    check_ok = well_formed & (m[:, 17] == expected)
    org_check_ok = well_formed & (m[:, 16] == org_expected)
    reasons = _Reasons(n)
    reasons.add(block.empty, EMPTY)
    reasons.add(~right_length, lambda hit: _by_key(block.lengths[hit], lambda k: f"长度错误 wrong length: 须为18位 expected 18 characters, got {k}"))
    reasons.add(~well_formed, lambda hit: _by_key(_first_true(bad[hit]) + 1, lambda k: f"格式错误 invalid character at position {k}: {_USCC_POSITION_RULE[k]}"))
    check_message = "校验位错误 check character mismatch"
    org_message = "组织机构代码校验位错误 embedded GB 11714 organisation-code check mismatch"
    reasons.add(~check_ok & ~org_check_ok, lambda hit: _pair_message(check_message, expected[hit], m[hit, 17])
                + "; " + _pair_message(org_message, org_expected[hit], m[hit, 16]))
    reasons.add(~check_ok, lambda hit: _pair_message(check_message, expected[hit], m[hit, 17]))
    reasons.add(~org_check_ok, lambda hit: _pair_message(org_message, org_expected[hit], m[hit, 16]))
    valid = reasons.open
    text = _matrix_text(m[:, :18])
    return {
        "valid": valid,
        "reason": reasons.reason,
        "normalised": np.where(valid, text, ""),
        "note": _notes(valid, [(block.stripped, NOTE_STRIPPED), (block.lowered, NOTE_UPPER)]),
        "department": np.where(well_formed, np.strings.slice(text, 0, 1), ""),
        "category": np.where(well_formed, np.strings.slice(text, 1, 2), ""),
        "region": np.where(well_formed, np.strings.slice(text, 2, 8), ""),
        "org_code": np.where(well_formed, np.strings.slice(text, 8, 17), ""),
        "check_ok": check_ok,
        "org_check_ok": org_check_ok,
    }


_USCC_DTYPES = {"valid": bool, "reason": object, "normalised": "<U18", "note": object, "department": "<U1",
                "category": "<U1", "region": "<U6", "org_code": "<U9", "check_ok": bool, "org_check_ok": bool}


def check_usccs(values: Any) -> UsccResult:
    """Check 统一社会信用代码 (GB 32100) column-wise, including the embedded GB 11714 organisation code.

    Rules, first failure reported: not empty; 18 characters; alphabet/format
    ``^[0-9A-HJ-NPQRTUWXY]{2}\\d{6}[0-9A-HJ-NPQRTUWXY]{10}$``; mod-31 check character; GB 11714
    check on characters 9–17 (both mismatches are reported together). Letter department codes
    (N, Y, A…) are legal. Lower case is normalised to upper case with a note. A failed check is a
    reason, never an exception: some early pilot codes fail it and are routed back as warnings.
    """
    return UsccResult(**_run(values, _USCC_DTYPES, lambda text, missing: _uscc_block(_prepare(text, missing, 18))))


# ---------------------------------------------------------------------------------------------
# 证照标识 GB/T 36904
# ---------------------------------------------------------------------------------------------

_PREFIX_CODES = np.frombuffer(LICENCE_ID_PREFIX.encode(), dtype=np.uint8)
_MIN_LICENCE_ID_LENGTH = len(LICENCE_ID_PREFIX) + 21 + 1 + 18 + 1 + 1 + 1 + 3 + 1 + 1  # = 63, serial ≥ 1
LICENCE_ID_FORM = "1.2.156.3005.2.{证照类型代码}.{颁发机构代码}.{流水号}.{版本号}.{校验位}"

# Character classes as bit flags: one lookup per character, then a mask test per column.
_FLAG_DIGIT, _FLAG_USCC, _FLAG_ALNUM, _FLAG_DOT = 1, 2, 4, 8


def _flag_table() -> np.ndarray:
    """ASCII code → bit flags of the classes the character belongs to."""
    flags = np.zeros(256, dtype=np.uint8)
    flags[_DIGIT_LUT >= 0] |= _FLAG_DIGIT
    flags[_USCC_LUT >= 0] |= _FLAG_USCC
    flags[_MOD37_LUT >= 0] |= _FLAG_ALNUM
    flags[ord(".")] |= _FLAG_DOT
    return flags


_FLAGS = _flag_table()
_MOD37_VALUE = np.maximum(_MOD37_LUT, 0).astype(np.uint8)  # bad characters count as 0: already reported
_ROLE_PREFIX, _ROLE_TYPE, _ROLE_DOT, _ROLE_ISSUER, _ROLE_SERIAL, _ROLE_VERSION, _ROLE_CHECK = range(7)
_ROLE_RULE = {
    _ROLE_PREFIX: f"前缀错误 wrong prefix: 须以 {LICENCE_ID_PREFIX} 开头 must start with {LICENCE_ID_PREFIX}",
    _ROLE_TYPE: "证照类型代码格式错误 licence-type code malformed: 须为统一社会信用代码+3位数字 a USCC followed by 3 digits",
    _ROLE_DOT: f"分段错误 expected '.': 须为 must be {LICENCE_ID_FORM} (类型代码21位 type code 21, 颁发机构代码18位 issuer 18, 版本号3位 version 3)",
    _ROLE_ISSUER: "颁发机构代码格式错误 issuer code malformed: 须为18位统一社会信用代码 an 18-character USCC",
    _ROLE_SERIAL: "流水号格式错误 serial malformed: 只能含数字和字母 digits and letters only",
    _ROLE_VERSION: "版本号格式错误 version malformed: 须为3位数字 3 digits",
}
_USCC_FLAGS = [_FLAG_USCC] * 2 + [_FLAG_DIGIT] * 6 + [_FLAG_USCC] * 10


@lru_cache(maxsize=256)
def _licence_layout(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a licence ID of ``length`` characters: required flag and role of each column, payload columns."""
    serial = length - 62
    parts = [  # (flags per column, role), in order; the prefix is compared literally elsewhere
        ([_FLAG_DIGIT | _FLAG_DOT] * 15, _ROLE_PREFIX), (_USCC_FLAGS + [_FLAG_DIGIT] * 3, _ROLE_TYPE),
        ([_FLAG_DOT], _ROLE_DOT), (_USCC_FLAGS, _ROLE_ISSUER), ([_FLAG_DOT], _ROLE_DOT),
        ([_FLAG_ALNUM] * serial, _ROLE_SERIAL), ([_FLAG_DOT], _ROLE_DOT), ([_FLAG_DIGIT] * 3, _ROLE_VERSION),
        ([_FLAG_DOT], _ROLE_DOT), ([_FLAG_ALNUM], _ROLE_CHECK),  # the check column is exempted in _licence_group
    ]
    need = np.array([flag for flags, _ in parts for flag in flags], dtype=np.uint8)
    roles = np.array([role for flags, role in parts for _ in flags], dtype=np.int8)
    payload = np.array([*range(15, 36), *range(37, 55), *range(56, 56 + serial), *range(length - 5, length - 2)], dtype=np.intp)
    return need, roles, payload


def _licence_group(g: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Check licence IDs that all have ``length`` characters (code matrix ``g``)."""
    need, roles, payload = _licence_layout(length)
    bad = (np.take(_FLAGS, g) & need) == 0
    bad[:, :15] = g[:, :15] != _PREFIX_CODES
    bad[:, length - 1] = False  # a wrong check character is reported as a mismatch, with the expected one
    first = bad.argmax(axis=1)
    malformed = bad[np.arange(g.shape[0]), first]
    by_column = np.ascontiguousarray(g.T)  # rows of this are contiguous: cheap column selection below
    values = np.take(_MOD37_VALUE, by_column[payload])
    expected = _MOD37_CODES[_mod37_check_index(_mod37_state_by_column(values))]
    _, type_expected, type_org_expected = _uscc_parts(g[:, 15:33])
    _, issuer_expected, issuer_org_expected = _uscc_parts(g[:, 37:55])
    return {
        "malformed": malformed,
        "bad_position": first,
        "bad_role": roles[first],
        "expected": expected,
        "got": g[:, length - 1],
        "type_bad": (g[:, 32] != type_expected) | (g[:, 31] != type_org_expected),
        "issuer_bad": (g[:, 54] != issuer_expected) | (g[:, 53] != issuer_org_expected),
    }


def _licence_block(block: _Block, check_embedded_uscc: bool) -> dict[str, np.ndarray]:
    """Check one block of licence identifiers, one group of equal length at a time."""
    m, n, lengths = block.matrix, block.matrix.shape[0], block.lengths
    right_length = ~block.empty & (lengths >= _MIN_LICENCE_ID_LENGTH) & (lengths <= MAX_LICENCE_ID_LENGTH)
    facts = {"malformed": np.ones(n, bool), "bad_position": np.zeros(n, np.intp), "bad_role": np.zeros(n, np.int8),
             "expected": np.zeros(n, np.uint8), "got": np.zeros(n, np.uint8), "type_bad": np.zeros(n, bool),
             "issuer_bad": np.zeros(n, bool)}
    for length in np.unique(lengths[right_length]).tolist():
        rows = right_length & (lengths == length)
        group = _licence_group(m[:, :length] if rows.all() else m[rows, :length], length)
        for name, column in group.items():
            facts[name][rows] = column

    reasons = _Reasons(n)
    reasons.add(block.empty, EMPTY)
    reasons.add(~right_length, lambda hit: _by_key(lengths[hit], lambda k: (
        f"长度错误 wrong length: 至少{_MIN_LICENCE_ID_LENGTH}个字符 at least {_MIN_LICENCE_ID_LENGTH} characters, got {k}" if k < _MIN_LICENCE_ID_LENGTH
        else f"长度错误 too long: 至多{MAX_LICENCE_ID_LENGTH}个字符 at most {MAX_LICENCE_ID_LENGTH} characters, got {k}")))
    reasons.add(facts["malformed"], lambda hit: _by_key(
        facts["bad_role"][hit].astype(np.int64) * 1000 + facts["bad_position"][hit] + 1,
        lambda k: f"第{k % 1000}位字符非法 invalid character at position {k % 1000}; {_ROLE_RULE[k // 1000]}"))
    reasons.add(facts["got"] != facts["expected"], lambda hit: _pair_message(
        "校验位错误 check character mismatch (ISO 7064 MOD 37,36)", facts["expected"][hit], facts["got"][hit]))
    if check_embedded_uscc:
        reasons.add(facts["type_bad"], "证照类型代码中的统一社会信用代码校验失败 the defining body's USCC inside the licence-type code fails its check")
        reasons.add(facts["issuer_bad"], "颁发机构代码校验失败 issuer USCC fails its check")
    valid = reasons.open
    text = np.strings.upper(block.text) if block.lowered.any() else block.text
    normalised = text.astype(object)  # object, not '<U…>': a fresh wide unicode column costs more than the check
    normalised[~valid] = ""
    return {
        "valid": valid,
        "reason": reasons.reason,
        "normalised": normalised,
        "note": _notes(valid, [(block.stripped, NOTE_STRIPPED), (block.lowered, NOTE_UPPER)]),
    }


_LICENCE_DTYPES = {"valid": bool, "reason": object, "normalised": object, "note": object}


def _licence_width(text: np.ndarray) -> int:
    """Matrix width for a block of licence IDs: the longest value, capped."""
    longest = int(np.strings.str_len(text).max()) if text.size else 0
    return max(min(longest, MAX_LICENCE_ID_LENGTH), _MIN_LICENCE_ID_LENGTH)


def check_licence_ids(values: Any, check_embedded_uscc: bool = True) -> LicenceIdResult:
    """Check 证照标识 (GB/T 36904) column-wise; never raises for bad values.

    Form ``1.2.156.3005.2.{证照类型代码}.{颁发机构代码}.{流水号}.{版本号}.{校验位}``: type code = a USCC
    + 3 digits, issuer = a USCC, serial = digits/letters, version = 3 digits, check = ISO 7064
    MOD 37,36 over the four fields joined without dots. With ``check_embedded_uscc`` (default) the
    two embedded USCCs must also pass their own checks. Lower case is normalised to upper case.
    """
    def block(text: np.ndarray, missing: np.ndarray) -> dict[str, np.ndarray]:
        """Check one block with a width fitted to it."""
        return _licence_block(_prepare(text, missing, _licence_width(text)), check_embedded_uscc)

    return LicenceIdResult(**_run(values, _LICENCE_DTYPES, block))


def licence_id(type_code: str, issuer_code: str, serial: str, version: str = "001") -> str:
    """A complete 证照标识 for the four fields, with its check character."""
    payload = f"{type_code}{issuer_code}{serial}{version}".upper()
    return f"{LICENCE_ID_PREFIX}{type_code}.{issuer_code}.{serial}.{version}.{licence_id_check_char(payload)}".upper()


# ---------------------------------------------------------------------------------------------
# Dispatch by kind, and per-value conveniences
# ---------------------------------------------------------------------------------------------

KINDS: dict[str, Any] = {"resident-id": check_resident_ids, "uscc": check_usccs, "licence-id": check_licence_ids}


def check(kind: str, values: Any, **options: Any) -> CheckResult:
    """Check a column of identifiers of ``kind`` ('resident-id', 'uscc' or 'licence-id')."""
    if kind not in KINDS:
        raise ValueError(f"未知标识类型 unknown identifier kind {kind!r}; one of {sorted(KINDS)}")
    return KINDS[kind](values, **options)


def resident_id_reason(value: Any, today: _dt.date | None = None, region_rule: str = "known") -> str | None:
    """Why one resident ID is invalid, or None if valid."""
    return check_resident_ids([value], today=today, region_rule=region_rule).reason[0]


def is_valid_resident_id(value: Any, today: _dt.date | None = None, region_rule: str = "known") -> bool:
    """Whether one resident ID is valid (legacy 15-digit numbers included)."""
    return bool(check_resident_ids([value], today=today, region_rule=region_rule).valid[0])


def normalise_resident_id(value: Any, today: _dt.date | None = None) -> str | None:
    """The 18-digit form of a valid resident ID (converting a legacy 15-digit one), else None."""
    return str(check_resident_ids([value], today=today).normalised[0]) or None


def uscc_reason(value: Any) -> str | None:
    """Why one USCC is invalid, or None if valid."""
    return check_usccs([value]).reason[0]


def is_valid_uscc(value: Any) -> bool:
    """Whether one USCC is valid (both checks)."""
    return bool(check_usccs([value]).valid[0])


def licence_id_reason(value: Any, check_embedded_uscc: bool = True) -> str | None:
    """Why one licence identifier is invalid, or None if valid."""
    return check_licence_ids([value], check_embedded_uscc=check_embedded_uscc).reason[0]


def is_valid_licence_id(value: Any, check_embedded_uscc: bool = True) -> bool:
    """Whether one licence identifier is valid."""
    return bool(check_licence_ids([value], check_embedded_uscc=check_embedded_uscc).valid[0])
