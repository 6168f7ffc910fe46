"""The row-by-row rules run over blocks of a batch (bounded memory) and decide exactly as over the whole batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.registry import get_source
from quality.catalogue import load_catalogue
from quality.engine import WHOLE_BATCH_CHECKS, Evaluation, evaluate
from quality.frame import RuleContext
from quality.references import build_references
from quality.world_eval import read_description, read_sources

BLOCK = 257  # small and odd: blocks end mid-way through every kind of row


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pa.Table], object]:
    """Every source of a small simulated province, standardised, and references built from its anchors."""
    import datetime as dt

    from world import generate

    folder = tmp_path_factory.mktemp("world") / "w"
    generate(out=folder, scale=0.01, seed=5)
    tables = read_sources(folder)
    reference_date = dt.date.fromisoformat(read_description(folder)["reference_date"])
    return tables, build_references(tables, reference_date)


def _context(source_id: str, references, waived: frozenset = frozenset()) -> RuleContext:
    return RuleContext(source_id, "blocks", references.reference_date, load_catalogue(get_source(source_id).library),
                       references, None, waived)


def _sorted(table: pa.Table) -> list[dict]:
    return table.sort_by([("row", "ascending"), ("rule_id", "ascending")]).to_pylist()


def _assert_same(whole: Evaluation, blocked: Evaluation) -> None:
    assert [rule.id for rule in blocked.rules] == [rule.id for rule in whole.rules]
    for rule in whole.rules:
        assert (blocked.fail(rule.id) == whole.fail(rule.id)).all(), rule.id
    assert blocked.skipped == whole.skipped
    assert blocked.counts() == whole.counts()
    assert (blocked.verdict == whole.verdict).all()
    assert _sorted(blocked.findings) == _sorted(whole.findings)
    assert _sorted(blocked.conflicts) == _sorted(whole.conflicts)


def test_blocks_decide_as_the_whole_batch(province) -> None:
    tables, references = province
    checked = set()
    for source_id, table in tables.items():
        if table.num_rows <= BLOCK:
            continue
        whole = evaluate(table, _context(source_id, references))
        blocked = evaluate(table, _context(source_id, references), block_rows=BLOCK)
        _assert_same(whole, blocked)
        checked |= {rule.check for rule in whole.rules if whole.fail(rule.id).any()}
    # the comparison covered failing rows of identifier, cross-source and duplicate rules alike
    assert {"identifier", "duplicate", "required"} <= checked
    assert checked & {"compare_person_name", "compare_entity_name", "subject_exists"}
    assert checked & WHOLE_BATCH_CHECKS


def test_waivers_apply_to_blocked_outcomes(province) -> None:
    tables, references = province
    source_id = max(tables, key=lambda s: tables[s].num_rows)
    findings = evaluate(tables[source_id], _context(source_id, references)).findings.to_pylist()
    assert findings
    waived = frozenset((row["source_key"], row["rule_id"]) for row in findings[::2])
    whole = evaluate(tables[source_id], _context(source_id, references, waived))
    blocked = evaluate(tables[source_id], _context(source_id, references, waived), block_rows=BLOCK)
    _assert_same(whole, blocked)
    assert whole.findings.num_rows < len(findings)


def test_a_staged_run_is_judged_as_its_table_reading_only_the_rules_columns(province, tmp_path) -> None:
    from quality.engine import QUARANTINE
    from quality.staging import StagedRows

    tables, references = province
    checked = 0
    for source_id, table in tables.items():
        if table.num_rows <= BLOCK:
            continue
        path = tmp_path / f"{source_id}.parquet"
        pq.write_table(table, path, row_group_size=100)  # row groups across the blocks' edges
        whole = evaluate(table, _context(source_id, references), block_rows=BLOCK)
        staged = StagedRows(path)
        lazy = evaluate(staged, _context(source_id, references), block_rows=BLOCK)
        _assert_same(whole, lazy)
        held = np.flatnonzero(whole.verdict == QUARANTINE)
        assert lazy.quarantined_rows.equals(table.take(pa.array(held, pa.int64())))
        read = set(staged._columns)
        assert "_source_key" in read and read < set(table.column_names), source_id  # never every column
        checked += 1
    assert checked >= 5


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(st.integers(1, 6), min_size=1, max_size=5), data=st.data())
def test_rows_with_keys_equals_filtering_the_whole_run(tmp_path_factory, groups, data) -> None:
    import pyarrow.compute as pc

    from quality import staging

    rows = sum(groups)
    table = pa.table({"_source_key": pa.array([f"k{i % 5}-{i}" for i in range(rows)], pa.string()),
                      "v": pa.array(range(rows), pa.int64())})
    path = tmp_path_factory.mktemp("keys") / "rows.parquet"
    pq.write_table(table, path, row_group_size=groups[0])
    keys = data.draw(st.lists(st.sampled_from(table.column("_source_key").to_pylist() + ["absent"]), max_size=8))
    expected = table.filter(pc.is_in(table.column("_source_key"), value_set=pa.array(keys, pa.string())))
    assert staging.rows_with_keys(path, keys).equals(expected)


def test_natural_keys_over_blocks_are_the_whole_batchs(province, monkeypatch) -> None:
    """A large batch's natural keys are derived block by block: the same keys, flags and duplicate groups as over the
    whole batch, for resident-ID keys (integer codes) and text keys (coded over the whole batch) alike."""
    from quality import checks
    from quality.frame import Frame

    tables, references = province
    kinds = set()
    for source_id, table in tables.items():
        if table.num_rows <= BLOCK or not load_catalogue(get_source(source_id).library).profile(source_id).natural_key:
            continue
        whole = checks.natural_keys(Frame(table, _context(source_id, references)))
        with monkeypatch.context() as patch:
            patch.setattr(checks, "KEY_BLOCK_ROWS", BLOCK)
            blocked = checks.natural_keys(Frame(table, _context(source_id, references)))
        assert blocked[0].equals(whole[0]), source_id
        assert (blocked[1] == whole[1]).all(), source_id
        assert (checks.first_rows(blocked[2], blocked[1]) == checks.first_rows(whole[2], whole[1])).all(), source_id
        kinds.add("resident" if (whole[2] > 10**15).any() else "text")
    assert kinds == {"resident", "text"}
