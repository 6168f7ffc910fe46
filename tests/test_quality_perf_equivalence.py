"""The quality stage's shortcuts for speed give exactly what the plain computations they replace give."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from quality.checks import first_rows
from quality.frame import resident_codes
from schemas import identifiers


def _first_rows_plainly(codes: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """For each row, the first row with its code, walking the rows one by one."""
    seen: dict[int, int] = {}
    out = np.full(len(codes), -1, dtype=np.int64)
    for row, (code, whole) in enumerate(zip(codes.tolist(), complete.tolist())):
        if whole:
            out[row] = seen.setdefault(code, row)
    return out


@pytest.mark.parametrize("rows, distinct", [(0, 1), (1, 1), (7, 3), (5_000, 4_900), (40_000, 39_000), (40_000, 50)])
def test_first_rows_equals_walking_the_rows(rows: int, distinct: int) -> None:
    rng = np.random.default_rng(rows + distinct)
    # Resident-ID-like codes (17 digits) that differ only in their low digits, as real ones do.
    codes = 11010119900101000 + rng.integers(0, distinct, rows, dtype=np.int64)
    complete = rng.random(rows) > 0.05
    assert np.array_equal(first_rows(codes, complete), _first_rows_plainly(codes, complete))
    assert np.array_equal(first_rows(codes, np.zeros(rows, dtype=bool)), np.full(rows, -1))


@pytest.mark.parametrize("rows", [0, 1, 32_767, 32_768, 32_769, 70_001])
def test_resident_codes_are_the_first_17_digits(rows: int) -> None:
    rng = np.random.default_rng(rows)
    digits = rng.integers(0, 10, (rows, 17))
    ids = np.array(["".join(map(str, d)) + "X" for d in digits], dtype="<U18") if rows else np.zeros(0, dtype="<U18")
    assert resident_codes(ids).tolist() == [int(text[:17]) for text in ids.tolist()]


@pytest.mark.parametrize("shape", [(0, 18), (5, 0), (1, 1), (1000, 18), (333, 7)])
def test_any_per_row_is_numpys_row_reduction(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    for density in (0.0, 0.01, 0.5, 1.0):
        mask = rng.random(shape) < density
        assert np.array_equal(identifiers._any_per_row(mask), mask.any(axis=1))


def test_calendar_tables_agree_with_python_dates() -> None:
    rng = np.random.default_rng(11)
    year = np.concatenate([rng.integers(0, 10_000, 20_000), [0, 1, 1600, 1900, 2000, 2024, 2100, 9999]]).astype(np.int32)
    month = np.concatenate([rng.integers(0, 14, 20_000), [2, 1, 2, 2, 2, 2, 2, 12]]).astype(np.int32)
    day = np.concatenate([rng.integers(0, 33, 20_000), [29, 1, 29, 29, 29, 29, 29, 31]]).astype(np.int32)
    real = identifiers._real_date(year, month, day)
    days = identifiers._datetime64(year, month, day, real)
    for y, m, d, ok, value in zip(year.tolist(), month.tolist(), day.tolist(), real.tolist(), days.tolist()):
        try:
            expected = dt.date(y, m, d)
        except ValueError:
            expected = None
        assert ok == (expected is not None), (y, m, d)
        assert value == expected, (y, m, d)


def test_gx_fingerprint_of_rule_outcomes_follows_their_bits() -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("great_expectations")
    from great_expectations.execution_engine import pandas_execution_engine

    from quality import gx_suite

    gx_suite._expectation_class()  # installs the bitwise fingerprint
    fingerprint = pandas_execution_engine.hash_pandas_dataframe
    rng = np.random.default_rng(3)
    columns = {f"R-{i}": rng.random(1001) < 0.9 for i in range(5)}
    frame = pd.DataFrame(columns)
    assert fingerprint(frame) == fingerprint(pd.DataFrame({k: v.copy() for k, v in columns.items()}))
    flipped = {k: v.copy() for k, v in columns.items()}
    flipped["R-3"][1000] = not flipped["R-3"][1000]  # the last bit of a column (padding byte) counts
    assert fingerprint(pd.DataFrame(flipped)) != fingerprint(frame)
    assert fingerprint(frame.rename(columns={"R-0": "R-9"})) != fingerprint(frame)
    assert fingerprint(frame.iloc[:1000]) != fingerprint(frame)
    other = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})  # anything else keeps GX's own fingerprint
    assert fingerprint(other) == fingerprint.gx_original(other)
