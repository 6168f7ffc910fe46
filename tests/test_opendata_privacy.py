"""The privacy gate: a release with a planted ID number, phone, person name, k violation or small cell is not published."""

from __future__ import annotations

import pandas as pd
import pytest

from opendata import store
from opendata.builders import BUILDERS, population_microdata
from opendata.datasets import get_dataset
from opendata.privacy import (NameIndex, PrivacyGateError, age_bands, find_phones, find_resident_ids, k_anonymise,
                              Step, suppress_small_cells)
from opendata.release import release_dataset
from test_opendata_release import AT, PERSONS, SHOP, keyring, library, resident_id, uscc  # noqa: F401 - fixtures

LEGACY = PERSONS[10]["id_number"][:6] + PERSONS[10]["id_number"][8:17]  # 15-digit form


def planting(builder_name: str, column: str, value: str, row: int = 0):
    """A builder that returns the real dataset with one cell replaced."""
    def build(ctx):
        built = BUILDERS[builder_name](ctx)
        built.frame.loc[row, column] = value
        return built
    return build


def assert_nothing_published(root, dataset_id: str) -> None:
    folder = root / "opendata" / dataset_id
    assert store.list_versions(root, dataset_id) == []
    assert not (folder / "LATEST").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")] if folder.exists() else True
    assert dataset_id not in {d["id"] for d in store.list_datasets(root)}


# --- detectors ---------------------------------------------------------------------------------


def test_resident_id_detector_validates_check_characters() -> None:
    good = PERSONS[0]["id_number"]
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in good)
    cells = [f"身份证{good}号", wrong_check, "123456789012345678", LEGACY, f"x{full_width}", uscc(5, "12"), None,
             "11010519491231002x"]
    found = {row for row, _ in find_resident_ids(cells)}
    assert found == {0, 3, 4, 7}  # not the bad check character, random digits, or a USCC


def test_phone_detector() -> None:
    cells = ["电话13800001234", "+86 138-0000-1234", "138 0000 1234", "12345678901", "913600001380000123", "1380000123",
             "PDYMA81MB3X14228230129", "联系13800001234号"]  # a licence number's digit run is not a phone number
    assert [row for row, _ in find_phones(cells)] == [0, 1, 2, 7]


def test_k_anonymise_generalises_then_suppresses() -> None:
    frame = pd.DataFrame({"age": ["20-24"] * 6 + ["25-29"] * 3 + ["60-64"], "g": ["男"] * 10})
    ladder = [Step("age", "10岁一组", lambda s: s.map(lambda b: {"20-24": "20-29", "25-29": "20-29"}.get(b, b)))]
    out, report = k_anonymise(frame, ["age", "g"], 5, ladder)
    assert report["generalised"][0]["column"] == "age" and report["suppressed_rows"] == 1
    assert out["age"].tolist() == ["20-29"] * 9


def test_small_cells_and_age_bands() -> None:
    cells, report = suppress_small_cells(pd.DataFrame({"c": ["a", "b"], "n": [7, 3]}), "n", 5)
    assert cells["n"].tolist()[0] == 7 and pd.isna(cells["n"].tolist()[1]) and report["suppressed_cells"] == 1
    from datetime import date

    assert age_bands([date(2000, 12, 2), date(1900, 1, 1), None], date(2026, 12, 1)) == ["25-29", "85+", "未知"]


def test_name_index_exact_and_contained() -> None:
    names = NameIndex(["王芳", "欧阳娜娜", "张"])
    assert names.exact(" 王芳 ") == "王芳" and names.exact("王芳店") is None
    assert names.contained("联系人欧阳娜娜女士") == "欧阳娜娜" and names.contained("王芳店") is None
    assert names.exact("张") is None  # one-character names are not indexed


# --- the gate on real releases -------------------------------------------------------------------


def test_gate_fails_planted_resident_id(library) -> None:
    engine, root = library
    spec = get_dataset("legal-entity-registry")
    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT,
                        builder=planting("legal_entity_registry", "business_scope", f"经营者身份证 {PERSONS[2]['id_number']}"))
    message = str(caught.value)
    assert "legal-entity-registry" in message and "business_scope" in message and "resident_id" in message
    assert "data.csv" in message and "diff/added.csv" in message and "含公民身份号码" in message
    assert PERSONS[2]["id_number"] not in message  # the error never shows the number in clear
    assert_nothing_published(root, "legal-entity-registry")


def test_gate_fails_planted_legacy_id_and_phone(library) -> None:
    engine, root = library
    spec = get_dataset("admin-penalty")
    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT,
                        builder=planting("admin_penalty", "violation_facts", f"旧证 {LEGACY}"))
    assert "violation_facts" in str(caught.value) and "resident_id" in str(caught.value)
    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT,
                        builder=planting("admin_penalty", "penalty_content", "联系电话 139-1234-5678"))
    assert "penalty_content" in str(caught.value) and "phone" in str(caught.value) and "含手机号码" in str(caught.value)
    assert_nothing_published(root, "admin-penalty")


def test_gate_fails_planted_person_name(library) -> None:
    engine, root = library
    spec = get_dataset("legal-entity-registry")
    shop_row = 2  # rows are ordered by USCC: the 92… individual business comes last
    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT,
                        builder=planting("legal_entity_registry", "legal_representative", PERSONS[7]["name"], shop_row))
    assert "legal_representative" in str(caught.value) and "person_name" in str(caught.value)
    assert_nothing_published(root, "legal-entity-registry")
    # A company's representative is a public registration fact: the same kind of cell on a company row passes.
    out = release_dataset(spec, engine=engine, data_root=root, at=AT,
                          builder=planting("legal_entity_registry", "legal_representative", PERSONS[7]["name"], 0))
    assert out["status"] == "published"


def test_gate_fails_name_in_person_level_table(library) -> None:
    engine, root = library
    spec = get_dataset("population-microdata")
    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT,
                        builder=planting("population_microdata", "region_name", f"江西省{PERSONS[30]['name']}"))
    assert "region_name" in str(caught.value) and "person_name" in str(caught.value)


def test_gate_fails_k_violation(library) -> None:
    engine, root = library
    spec = get_dataset("population-microdata")

    def no_anonymisation(ctx):
        built = population_microdata(ctx)
        built.frame.loc[0, ["age_band", "gender"]] = ["0-4", "女"]  # a combination nobody else has
        return built

    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT, builder=no_anonymisation)
    message = str(caught.value)
    assert "k_anonymity" in message and "population-microdata" in message and "少于 k=5" in message
    assert_nothing_published(root, "population-microdata")


def test_gate_fails_unsuppressed_small_cell(library) -> None:
    engine, root = library
    spec = get_dataset("population-statistics")

    def unsuppressed(ctx):
        built = BUILDERS["population_statistics"](ctx)
        built.frame["population"] = built.frame["population"].fillna(2)
        built.frame["suppressed"] = False
        return built

    with pytest.raises(PrivacyGateError) as caught:
        release_dataset(spec, engine=engine, data_root=root, at=AT, builder=unsuppressed)
    assert "small_cell" in str(caught.value) and "population" in str(caught.value)
    assert_nothing_published(root, "population-statistics")
