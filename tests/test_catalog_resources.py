"""The sharing catalogue: generated from the data elements, registry and decisions; Chinese search; negative list."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import schemas.elements as elements
from catalog import resources as catalogue
from catalog.lists import negative_list
from catalog.search import grams, search

CORE_KEYS = {"code", "name", "classification", "provider_code", "provider_name", "summary", "format", "items",
             "sharing_type", "sharing_conditions", "sharing_method", "legal_basis", "open_attribute",
             "update_frequency", "published", "related"}


@pytest.fixture
def fresh_catalogue() -> Iterator[None]:
    """Rebuild the catalogue before and after a test that changes its inputs (request it before monkeypatch)."""
    catalogue.refresh()
    yield
    elements._load.cache_clear()
    catalogue.refresh()


def test_every_resource_has_the_core_metadata() -> None:
    """Each resource carries GB/T 21063's core metadata; items name, label, type and sensitivity."""
    resources = catalogue.all_resources()
    assert len(resources) >= 15
    for resource in resources:
        assert CORE_KEYS <= set(resource), resource["code"]
        assert resource["sharing_type"] in catalogue.SHARING_TYPES
        assert resource["open_attribute"] in catalogue.OPEN_ATTRIBUTES
        for item in resource["items"]:
            assert {"name", "label", "type", "sensitivity"} <= set(item)
            assert 1 <= item["sensitivity"] <= 4
        if resource["sharing_type"] != "无条件共享":
            assert resource["legal_basis"], resource["code"]


def test_items_providers_and_frequency_come_from_the_elements_and_registry() -> None:
    """RK.basic: items from population.csv, provider 公安 (from sources.yaml), promised daily; related siblings."""
    basic = catalogue.get_resource("RK.basic")
    by_name = {item["name"]: item for item in basic["items"]}
    assert by_name["resident_id"] == {**by_name["resident_id"], "label": "公民身份号码", "type": "string", "sensitivity": 4}
    assert basic["provider_code"] == "gongan" and basic["provider_name"] == "省公安厅"
    assert "gongan_hjrk" in basic["sources"]
    assert basic["update_frequency"] == "每日"
    assert "RK.household" in basic["related"] and "RK.basic" not in basic["related"]
    debtor = catalogue.get_resource("XY.dishonest_debtor")
    assert debtor["provider_code"] == "court" and debtor["update_frequency"] == "每日"
    assert {"subject_name", "case_number"} <= {i["name"] for i in debtor["items"]}  # common + own group
    licence = catalogue.get_resource("DZZZ.licence_weijian")
    assert licence["provider_code"] == "weijian" and licence["sharing_type"] == "有条件共享"
    with pytest.raises(catalogue.UnknownResource):
        catalogue.get_resource("NO.such")


def test_an_added_element_appears_as_a_resource_item(fresh_catalogue: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a row to an element CSV is all it takes for the catalogue item to appear."""
    folder = tmp_path / "elements"
    shutil.copytree(elements.ELEMENT_DIR, folder)
    with (folder / "population.csv").open("a", encoding="utf-8") as handle:
        handle.write("blood_type,string,血型,false,3,有条件共享,,,basic,\n")
    monkeypatch.setattr(elements, "ELEMENT_DIR", folder)
    elements._load.cache_clear()
    catalogue.refresh()
    item = next(i for i in catalogue.get_resource("RK.basic")["items"] if i["name"] == "blood_type")
    assert item["label"] == "血型" and item["sensitivity"] == 3 and item["sharing"] == "有条件共享"
    assert search("血型")[0]["code"] == "RK.basic"


def test_open_datasets_are_registered(fresh_catalogue: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entry of opendata/datasets.yaml becomes a resource with its own code, provider and open attribute."""
    path = tmp_path / "datasets.yaml"
    path.write_text("datasets:\n  - id: test-set\n    resource_code: KF-TEST-0001\n    title: 测试开放数据集\n"
                    "    description: 全省养老机构名录\n    provider_code: minzheng\n    theme: 社会民生\n"
                    "    update_frequency: 每月\n    open_attribute: 有条件开放\n    legal_basis: 测试依据\n",
                    encoding="utf-8")
    monkeypatch.setattr(catalogue, "DATASETS_FILE", path)
    catalogue.refresh()
    resource = catalogue.get_resource("KF-TEST-0001")
    assert resource["kind"] == "open_dataset" and resource["provider_name"] == "省民政厅"
    assert resource["open_attribute"] == "有条件开放" and resource["update_frequency"] == "每月"
    assert search("养老机构")[0]["code"] == "KF-TEST-0001"


def test_a_conditional_resource_without_legal_basis_is_refused(fresh_catalogue: None, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """有条件/不予共享 must cite a legal basis."""
    decisions = catalogue.load_decisions()
    decisions["resources"]["RK.status"] = {"sharing_type": "不予共享"}
    path = tmp_path / "resources.yaml"
    import yaml

    path.write_text(yaml.safe_dump(decisions, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(catalogue, "DECISIONS_FILE", path)
    with pytest.raises(catalogue.CatalogueError, match="法律依据"):
        catalogue.refresh()


@pytest.mark.parametrize(("query", "expected"), [
    ("婚姻", "RK.marriage"), ("户籍地址", "RK.household"), ("失信被执行人", "XY.dishonest_debtor"),
    ("经营异常", "XY.abnormal_operation"), ("卫生健康委员会", "DZZZ.licence_weijian"), ("RK.status", "RK.status"),
])
def test_chinese_search_ranks_the_right_resource_first(query: str, expected: str) -> None:
    """Character n-gram search finds resources by name, item labels, provider or code."""
    assert search(query)[0]["code"] == expected


def test_search_filters() -> None:
    """Filters narrow the hits; an empty query lists everything matching the filters."""
    hits = search("", {"sharing_type": "不予共享"})
    assert [h["code"] for h in hits] == ["FR.contact"]
    assert all(h["resource"]["provider_code"] == "fgw" for h in search("信息", {"provider_code": "fgw"}))
    assert grams("行政处罚")["处罚"] == 1


def test_negative_list_cites_the_legal_basis() -> None:
    """负面清单: FR.contact, 不予共享, with its legal basis."""
    rows = negative_list()
    contact = next(r for r in rows if r["resource_code"] == "FR.contact")
    assert contact["scope"] == "整个资源" and "个人信息保护法" in contact["legal_basis"]
    assert all(r["legal_basis"] for r in rows)


def test_cli_list_show_search(capsys: pytest.CaptureFixture[str]) -> None:
    """hub catalog list|show|search."""
    import json

    from hub.cli import main

    assert main(["catalog", "list"]) == 0
    assert "RK.basic" in capsys.readouterr().out
    assert main(["catalog", "show", "XY.admin_penalty"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "行政处罚信息（双公示）"
    assert main(["catalog", "search", "行政处罚"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["code"] == "XY.admin_penalty"
    assert main(["catalog", "show", "NO.such"]) == 1
