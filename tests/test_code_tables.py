"""Code tables: every table loads, holds the expected entries, and can be overridden without code."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest

from schemas import build_region_table
from schemas.code_tables import BUILTIN_DIR, CODE_TABLE_DIR_ENV, CodeTableError, clear_cache, load_table, table_index, table_names
from schemas.identifiers import check_usccs

EXPECTED_TABLES = {
    "regions", "gender", "marital_status", "ethnicity", "holder_id_types", "licence_types", "credit_record_types",
    "uscc_departments", "uscc_categories", "subject_categories", "licence_categories", "penalty_categories",
    "enterprise_status", "credit_status", "licence_status", "sharing_types", "sensitivity_grades", "departments",
}


@pytest.fixture(autouse=True)
def _fresh_tables(monkeypatch: pytest.MonkeyPatch):
    """No override directory unless a test sets one; no table cached across tests."""
    monkeypatch.delenv(CODE_TABLE_DIR_ENV, raising=False)
    clear_cache()
    yield
    clear_cache()


def test_every_table_loads_and_is_indexed() -> None:
    assert EXPECTED_TABLES <= set(table_names())
    index = table_index()
    for name in EXPECTED_TABLES:
        table = load_table(name)
        assert len(table) > 0 and table.title == index[name]["title"]
        assert len(set(table.codes)) == len(table.codes)
        assert all(row["label"] for row in table.rows), name


def test_tables_are_cached_per_file_version() -> None:
    assert load_table("gender") is load_table("gender")


def test_gender_and_marital_status() -> None:
    gender = load_table("gender")
    assert gender.codes == ("0", "1", "2", "9")
    assert gender.label("1") == "男" and gender.label("2") == "女"
    marital = load_table("marital_status")
    assert marital.codes == ("10", "20", "21", "22", "23", "30", "40", "90")
    assert marital.label("20") == "已婚" and marital.label("40") == "离婚"


def test_ethnicity_has_56_groups_plus_other_and_foreign_origin() -> None:
    table = load_table("ethnicity")
    assert table.codes == tuple(f"{i:02d}" for i in range(1, 57)) + ("97", "98")
    assert table.label("01") == "汉族" and table.label("56") == "基诺族" and table.label("97") == "其他"
    assert len(set(table.column("label"))) == 58
    assert all(label.endswith("族") for label in table.column("label")[:56])
    assert table.row("05")["alpha"] == "UG"


def test_holder_id_types_and_small_tables() -> None:
    assert load_table("holder_id_types").label("111") == "公民身份号码"
    assert load_table("holder_id_types").label("001") == "统一社会信用代码"
    assert load_table("subject_categories").column("label") == ("自然人", "法人", "非法人组织", "个体工商户")
    assert set(load_table("credit_record_types").column("label")) == {"行政许可", "行政处罚", "失信被执行人", "经营异常名录", "红名单", "黑名单"}
    assert set(load_table("enterprise_status").column("label")) >= {"存续", "在业", "吊销", "注销", "迁出"}
    assert set(load_table("licence_categories").column("label")) == {"普通", "特许", "认可", "核准", "登记", "其他"}
    assert load_table("penalty_categories").code_for_label("罚款") == "02"
    assert load_table("credit_status").label("1") == "有效"
    assert load_table("sharing_types").column("label") == ("无条件共享", "有条件共享", "不予共享")


def test_uscc_department_and_category_codes() -> None:
    departments = load_table("uscc_departments")
    assert {"1", "5", "9", "N", "Y", "A"} <= set(departments.codes)
    categories = load_table("uscc_categories")
    assert categories.label("91") == "企业" and categories.label("92") == "个体工商户" and categories.label("93") == "农民专业合作社"
    assert categories.label("51") == "社会团体" and categories.label("11") == "机关" and categories.label("12") == "事业单位"
    assert all(row["code"][0] == row["department"] and row["department"] in departments for row in categories.rows)


def test_regions_current_historical_and_provincial_direct() -> None:
    regions = load_table("regions")
    assert regions.label("110105") == "朝阳区" and regions.label("110000") == "北京市"
    assert regions.row("110103")["valid_to"] == "2010"  # 崇文区, retired
    assert regions.label("110103", year=2005) == "崇文区" and regions.label("110103", year=2015) is None
    assert regions.label("429000") == "省直辖县级行政区划" and regions.label("429004") == "仙桃市"
    assert regions.row("469000")["level"] == "provincial_direct"
    assert {"710000", "810000", "820000"} <= set(regions.codes)
    assert regions.contains_vector(["110105", "110103", "999999", None]).tolist() == [True, True, False, False]
    assert regions.contains_vector(["110105", "110103", "110111"], years=[2015, 2015, 1980]).tolist() == [True, False, False]
    assert regions.labels_vector(["110105", "nope"]).tolist() == ["朝阳区", None]
    assert len(regions) > 6000


def test_region_codes_reissued_with_new_names() -> None:
    regions = load_table("regions")
    names = [row["label"] for row in regions.rows if row["code"] == "120110"]
    assert names == ["东郊区", "东丽区"]
    assert regions.label("120110", year=1990) == "东郊区" and regions.label("120110") == "东丽区"


def test_region_table_is_in_sync_with_stdnum(tmp_path: Path) -> None:
    """The shipped CSV is exactly what the build script makes of the installed loc.dat."""
    output = tmp_path / "regions.csv"
    build_region_table.main([str(output)])
    assert output.read_text(encoding="utf-8") == (BUILTIN_DIR / "regions.csv").read_text(encoding="utf-8")


def test_departments_have_valid_simulated_usccs() -> None:
    departments = load_table("departments")
    assert {"gongan", "scjg", "minzheng", "renshe", "court", "zrzy", "weijian", "zhujian", "shuiwu", "jiaotong"} <= set(departments.codes)
    assert check_usccs(departments.column("uscc")).valid.all()
    assert "SIMULATED" in table_index()["departments"]["note"]


def test_licence_types_have_valid_type_codes_and_known_departments() -> None:
    types = load_table("licence_types")
    labels = set(types.column("label"))
    assert {"营业执照", "医疗机构执业许可证", "建筑业企业资质证书", "不动产权证书", "结婚证", "离婚证",
            "食品经营许可证", "药品经营许可证", "道路运输经营许可证"} <= labels
    departments = load_table("departments")
    for row in types.rows:
        assert re.fullmatch(r"[0-9A-Z]{18}\d{3}", row["type_code"]) and row["type_code"][:18] == row["defining_body_uscc"]
        assert row["department"] in departments
    assert check_usccs(types.column("defining_body_uscc")).valid.all()
    assert len(set(types.column("type_code"))) == len(types)
    assert "SIMULATED" in table_index()["licence_types"]["note"]


def test_override_directory_replaces_one_table_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gender.csv").write_text("code,label\n1,男性\n2,女性\n", encoding="utf-8")
    (tmp_path / "tables.yaml").write_text("gender:\n  title: 性别（本省）\n", encoding="utf-8")
    (tmp_path / "local_extra.csv").write_text("code,label\nA,甲\n", encoding="utf-8")
    monkeypatch.setenv(CODE_TABLE_DIR_ENV, str(tmp_path))
    gender = load_table("gender")
    assert gender.codes == ("1", "2") and gender.label("1") == "男性" and gender.title == "性别（本省）"
    assert load_table("ethnicity").label("01") == "汉族"  # not overridden: built-in file
    assert "local_extra" in table_names() and load_table("local_extra").label("A") == "甲"


def test_edited_file_is_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gender.csv"
    path.write_text("code,label\n1,男\n", encoding="utf-8")
    monkeypatch.setenv(CODE_TABLE_DIR_ENV, str(tmp_path))
    assert load_table("gender").codes == ("1",)
    path.write_text("code,label\n1,男\n2,女\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    assert load_table("gender").codes == ("1", "2")


def test_bom_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bom.csv").write_bytes("code,label\n1,甲\n".encode("utf-8-sig"))
    (tmp_path / "nolabel.csv").write_text("code,name\n1,x\n", encoding="utf-8")
    monkeypatch.setenv(CODE_TABLE_DIR_ENV, str(tmp_path))
    assert load_table("bom").label("1") == "甲"
    with pytest.raises(CodeTableError):
        load_table("nolabel")
    with pytest.raises(CodeTableError):
        load_table("does_not_exist")


def test_every_csv_is_utf8_with_code_and_label() -> None:
    for path in BUILTIN_DIR.glob("*.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle))
        assert header[:2] == ["code", "label"], path.name


def test_index_vector_marks_unknown_as_minus_one() -> None:
    table = load_table("gender")
    index = table.index_vector(np.array(["1", "x", "9"]))
    assert index[1] == -1 and (index[[0, 2]] >= 0).all()
