"""Great Expectations: suites generated from the catalogue (one expectation per rule), validation, Data Docs."""

from __future__ import annotations

import datetime as dt

import pytest

from quality import gx_suite
from quality.catalogue import load_catalogue
from quality.checks import SOURCE_LEVEL_CHECKS
from test_quality_rules import person, population, run

pytest.importorskip("great_expectations")


@pytest.mark.parametrize("library", ["population", "legal_entity", "licence", "credit"])
def test_suite_is_generated_from_the_catalogue(library) -> None:
    rules = [r for r in load_catalogue(library).rules if r.check not in SOURCE_LEVEL_CHECKS]
    suite = gx_suite.build_suite(library, rules)
    expectations = suite.expectations
    assert len(expectations) == len(rules)
    for rule, expectation in zip(rules, expectations):
        assert expectation.expectation_type == "expect_column_values_to_pass_hub_rule"
        assert expectation.column == rule.id
        assert expectation.meta["rule_id"] == rule.id and expectation.meta["name"] == rule.name
        assert expectation.meta["dimension"] == rule.dimension and expectation.meta["severity"] == rule.severity
        assert rule.name in expectation.description
        assert str(expectation.severity.value) == {"error": "critical", "warning": "warning"}[rule.severity]


def test_validation_agrees_with_the_bare_pass_and_writes_data_docs(tmp_path) -> None:
    evaluation = run(population([person(), person(key=2, name=None), person(key=3, gender="X"), person(key=4)]))
    outcome = gx_suite.validate(evaluation.pass_columns(), evaluation.rules, "population.gongan_hjrk", "run-1",
                                dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc), tmp_path / "docs")
    assert not outcome.success
    assert outcome.unexpected == {r.id: int(evaluation.fail(r.id).sum()) for r in evaluation.rules}
    assert outcome.unexpected["POP-REQ-name"] == 1 and outcome.unexpected["POP-CODE-gender"] == 1
    page = tmp_path / "docs" / "index.html"
    assert page.exists() and outcome.docs_page and outcome.docs_page.endswith(".html")
    html = open(outcome.docs_page, encoding="utf-8").read()
    assert "POP-REQ-name" in html and "姓名不得为空" in html
    clean = run(population([person()]))
    assert gx_suite.validate(clean.pass_columns(), clean.rules, "population.gongan_hjrk", "run-2",
                             dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)).success
