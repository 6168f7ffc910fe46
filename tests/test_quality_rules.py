"""Quality rules: the catalogue (derived from the element catalogue), each check kind, verdicts and conservation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from quality.catalogue import DIMENSIONS, CatalogueError, _rule, load_catalogue, parse_duration
from quality.engine import LOAD, MERGE, QUARANTINE, evaluate
from quality.frame import RuleContext
from quality.references import build_references
from schemas.elements import library_elements
from schemas.identifiers import resident_id_check_char, uscc_check_char

REFERENCE = dt.date(2026, 11, 1)


def rid(birth: str, sequence: int, region: str = "420102") -> str:
    """A valid 18-digit resident ID."""
    body = f"{region}{birth}{sequence:03d}"
    return body + resident_id_check_char(body)


def uscc(serial: int) -> str:
    """A valid USCC."""
    from schemas.identifiers import org_code_check_char

    org = f"{serial:08d}"
    body = f"91420102{org}{org_code_check_char(org)}"
    return body + uscc_check_char(body)


def population(rows: list[dict], source: str = "gongan_hjrk") -> pa.Table:
    """A standardised population batch (every missing column null), keyed 1..n."""
    columns = {"resident_id": pa.string(), "name": pa.string(), "gender": pa.string(), "ethnicity": pa.string(),
               "birth_date": pa.date32(), "household_region": pa.string(), "household_address": pa.string(),
               "marital_status": pa.string(), "death_date": pa.date32()}
    data = {name: pa.array([r.get(name) for r in rows], kind) for name, kind in columns.items()}
    data["_source_id"] = pa.array([source] * len(rows))
    data["_run_id"] = pa.array(["r1"] * len(rows))
    data["_source_key"] = pa.array([str(r.get("key", i + 1)) for i, r in enumerate(rows)])
    data["_errors"] = pa.array([r.get("_errors") for r in rows], pa.string())
    return pa.table(data)


def person(**values) -> dict:
    """A clean 公安 row, with overrides."""
    row = {"resident_id": rid("19900102", 11), "name": "张伟", "gender": "1", "ethnicity": "01",
           "birth_date": dt.date(1990, 1, 2), "household_region": "420102", "household_address": "武汉市江岸区一路1号",
           "marital_status": "10", "death_date": None}
    return row | values


def run(table: pa.Table, source: str = "gongan_hjrk", library: str = "population", references=None):
    """Evaluate a batch with its library's catalogue."""
    return evaluate(table, RuleContext(source, "r1", REFERENCE, load_catalogue(library), references))


def failing(evaluation, rule_id: str) -> list[int]:
    """Row numbers failing one rule."""
    return np.flatnonzero(evaluation.fail(rule_id)).tolist()


# ------------------------------------------------------------------------------------------------
# The catalogue
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("library", ["population", "legal_entity", "licence", "credit"])
def test_catalogue_is_complete_and_well_formed(library) -> None:
    catalogue = load_catalogue(library)
    ids = [rule.id for rule in catalogue.rules]
    assert len(ids) == len(set(ids))
    for rule in catalogue.rules:
        assert rule.dimension in DIMENSIONS and rule.severity in ("error", "warning") and rule.standard
        assert any("\u4e00" <= ch <= "\u9fff" for ch in rule.name), rule.id  # a Chinese name
    # Derived, not typed twice: every required element (but hub-filled provenance), code table and identifier has its rule.
    for element in library_elements(library):
        if element.required and element.group != "source":
            assert f"{catalogue.prefix}-REQ-{element.name}" in ids
        if element.code_table:
            assert f"{catalogue.prefix}-CODE-{element.name}" in ids
        if element.identifier:
            assert f"{catalogue.prefix}-ID-{element.name}" in ids
    assert {r.dimension for r in catalogue.rules} >= {"完整性", "规范性", "一致性", "唯一性", "及时性"}


def test_uscc_check_character_is_a_warning_everywhere() -> None:
    for library in ("legal_entity", "licence", "credit"):
        checks = [r for r in load_catalogue(library).rules if r.check == "uscc_check"]
        assert checks and all(r.severity == "warning" for r in checks)
    assert load_catalogue("legal_entity").rule("ENT-ID-uscc").severity == "error"  # a malformed one is not


