"""The rules measured against the simulated province's ground truth: recall and precision per defect kind.

The fast test uses a small world; the scale-0.1 measurement (the issue's target) is marked slow:
`pytest -m slow tests/test_quality_world.py`, or `hub quality evaluate --world DIR`.
"""

from __future__ import annotations

import pytest

from quality.world_eval import evaluate_world

TARGET = 0.99


def _assert_target(result: dict) -> None:
    """Every defect kind found with recall and precision ≥ 0.99; no clean row quarantined."""
    assert result["kinds"], "the manifest lists no defects"
    for kind, row in result["kinds"].items():
        assert row["recall"] is not None and row["recall"] >= TARGET, (kind, row)
        assert row["precision"] is not None and row["precision"] >= TARGET, (kind, row)
    assert result["clean_rows_quarantined"] == 0, result["clean_rows_quarantined_examples"]
    assert result["target_met"]


def test_small_world(tmp_path_factory) -> None:
    from world import generate

    folder = tmp_path_factory.mktemp("world") / "w"
    generate(out=folder, scale=0.01, seed=3)
    result = evaluate_world(folder)
    _assert_target(result)
    assert set(result["kinds"]) >= {"bad_check_char", "duplicate", "missing_required", "cross_source_conflict",
                                    "orphan_holder", "orphan_subject", "expired_still_valid", "invalid_code"}


@pytest.mark.slow
def test_scale_point_one(tmp_path_factory) -> None:
    from world import generate

    folder = tmp_path_factory.mktemp("world") / "w"
    generate(out=folder, scale=0.1, seed=20261123)
    _assert_target(evaluate_world(folder))
