"""`hub quality …`: file checks (CSV in GBK, Excel, JSON; standard or Chinese headers), rules, tickets, clear errors."""

from __future__ import annotations

import json

import pytest

from hub.cli import main
from test_quality_rules import rid

BAD = rid("19881111", 31)[:-1] + ("0" if rid("19881111", 31)[-1] != "0" else "1")


def lines(capsys) -> list[dict]:
    """The JSON lines the command printed."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_check_a_gbk_csv_with_chinese_headers(tmp_path, capsys) -> None:
    path = tmp_path / "人口.csv"
    rows = ["公民身份号码,姓名,性别,出生日期,户籍地行政区划,民族,备注",
            f"{rid('19900102', 11)},张伟,1,1990年1月2日,420102,01,",
            f"{BAD},李四,1,1988-11-11,420102,01,",
            f"{rid('19851231', 22)},,1,19851231,420102,66,",
            f"{rid('19900102', 11)},張偉,男,1990/1/2,420102,01,"]
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("gbk"))
    assert main(["quality", "check", "--library", "population", str(path), "--reference-date", "2026-11-01"]) == 0
    output = lines(capsys)
    findings, summary = output[:-1], output[-1]["summary"]
    got = {(f["row"], f["rule"]) for f in findings}
    assert got == {(2, "POP-ID-resident_id"), (3, "POP-REQ-name"), (3, "POP-IDGENDER"), (3, "POP-CODE-ethnicity"), (4, "POP-DUP")}
    first = next(f for f in findings if f["rule"] == "POP-ID-resident_id")
    assert first["field"] == "resident_id" and first["column"] == "公民身份号码" and first["severity"] == "error"
    assert "校验位错误" in first["message"]
    assert summary["rows"] == 4 and summary["errors"] == 5 and summary["ignored_columns"] == {str(path): ["备注"]}
    assert "POP-XSRC-MARITAL" not in summary["not_checked_here"]  # a 公安-only agreement, not a file rule
    assert summary["columns"][str(path)]["公民身份号码"] == "resident_id"


def test_check_excel_and_json_with_standard_headers(tmp_path, capsys) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["uscc", "entity_name", "legal_representative", "establishment_date", "registered_address", "status"])
    sheet.append(["91350100M000100Y43", "甲公司", "张三", "2010-01-01", "福州市", "存续"])
    sheet.append(["91350100M000100Y4Z", "乙公司", "李四", "2030-01-01", "福州市", "未知"])
    workbook.save(tmp_path / "entities.xlsx")
    (tmp_path / "entities.json").write_text(json.dumps([{"uscc": "NOT-A-USCC", "entity_name": "丙", "status": "1"}],
                                                       ensure_ascii=False), encoding="utf-8")
    assert main(["quality", "check", "--library", "legal_entity", str(tmp_path / "entities.xlsx"), str(tmp_path / "entities.json"),
                 "--reference-date", "2026-11-01"]) == 0
    output = lines(capsys)
    rules = {(f["file"], f["row"], f["rule"], f["severity"]) for f in output[:-1]}
    assert ("entities.xlsx", 2, "ENT-IDCHK-uscc", "warning") in rules  # a failed check character is a warning
    assert ("entities.xlsx", 2, "ENT-FUTURE-establishment_date", "error") in rules
    assert ("entities.xlsx", 2, "ENT-CODE-status", "error") in rules
    assert ("entities.json", 1, "ENT-ID-uscc", "error") in rules
    assert output[-1]["summary"]["files"] == 2


def test_unreadable_and_missing_files_are_clear_errors(tmp_path, capsys) -> None:
    garbage = tmp_path / "bad.csv"
    garbage.write_bytes(b"\x00\x01\x02binary\xff\xfe")
    assert main(["quality", "check", "--library", "population", str(garbage), str(tmp_path / "absent.csv")]) == 1
    output = lines(capsys)
    assert "无法读取" in output[0]["error"] and "不存在" in output[1]["error"]
    assert output[-1]["summary"]["unreadable_files"]


def test_rules_listing_and_unknown_department(capsys, hub_settings) -> None:
    assert main(["quality", "rules", "--library", "credit"]) == 0
    rules = lines(capsys)
    assert any(r["id"] == "CRD-REF-SUBJECT" and r["dimension"] == "关联性" for r in rules)
    assert all(r["library"] == "credit" for r in rules)
    assert main(["quality", "tickets", "--department", "nowhere"]) == 1
    assert "未知部门" in capsys.readouterr().err
    assert main(["quality", "tickets", "--department", "省公安厅"]) == 0  # a Chinese name works as well as the code
    assert main(["quality", "evaluate", "--world", str(hub_settings.data_root / "no-world")]) == 1
    assert "world.json" in capsys.readouterr().err


def test_suite_export_is_the_generated_suite(capsys) -> None:
    pytest.importorskip("great_expectations")
    assert main(["quality", "suite", "--library", "licence"]) == 0
    suite = json.loads(capsys.readouterr().out)
    assert suite["name"] == "licence"
    assert {e["meta"]["rule_id"] for e in suite["expectations"]} >= {"LIC-EXPIRED", "LIC-REF-HOLDER", "LIC-ID-licence_id"}
