"""Normalisers: the formats departments send become standard values, and nothing fails silently."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import normalize


def _dates(values):
    parsed, errors = normalize.date(pa.array(values, pa.string()))
    return parsed.to_pylist(), errors.to_pylist()


@pytest.mark.parametrize(
    "written",
    ["1990-01-02", "19900102", "1990/1/2", "1990.1.2", "1990年1月2日", "１９９０年１月２日", " 1990-01-02 ", "1990-01-02 00:00:00"],
)
def test_every_date_form_departments_send(written: str) -> None:
    parsed, errors = _dates([written])
    assert parsed == [dt.date(1990, 1, 2)] and errors == [None]


@pytest.mark.parametrize("impossible", ["2001-02-30", "20010230", "1900-02-29", "1990年13月2日", "19900", "abc", "0000-01-01"])
def test_impossible_dates_become_errors_not_guesses(impossible: str) -> None:
    parsed, errors = _dates([impossible])
    assert parsed == [None]
    assert impossible.strip() in errors[0] and "无法识别的日期" in errors[0]


def test_missing_dates_are_not_errors() -> None:
    assert _dates([None, "", "  "]) == ([None, None, None], [None, None, None])


def test_halfwidth_text_simplified_upper() -> None:
    assert normalize.halfwidth(pa.array(["ＡＢ１２３　x", "abc"]))[0].to_pylist() == ["AB123 x", "abc"]
    assert normalize.text(pa.array(["  张  伟 ", "", None]))[0].to_pylist() == ["张 伟", None, None]
    assert normalize.simplified(pa.array(["張偉", "劉麗華", "张伟", None]))[0].to_pylist() == ["张伟", "刘丽华", "张伟", None]
    assert normalize.upper(pa.array(["11010519491231002x"]))[0].to_pylist() == ["11010519491231002X"]


def test_decimal_and_code_map() -> None:
    parsed, errors = normalize.decimal(pa.array(["12.5", "１００", "abc", None]))
    assert [None if v is None else float(v) for v in parsed.to_pylist()] == [12.5, 100.0, None, None]
    assert errors.to_pylist()[2].endswith("abc")
    mapped, _ = normalize.code_map(pa.array(["男", "2", "女", None]), {"男": "1", "女": "2"})
    assert mapped.to_pylist() == ["1", "2", "2", None]


def test_datetime_text_and_typed() -> None:
    parsed, errors = normalize.datetime_(pa.array(["2026-01-02 03:04:05", "2026-01-02T03:04:05", "bad", "2026-01-03", "2026年1月3日"]))
    assert parsed.to_pylist()[:2] == [dt.datetime(2026, 1, 2, 3, 4, 5)] * 2
    assert errors.to_pylist()[2] is not None
    assert parsed.to_pylist()[3:] == [dt.datetime(2026, 1, 3)] * 2 and errors.to_pylist()[3:] == [None, None]


FORMATS = [
    lambda d: d.isoformat(),
    lambda d: d.strftime("%Y%m%d"),
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{d.year}年{d.month}月{d.day}日",
    lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",
]


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)), st.sampled_from(FORMATS), st.booleans())
def test_property_any_real_date_in_any_form_round_trips(day: dt.date, form, fullwidth: bool) -> None:
    written = form(day)
    if fullwidth:
        written = written.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    assert _dates([written]) == ([day], [None])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99)), min_size=1, max_size=30),
       st.sampled_from(["{y:04d}-{m:02d}-{d:02d}", "{y:04d}{m:02d}{d:02d}", "{y:04d}年{m}月{d}日"]))
def test_property_written_digits_are_a_date_exactly_when_the_calendar_has_it(triples, form) -> None:
    """No rollover, no guess: 2001-02-30, month 13 or day 0 are errors; every real day (year 1 on) is itself."""
    def real(y: int, m: int, d: int) -> dt.date | None:
        try:
            return dt.date(y, m, d)
        except ValueError:
            return None

    parsed, errors = _dates([form.format(y=y, m=m, d=d) for y, m, d in triples])
    assert parsed == [real(*t) for t in triples]
    assert [e is not None for e in errors] == [real(*t) is None for t in triples]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=20))
def test_property_normalisers_never_raise_and_keep_length(values) -> None:
    array = pa.array(values, pa.string())
    for name, normaliser in normalize.NORMALISERS.items():
        result, errors = normaliser(array)
        assert len(result) == len(values) == len(errors), name


def test_decimal_out_of_range_is_an_error_not_a_crash() -> None:
    """Regression (found by the property test): 15+ digits before the point do not fit decimal(20, 6)."""
    result, errors = normalize.decimal(pa.array(["123456789012345", "00000000000000000012", "12345678901234.5", "x"]))
    assert [None if v is None else str(v) for v in result.to_pylist()] == [None, "12.000000", "12345678901234.500000", None]
    assert errors.to_pylist()[0].startswith("金额超出范围") and errors.to_pylist()[1:3] == [None, None]
    assert errors.to_pylist()[3].startswith("无法识别的金额")


def test_join_messages_keeps_every_row() -> None:
    """Regression: pyarrow's own join drops rows when one input is all null."""
    joined = normalize.join_messages([pa.array(["m", None, "m"]), pa.array([None, None, None], pa.string())], 3)
    assert joined.to_pylist() == ["m", None, "m"]
    joined = normalize.join_messages([pa.array(["a", None, None]), pa.array(["b", None, "c"])], 3)
    assert joined.to_pylist() == ["a; b", None, "c"]
    assert normalize.join_messages([], 2).to_pylist() == [None, None]