def test_malformed_rules_are_clear_errors() -> None:
    base = {"id": "X-1", "name": "测试", "dimension": "完整性", "severity": "error", "check": "required", "fields": ["a"]}
    assert _rule("population", base, "t").check == "required"
    for bad, message in (({"dimension": "美观性"}, "未知维度"), ({"check": "nope"}, "未知检查类型"), ({"severity": "fatal"}, "severity")):
        with pytest.raises(CatalogueError, match=message):
            _rule("population", base | bad, "t")
    assert parse_duration("P1D", "t") == dt.timedelta(days=1)
    assert parse_duration("PT1H", "t") == dt.timedelta(hours=1)
    with pytest.raises(CatalogueError, match="周期"):
        parse_duration("daily", "t")


# ------------------------------------------------------------------------------------------------
# Check kinds
# ------------------------------------------------------------------------------------------------

def test_required_code_table_and_identifier_rules() -> None:
    rows = [
        person(),
        person(key=2, name=None),
        person(key=3, name="   "),
        person(key=4, gender="男"),  # a label is a recognised value of the code table
        person(key=5, gender="X"),
        person(key=6, ethnicity="66"),
        person(key=7, resident_id=rid("19900102", 11)[:-1] + ("0" if rid("19900102", 11)[-1] != "0" else "1")),
        person(key=8, resident_id="420102900102011", birth_date=dt.date(1990, 1, 2)),  # legacy 15-digit: valid
        person(key=9, household_region="428207"),
    ]
    evaluation = run(population(rows))
    assert failing(evaluation, "POP-REQ-name") == [1, 2]
    assert failing(evaluation, "POP-CODE-gender") == [4]
    assert failing(evaluation, "POP-CODE-ethnicity") == [5]
    assert failing(evaluation, "POP-ID-resident_id") == [6]
    assert failing(evaluation, "POP-CODE-household_region") == [8]
    messages = dict(zip(evaluation.findings.column("rule_id").to_pylist(), evaluation.findings.column("message").to_pylist()))
    assert "校验位错误" in messages["POP-ID-resident_id"]
    assert "性别“X”不在" in messages["POP-CODE-gender"]


def test_birth_gender_and_dates_against_the_id_and_reference_date() -> None:
    rows = [
        person(),
        person(key=2, birth_date=dt.date(1990, 1, 3)),
        person(key=3, gender="2"),
        person(key=4, gender="9"),  # 未说明 is not compared
        person(key=5, death_date=dt.date(2027, 1, 1)),
        person(key=6, death_date=dt.date(1980, 1, 1)),
        person(key=7, birth_date=None),  # missing: the required rule's business, not a mismatch
    ]
    evaluation = run(population(rows))
    assert failing(evaluation, "POP-IDBIRTH") == [1]
    assert failing(evaluation, "POP-IDGENDER") == [2]
    assert failing(evaluation, "POP-FUTURE-death_date") == [4]
    assert failing(evaluation, "POP-DEATH-AFTER-BIRTH") == [5]
    assert failing(evaluation, "POP-REQ-birth_date") == [6]
    text = " ".join(evaluation.findings.column("message").to_pylist())
    assert "1990-01-03 与公民身份号码中的 1990-01-02 不一致" in text and "晚于基准日期 2026-11-01" in text


def test_duplicates_are_the_later_rows_and_legacy_ids_match() -> None:
    legacy = "420102900102011"
    rows = [
        person(key=10),
        person(key=11, resident_id=legacy),  # the same person as 10, old number form
        person(key=10),  # the same record sent twice: an update, not a duplicate
        person(key=12, resident_id=rid("19800101", 21), birth_date=dt.date(1980, 1, 1)),
        person(key=13, resident_id=None),
        person(key=14, resident_id=None),
    ]
    evaluation = run(population(rows))
    assert failing(evaluation, "POP-DUP") == [1]
    assert evaluation.verdict.tolist() == [LOAD, MERGE, LOAD, LOAD, QUARANTINE, QUARANTINE]
    assert "与本数据源记录 10 重复" in evaluation.findings.filter(
        pa.compute.equal(evaluation.findings.column("rule_id"), "POP-DUP")).column("message")[0].as_py()


