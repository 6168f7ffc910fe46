"""Property tests of rule evaluation: conservation, verdicts, row locality, duplicates, determinism."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality.catalogue import load_catalogue
from quality.engine import LOAD, MERGE, QUARANTINE, evaluate
from quality.frame import RuleContext
from test_quality_rules import REFERENCE, population, rid

CATALOGUE = load_catalogue("population")
IDS = [rid("19900102", 11), rid("19851231", 22), rid("20000229", 33), rid("19700101", 44)]


@st.composite
def resident_ids(draw) -> str | None:
    """A valid ID, a corrupted one, a legacy one, junk, blank or missing."""
    choice = draw(st.integers(0, 5))
    base = draw(st.sampled_from(IDS))
    if choice == 0:
        return base
    if choice == 1:
        return base[:-1] + draw(st.sampled_from("0123456789X").filter(lambda c: c != base[-1]))
    if choice == 2:
        return "420102900102011"
    if choice == 3:
        return draw(st.text(alphabet="0123456789Xx -", max_size=20))
    return draw(st.sampled_from(["", "   ", None]))


@st.composite
def rows(draw) -> list[dict]:
    """A batch of 公安-like rows with every kind of defect mixed in."""
    count = draw(st.integers(1, 25))
    out = []
    for number in range(count):
        out.append({
            "key": draw(st.sampled_from([str(number), str(number), str(max(number - 1, 0))])),  # occasional repeated record
            "resident_id": draw(resident_ids()),
            "name": draw(st.sampled_from(["张伟", "王芳", " ", None, "李 四"])),
            "gender": draw(st.sampled_from(["1", "2", "0", "9", "男", "X", None])),
            "ethnicity": draw(st.sampled_from(["01", "56", "66", None])),
            "birth_date": draw(st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2030, 1, 1)))),
            "household_region": draw(st.sampled_from(["420102", "428207", None])),
            "household_address": draw(st.sampled_from(["武汉市江岸区一路1号", None])),
            "marital_status": draw(st.sampled_from(["10", "20", "50", None])),
            "death_date": draw(st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2030, 1, 1)))),
        })
    return out


def _evaluate(table: pa.Table):
    """Evaluate a batch as 公安's."""
    return evaluate(table, RuleContext("gongan_hjrk", "r1", REFERENCE, CATALOGUE))


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(rows())
def test_rows_are_conserved_and_verdicts_follow_severity(batch) -> None:
    evaluation = _evaluate(population(batch))
    counts = evaluation.counts()
    assert counts["loaded"] + counts["quarantined"] + counts["merged"] == counts["rows"] == len(batch)
    error = np.zeros(len(batch), dtype=bool)
    for rule in evaluation.rules:
        if rule.severity == "error" and rule.check != "duplicate":
            error |= evaluation.fail(rule.id)
    assert ((evaluation.verdict == QUARANTINE) == error).all()
    assert (evaluation.verdict[evaluation.verdict == MERGE] == MERGE).all()
    assert evaluation.findings.num_rows == sum(int(evaluation.fail(r.id).sum()) for r in evaluation.rules)
    severities = {r.id: r.severity for r in evaluation.rules}
    for finding in evaluation.findings.to_pylist():
        assert finding["message"] and severities[finding["rule_id"]] == finding["severity"]


@FAST
@given(rows())
def test_required_rule_matches_an_oracle(batch) -> None:
    evaluation = _evaluate(population(batch))
    oracle = [row["name"] is None or not row["name"].strip() for row in batch]
    assert evaluation.fail("POP-REQ-name").tolist() == oracle


@FAST
@given(rows(), st.randoms(use_true_random=False))
def test_row_level_rules_do_not_depend_on_other_rows(batch, random) -> None:
    order = list(range(len(batch)))
    random.shuffle(order)
    first = _evaluate(population(batch))
    second = _evaluate(population([batch[i] for i in order]))
    for rule in first.rules:
        if rule.check == "duplicate":
            continue
        assert first.fail(rule.id)[order].tolist() == second.fail(rule.id).tolist(), rule.id


@FAST
@given(rows())
def test_duplicates_count_repeated_keys_of_distinct_records(batch) -> None:
    for number, row in enumerate(batch):
        row["key"] = str(number)  # distinct records
    evaluation = _evaluate(population(batch))
    keys = evaluation.frame.identifier_key("resident_id", "resident-id").to_pylist()
    complete = [k for k in keys if k]
    assert int(evaluation.fail("POP-DUP").sum()) == len(complete) - len(set(complete))
    again = _evaluate(population(batch))
    assert again.verdict.tolist() == evaluation.verdict.tolist()  # deterministic
    assert set(evaluation.verdict.tolist()) <= {LOAD, QUARANTINE, MERGE}


KEY_TEXT = st.one_of(st.none(), st.just(""), st.text(alphabet="0123456789Xx张王 ", max_size=4))


@given(st.lists(KEY_TEXT, max_size=30), st.lists(KEY_TEXT, max_size=30), st.booleans())
@settings(max_examples=200, deadline=None)
def test_lookup_positions_agree_with_arrow_index_in(keys, wanted, as_numpy) -> None:
    """The cached hash index finds what pc.index_in finds (first row of a key; blank, missing, unknown → -1),
    for Arrow and NumPy input, built keys or keys given as they are (repeats fall back to index_in)."""
    from quality.references import Lookup

    def expected(lookup: Lookup, query: pa.Array) -> list[int]:
        return pc.fill_null(pc.index_in(query, value_set=lookup.keys), -1).to_pylist()

    text = pa.array(keys, pa.string())
    built = Lookup.build([(text, text, "s", text)])
    raw = Lookup(text, text, text, text, pa.nulls(len(text), pa.string()))
    query = pa.array(wanted, pa.string())
    for lookup in (built, raw):
        if as_numpy:
            plain = [w if w is not None else "None" for w in wanted]
            got = lookup.positions(np.array(plain, dtype=object))
            assert got.tolist() == expected(lookup, pa.array(plain, pa.string()))
        else:
            assert lookup.positions(query).tolist() == expected(lookup, query)
            assert lookup.positions(pa.chunked_array([query], pa.string())).tolist() == expected(lookup, query)
        assert lookup.contains(query).tolist() == [p >= 0 for p in expected(lookup, query)]
