"""End to end: the simulated province at small scale, every DAG run by Airflow with dag.test(), counts checked."""

from __future__ import annotations

import json

import pytest

from connectors.registry import all_sources, get_source

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def test_make_run_path_end_to_end_and_rerun(airflow_session) -> None:
    from hub.pipeline import run_pipeline
    from hub.settings import get_settings

    lines: list[str] = []
    first = run_pipeline(scale=0.001, seed=7, progress=lines.append)
    world = json.loads((get_settings().world_dir / "world.json").read_text(encoding="utf-8"))

    # Every registered source was collected, and every row it sent is accounted for.
    landed = {spec.id for spec in all_sources()}
    assert set(first["sources"]) == landed, lines
    for source_id, row in first["sources"].items():
        assert row["extracted"] == world["counts"]["sources"][source_id], source_id
        if get_source(source_id).merge and get_source(source_id).library in ("population", "legal_entity"):
            assert row["loaded"] + row["rejected"] == row["extracted"], source_id
    assert first["libraries"]["population"] > 0.9 * world["counts"]["truth"]["persons"]
    assert first["libraries"]["legal_entity"] > 0.9 * world["counts"]["truth"]["entities"]
    assert any("merge_population" in line and "success" in line for line in lines)

    # A second run finds nothing new: incremental sources land nothing, libraries are unchanged.
    second = run_pipeline(scale=0.001, seed=7, progress=lines.append)
    assert second["libraries"] == first["libraries"]
    assert second["sources"] == first["sources"], "a rerun must not extract or load any row again"
