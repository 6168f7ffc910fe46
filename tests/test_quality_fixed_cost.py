"""The quality stage's fixed cost per run (issue 9): one GX set-up per process and suite, Data Docs built once per
stage, and still a Data Docs page for every run, linked from the report, that later stages leave in place."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.collect import collect
from hub.models import QualityRun
from hub.settings import get_settings
from quality import gx_suite
from quality.stage import check_pending, docs_dir
from test_quality_feedback import gongan, key_reads  # noqa: F401 - the fixtures: a 公安 source and a fresh hub DB (SQLite, PostgreSQL)
from test_quality_rules import person, population, rid, run

pytest.importorskip("great_expectations")

T1 = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.timezone.utc)
T2 = dt.datetime(2026, 11, 3, 1, 0, tzinfo=dt.timezone.utc)


def _add_person(source: sa.Engine, key: int, birth: str, updated: str) -> None:
    """One more resident at the source, updated later than every row before it (the next collection lands it)."""
    with source.begin() as c:
        c.exec_driver_sql("INSERT INTO hjrk VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                          (key, rid(birth, key), f"新{key}", "1", "01", birth, "420102", f"一路{key}号", None, "10", None, updated))


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count Data Docs builds (each still runs): one entry per build, the number of runs it rendered."""
    calls: list[int] = []
    original = gx_suite.build_data_docs

    def counted(folder: Path, outcomes: list) -> float:
        calls.append(len(outcomes))
        return original(folder, outcomes)

    monkeypatch.setattr(gx_suite, "build_data_docs", counted)
    return calls


def test_data_docs_once_per_stage_and_every_run_keeps_its_linked_page(gongan, monkeypatch) -> None:
    source, hub = gongan
    builds = _count_builds(monkeypatch)
    collect("gongan_hjrk", "run-1")
    _add_person(source, 6, "19920304", "2026-01-02 08:00:00")
    collect("gongan_hjrk", "run-2")

    first = check_pending("population", run_time=T1)
    assert builds == [2]  # both runs, one build
    pages = {key: first[key]["docs_page"] for key in ("gongan_hjrk/run-1", "gongan_hjrk/run-2")}
    assert len(set(pages.values())) == 2 and all(Path(p).is_file() for p in pages.values())
    report = Path(first["report"]).read_text(encoding="utf-8")
    for page in pages.values():
        assert Path(page).as_uri() in report
        assert "POP-ID-resident_id" in Path(page).read_text(encoding="utf-8")
    with sa.orm.Session(hub) as session:
        recorded = {f"{r.source_id}/{r.run_id}": r.docs_page for r in session.scalars(sa.select(QualityRun))}
    assert recorded == pages

    _add_person(source, 7, "19930405", "2026-01-03 08:00:00")
    collect("gongan_hjrk", "run-3")
    second = check_pending("population", run_time=T2)
    assert builds == [2, 1]
    assert Path(second["gongan_hjrk/run-3"]["docs_page"]).is_file()
    assert all(Path(p).is_file() for p in pages.values())  # GX's index clean-up used to delete earlier runs' pages
    index = (docs_dir(get_settings()) / "index.html").read_text(encoding="utf-8")
    assert all(f"/run-{n}/" in index for n in (1, 2, 3))  # the index lists every stage's runs, not the last stage's


def test_checked_runs_share_one_context_asset_and_suite_per_process(tmp_path) -> None:
    docs = tmp_path / "docs"
    evaluation = run(population([person(), person(key=2, name=None)]))
    for number in range(3):
        outcome = gx_suite.validate(evaluation.pass_columns(), evaluation.rules, "population.gongan_hjrk", f"run-{number}",
                                    T1 + dt.timedelta(hours=number), docs, build_docs=False)
        assert outcome.unexpected["POP-REQ-name"] == 1 and not outcome.success
    workspace = gx_suite._workspace(docs)
    assert workspace.datasource.get_asset_names() == {"population.gongan_hjrk"}
    assert len(list(workspace.context.checkpoints.all())) == 1 and len(list(workspace.context.suites.all())) == 1

    # a changed rule set (the catalogue edited under a running process) gets a new suite, not the cached one
    fewer = [r for r in evaluation.rules if r.id != "POP-REQ-name"]
    changed = gx_suite.validate(evaluation.pass_columns(), fewer, "population.gongan_hjrk", "run-9", T2, docs, build_docs=False)
    assert changed.unexpected == {r.id: int(evaluation.fail(r.id).sum()) for r in fewer}
    assert len(list(workspace.context.suites.all())) == 1
    assert len(workspace.context.suites.get("population.gongan_hjrk").expectations) == len(fewer)


def test_a_validation_left_without_its_page_is_rendered_by_the_next_build(tmp_path) -> None:
    """A stage stopped between validating a run and its Data Docs build: the run's recorded page appears with the next build."""
    docs = tmp_path / "docs"
    evaluation = run(population([person(), person(key=2, gender="X")]))
    orphan = gx_suite.validate(evaluation.pass_columns(), evaluation.rules, "population.gongan_hjrk", "run-1", T1, docs,
                               build_docs=False)
    assert orphan.docs_page and not Path(orphan.docs_page).exists()
    later = gx_suite.validate(evaluation.pass_columns(), evaluation.rules, "population.gongan_hjrk", "run-2", T2, docs)
    assert Path(later.docs_page).is_file() and Path(orphan.docs_page).is_file()
    assert "POP-CODE-gender" in Path(orphan.docs_page).read_text(encoding="utf-8")