def test_verdict_and_row_conservation() -> None:
    rows = [person(key=k) for k in range(1, 4)] + [person(key=4, name=None), person(key=5, resident_id=rid("19900102", 11))]
    evaluation = run(population(rows))
    counts = evaluation.counts()
    assert counts["loaded"] + counts["quarantined"] + counts["merged"] == counts["rows"] == 5
    assert evaluation.verdict[3] == QUARANTINE


def test_format_rule_ignores_long_term_validity_but_reports_garbage() -> None:
    table = population([person(_errors="csrq: 无法识别的日期 unparseable date: 去年"), person(key=2)])
    assert failing(run(table), "POP-FORMAT") == [0]
    licence = pa.table({"licence_id": ["x"], "_source_key": ["k"], "_errors": ["有效期截止日期: 无法识别的日期 unparseable date: 长期"]})
    evaluation = evaluate(licence, RuleContext("licence_scjg", "r1", REFERENCE, load_catalogue("licence")),
                          [load_catalogue("licence").rule("LIC-FORMAT")])
    assert not evaluation.fail("LIC-FORMAT").any()


def test_uscc_failing_only_its_check_character_loads_with_a_warning() -> None:
    good = uscc(1234)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    table = pa.table({"uscc": [good, bad, "NOT-A-USCC"], "entity_name": ["甲公司", "乙公司", "丙公司"],
                      "_source_key": ["1", "2", "3"], "_errors": pa.nulls(3, pa.string())})
    evaluation = evaluate(table, RuleContext("scjg_qydj", "r1", REFERENCE, load_catalogue("legal_entity")))
    assert failing(evaluation, "ENT-IDCHK-uscc") == [1]
    assert failing(evaluation, "ENT-ID-uscc") == [2]
    assert evaluation.verdict.tolist()[:2] == [LOAD, LOAD] and evaluation.verdict[2] == QUARANTINE


def _anchor_tables() -> dict[str, pa.Table]:
    """Anchors: one person in 公安, one company in 市场监管, one marriage in 民政."""
    gongan = population([person(name="張 偉")])  # traditional characters and a stray space are not a conflict
    entities = pa.table({"uscc": [uscc(1)], "entity_name": ["武汉甲公司"], "_source_key": ["7"]})
    marriages = pa.table({"husband_resident_id": [rid("19900102", 11)], "wife_resident_id": [rid("19910101", 22)],
                          "marital_status": ["20"], "registration_date": pa.array([dt.date(2019, 5, 1)], pa.date32()),
                          "_source_key": ["HY1"]})
    from schemas.normalize import simplified

    gongan = gongan.set_column(gongan.column_names.index("name"), "name", simplified(gongan.column("name").combine_chunks())[0])
    return {"gongan_hjrk": gongan, "scjg_qydj": entities, "minzheng_hydj": marriages}


def _references() -> object:
    return build_references(_anchor_tables(), REFERENCE)


def test_references_from_the_needed_columns_equal_those_from_whole_sources() -> None:
    """The quality stage reads only needed_columns() of the anchor sources: every lookup must come out the same."""
    from quality.references import needed_columns, needed_sources

    tables = _anchor_tables()
    needed = needed_columns()
    assert set(needed) == set(needed_sources()) >= set(tables)
    projected = {source: table.select([c for c in table.column_names if c in needed[source] | {"_source_key"}])
                 for source, table in tables.items()}
    assert projected["gongan_hjrk"].num_columns < tables["gongan_hjrk"].num_columns
    whole, small = build_references(tables, REFERENCE), build_references(projected, REFERENCE)
    assert whole.ready == small.ready == {"persons", "entities", "registrations"}
    for name in ("persons", "entities", "registrations"):
        a, b = getattr(whole, name), getattr(small, name)
        assert len(a) >= 1
        assert [a.keys, a.values, a.source_ids, a.source_keys, a.details] == [b.keys, b.values, b.source_ids, b.source_keys, b.details]


def test_cross_source_comparison_names_both_sources_and_values() -> None:
    refs = _references()
    table = pa.table({"resident_id": [rid("19900102", 11), rid("19900102", 11), rid("19700101", 33)],
                      "name": ["张伟", "张为", "李四"], "employer_uscc": [uscc(1), uscc(1), None],
                      "employer_name": ["武汉甲公司", "武汉乙公司", None], "_source_key": ["a", "b", "c"],
                      "_errors": pa.nulls(3, pa.string())})
    evaluation = run(table, source="renshe_sbcb", references=refs)
    assert failing(evaluation, "POP-XSRC-NAME") == [1]
    assert failing(evaluation, "POP-XSRC-EMPLOYER") == [1]
    conflicts = evaluation.conflicts.to_pylist()
    name = next(c for c in conflicts if c["rule_id"] == "POP-XSRC-NAME")
    assert name["value"] == "张为" and name["reference_value"] == "张伟" and name["reference_source"] == "gongan_hjrk"
    assert name["reference_key"] == "1" and name["source_key"] == "b"


def test_marital_status_against_the_latest_registration() -> None:
    refs = _references()
    table = population([person(marital_status="20"), person(key=2, marital_status="10"), person(key=3, marital_status="30")])
    evaluation = run(table, references=refs)
    assert failing(evaluation, "POP-XSRC-MARITAL") == [1]
    assert "民政最近一次婚姻登记为结婚（2019-05-01）" in evaluation.findings.filter(
        pa.compute.equal(evaluation.findings.column("rule_id"), "POP-XSRC-MARITAL")).column("message")[0].as_py()


def test_referential_integrity_and_missing_references() -> None:
    refs = _references()
    stranger = rid("19650505", 55)
    table = pa.table({"licence_id": ["1", "2", "3", "4"], "holder_code": [rid("19900102", 11), uscc(1), stranger, None],
                      "_source_key": ["1", "2", "3", "4"], "_errors": pa.nulls(4, pa.string())})
    rule = load_catalogue("licence").rule("LIC-REF-HOLDER")
    found = evaluate(table, RuleContext("licence_zrzy", "r", REFERENCE, load_catalogue("licence"), refs), [rule])
    assert failing(found, "LIC-REF-HOLDER") == [2]
    assert "在人口库和法人库中均不存在" in found.findings.column("message")[0].as_py()
    assert "********" in found.findings.column("message")[0].as_py()  # never a full resident ID in a message
    blind = evaluate(table, RuleContext("licence_zrzy", "r", REFERENCE, load_catalogue("licence"), None), [rule])
    assert not blind.fail("LIC-REF-HOLDER").any() and "LIC-REF-HOLDER" in blind.skipped


def test_expired_licence_still_marked_valid() -> None:
    table = pa.table({"status": ["有效", "有效", "已过期", "有效"],
                      "valid_to": pa.array([dt.date(2026, 3, 1), dt.date(2027, 3, 1), dt.date(2026, 3, 1), None], pa.date32()),
                      "_source_key": ["1", "2", "3", "4"]})
    rule = load_catalogue("licence").rule("LIC-EXPIRED")
    evaluation = evaluate(table, RuleContext("licence_scjg", "r", REFERENCE, load_catalogue("licence")), [rule])
    assert failing(evaluation, "LIC-EXPIRED") == [0]
    assert evaluation.findings.column("severity")[0].as_py() == "warning"


def test_credit_record_naming_no_subject_code_is_quarantined() -> None:
    table = pa.table({"subject_uscc": [uscc(1), None, None], "subject_id_number": [None, rid("19900102", 11), None],
                      "_source_key": ["1", "2", "3"], "_errors": pa.nulls(3, pa.string())})
    rule = load_catalogue("credit").rule("CRD-SUBJECT-CODE")
    evaluation = evaluate(table, RuleContext("credit_xzcf", "r", REFERENCE, load_catalogue("credit")), [rule])
    assert failing(evaluation, "CRD-SUBJECT-CODE") == [2]
    assert evaluation.verdict.tolist() == [LOAD, LOAD, QUARANTINE]
    assert "至少须填写一项" in evaluation.findings.column("message")[0].as_py()
