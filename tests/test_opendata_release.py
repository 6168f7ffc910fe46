"""Open-data releases from a small hand-built library: files, Frictionless, DCAT, signature, immutability, reruns, diffs.

The library is written straight through the library specs' `database_rows` (personal data encrypted as the merge
would), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from hub.crypto import get_cipher, new_keyring_document
from hub.db import engine_for, upgrade
from hub.models import CreditRecord, LegalEntity, Licence, Person
from libraries.credit import LIBRARY as CREDIT
from libraries.legal_entity import LegalEntityLibrary
from libraries.licence import LIBRARY as LICENCE
from libraries.population import PopulationLibrary
from opendata import store
from opendata.datasets import get_dataset, load_datasets
from opendata.release import release, release_dataset
from schemas.identifiers import licence_id, org_code_check_char, resident_id_check_char, uscc_check_char

AT = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)  # 2026-12-01 10:00 Beijing
LEARNT = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
TYPE_CODE = "11100000008273417J001"
SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超"]


def resident_id(birth: str, sequence: int, region: str = "360102") -> str:
    """A valid 18-digit resident ID."""
    body = f"{region}{birth}{sequence:03d}"
    return body + resident_id_check_char(body)


def uscc(serial: int, category: str = "91", region: str = "360102") -> str:
    """A valid USCC."""
    org = f"{serial:08d}"
    body = f"{category}{region}{org}{org_code_check_char(org)}"
    return body + uscc_check_char(body)


def person_records() -> list[dict]:
    """60 people in two cities: three age groups, both genders, mostly 汉族, one 回族, one dead."""
    out = []
    for i in range(60):
        region = "360102" if i < 40 else "360402"
        birth = date(1990 + (i % 3) * 10, 1 + i % 12, 1 + i % 27)
        gender = "1" if i % 2 == 0 else "2"
        out.append({
            "id_number": resident_id(birth.strftime("%Y%m%d"), 10 + i * 2 + (0 if gender == "1" else 1), region),
            "name": SURNAMES[i % len(SURNAMES)] + GIVEN[i % len(GIVEN)] + ("" if i < 24 else GIVEN[(i * 7) % len(GIVEN)]),
            "gender": gender, "birth_date": birth, "ethnicity": "03" if i == 5 else "01", "region_code": region,
            "address": f"南昌市东湖区一路{i}号", "phone": f"1380000{i:04d}", "marital_status": "20" if i % 3 else "10",
            "death_date": date(2025, 1, 1) if i == 59 else None,
        })
    return out


PERSONS = person_records()
COMPANY, COMPANY2, SHOP, AUTHORITY = uscc(1), uscc(2), uscc(3, "92"), uscc(4, "11")


def _insert(engine: sa.Engine, table: sa.Table, rows: list[dict], source_id: str, run_id: str = "run-1") -> None:
    """Library rows with bookkeeping columns and a lineage naming a ruleset version."""
    lineage = {"name": {"source_id": source_id, "run_id": run_id, "ruleset_version": "rs-test1"}}
    with engine.begin() as connection:
        connection.execute(sa.insert(table), [{**r, "source_id": source_id, "run_id": run_id, "updated_at": LEARNT,
                                               "lineage": lineage} for r in rows])


def seed(url: str, persons: list[dict] | None = None) -> sa.Engine:
    """A migrated hub database holding a small library of each kind."""
    upgrade(url)
    engine = engine_for(url)
    cipher = get_cipher()
    persons = PERSONS if persons is None else persons
    _insert(engine, Person.__table__, PopulationLibrary().database_rows([cipher.person_key(p["id_number"]) for p in persons],
                                                                       persons), "gongan_hjrk")
    reps = PERSONS
    entities = [
        {"uscc": COMPANY, "name": "南昌鑫达商贸有限公司", "entity_kind": "enterprise", "entity_type": "有限责任公司",
         "legal_rep_name": reps[0]["name"], "legal_rep_id": reps[0]["id_number"], "registered_capital": Decimal("100.5"),
         "established_date": date(2015, 3, 4), "registration_authority": "南昌市东湖区市场监督管理局", "status": "存续",
         "address": "南昌市东湖区二路8号", "region_code": "360102", "business_scope": "-日用品销售"},
        {"uscc": COMPANY2, "name": "九江远航物流有限公司", "entity_kind": "enterprise", "entity_type": "股份有限公司",
         "legal_rep_name": reps[1]["name"], "legal_rep_id": reps[1]["id_number"], "registered_capital": Decimal("5000"),
         "established_date": date(2010, 6, 7), "registration_authority": "九江市市场监督管理局", "status": "存续",
         "address": "九江市浔阳区三路9号", "region_code": "360402", "business_scope": "=SUM(A1:A2) 货物运输"},
        {"uscc": SHOP, "name": "东湖区王记小吃店", "entity_kind": "individual_business", "entity_type": "个体工商户",
         "legal_rep_name": reps[7]["name"], "legal_rep_id": reps[7]["id_number"], "registered_capital": None,
         "established_date": date(2019, 1, 2), "registration_authority": "南昌市东湖区市场监督管理局", "status": "存续",
         "address": "南昌市东湖区四路1号", "region_code": "360102", "business_scope": "小吃服务"},
    ]
    _insert(engine, LegalEntity.__table__, LegalEntityLibrary().database_rows([e["uscc"] for e in entities], entities), "scjg_qydj")
    licences = [
        {"licence_name": "营业执照", "licence_type_code": TYPE_CODE, "licence_number": "N1", "issuer": "南昌市东湖区市场监督管理局",
         "issuer_code": AUTHORITY, "issue_date": date(2020, 5, 6), "holder_name": "南昌鑫达商贸有限公司", "holder_code": COMPANY,
         "holder_code_type": "001", "valid_from": date(2020, 5, 6), "valid_until": None, "status": "1",
         "face_content": {"名称": "南昌鑫达商贸有限公司"}, "related_licence_id": None},
        {"licence_name": "营业执照", "licence_type_code": TYPE_CODE, "licence_number": "N2", "issuer": "南昌市东湖区市场监督管理局",
         "issuer_code": AUTHORITY, "issue_date": date(2019, 1, 2), "holder_name": "东湖区王记小吃店", "holder_code": SHOP,
         "holder_code_type": "001", "valid_from": date(2019, 1, 2), "valid_until": None, "status": "1",
         "face_content": None, "related_licence_id": None},
        {"licence_name": "结婚证", "licence_type_code": TYPE_CODE, "licence_number": "N3", "issuer": "南昌市民政局",
         "issuer_code": AUTHORITY, "issue_date": date(2021, 1, 2), "holder_name": reps[2]["name"],
         "holder_code": reps[2]["id_number"], "holder_code_type": "111", "valid_from": date(2021, 1, 2),
         "valid_until": None, "status": "1", "face_content": {"姓名": reps[2]["name"]}, "related_licence_id": None},
    ]
    licence_keys = [licence_id(TYPE_CODE, AUTHORITY, str(i + 1)) for i in range(len(licences))]
    _insert(engine, Licence.__table__, LICENCE.database_rows(licence_keys, licences), "licence_scjg")
    credit = [
        ("credit_xzxk:1", {"record_type": "行政许可", "subject_name": "南昌鑫达商贸有限公司", "subject_kind": "02",
                           "subject_code": COMPANY, "decision_no": "洪许字〔2026〕1号", "decision_date": date(2026, 3, 1),
                           "authority": "南昌市行政审批局", "authority_code": AUTHORITY, "status": "1",
                           "content": {"legal_representative": reps[0]["name"], "permit_category": "1",
                                       "permit_certificate_name": "食品经营许可证", "permit_number": "JY1360102",
                                       "permit_valid_from": "2026-03-01", "permit_valid_to": "2031-02-28"}}),
        ("credit_xzxk:2", {"record_type": "行政许可", "subject_name": reps[3]["name"], "subject_kind": "01",
                           "subject_code": reps[3]["id_number"], "subject_id_type": "111", "decision_no": "洪许字〔2026〕2号",
                           "decision_date": date(2026, 4, 1), "authority": "南昌市行政审批局", "authority_code": AUTHORITY,
                           "status": "1", "content": {"permit_content": f"准予{reps[3]['name']}从事道路运输"}}),
        ("credit_xzxk:3", {"record_type": "行政许可", "subject_name": "东湖区王记小吃店", "subject_kind": "04",
                           "subject_code": SHOP, "decision_no": "洪许字〔2026〕3号", "decision_date": date(2026, 5, 1),
                           "authority": "南昌市行政审批局", "authority_code": AUTHORITY, "status": "1",
                           "content": {"legal_representative": reps[7]["name"]}}),
        ("credit_xzcf:1", {"record_type": "行政处罚", "subject_name": "九江远航物流有限公司", "subject_kind": "02",
                           "subject_code": COMPANY2, "decision_no": "浔市监罚〔2026〕9号", "decision_date": date(2026, 6, 1),
                           "authority": "九江市市场监督管理局", "authority_code": AUTHORITY, "status": None,
                           "content": {"legal_representative": reps[1]["name"], "violation_type": "超范围经营",
                                       "violation_facts": "+超出登记范围经营", "penalty_category": "2",
                                       "fine_amount": "1.5", "publicity_end_date": "2027-06-01"}}),
        ("credit_xzcf:2", {"record_type": "行政处罚", "subject_name": reps[4]["name"], "subject_kind": "01",
                           "subject_code": reps[4]["id_number"], "subject_id_type": "111", "decision_no": "洪公罚〔2026〕5号",
                           "decision_date": date(2026, 7, 1), "authority": "南昌市公安局", "authority_code": AUTHORITY,
                           "status": None, "content": {"violation_facts": f"{reps[4]['name']}无证驾驶", "fine_amount": "0.02"}}),
    ]
    _insert(engine, CreditRecord.__table__, CREDIT.database_rows([k for k, _ in credit], [r for _, r in credit]), "credit_xzxk")
    return engine


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch):
    """A fresh in-process key ring for each test."""
    monkeypatch.setenv("HUB_KEYRING", json.dumps(new_keyring_document()))
    get_cipher.cache_clear()
    yield get_cipher()
    get_cipher.cache_clear()


@pytest.fixture
def library(hub_db_url: str, keyring, tmp_path: Path):
    """(engine, data root) with the small library, on SQLite and PostgreSQL."""
    from licences import keys

    keys._cache_clear()
    engine = seed(hub_db_url)
    yield engine, tmp_path / "data"
    keys._cache_clear()


def all_ids() -> list[str]:
    return list(load_datasets())


def read_rows(root: Path, dataset_id: str, version: str = "latest", name: str = "data.json") -> list[dict]:
    return json.loads(store.file_path(root, dataset_id, version, name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------


def test_release_all_datasets_layout_and_contents(library) -> None:
    engine, root = library
    out = release(engine=engine, data_root=root, at=AT)
    assert out["failed"] == [], out["failed"]
    statuses = {r["dataset"]: r for r in out["results"]}
    assert set(statuses) == set(all_ids())
    assert all(r["status"] == "published" and r["version"] == "2026-12-01.1" for r in statuses.values())

    od = root / "opendata"
    catalog = json.loads((od / "catalog.json").read_text(encoding="utf-8"))["datasets"]
    assert {d["id"] for d in catalog} == set(all_ids())
    entry = store.dataset(root, "legal-entity-registry")
    assert entry["latest_version"] == "2026-12-01.1" and entry["versions"][0]["rows"] == 3
    assert entry["title"] == "法人登记信息" and entry["formats"] == ["parquet", "csv", "json"]
    assert (od / "legal-entity-registry" / "LATEST").read_text().strip() == "2026-12-01.1"
    assert json.loads((od / "keys.json").read_text())["keys"][0]["kid"]
    for dataset_id in all_ids():
        folder = od / dataset_id / "2026-12-01.1"
        names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {"data.parquet", "data.csv", "data.json", "datapackage.json", "dcat.jsonld", "manifest.json",
                "manifest.sig", "diff/added.parquet", "diff/added.csv", "diff/changed.csv", "diff/removed.parquet"} <= names
        assert store.verify_release(root, dataset_id)["ok"]
        assert not [p for p in (od / dataset_id).iterdir() if p.name.startswith(".tmp")]

    # Legal entities: registration facts in full; the individual business's operator masked; no ID numbers.
    rows = {r["uscc"]: r for r in read_rows(root, "legal-entity-registry")}
    assert rows[COMPANY]["legal_representative"] == PERSONS[0]["name"]  # a company's representative is public
    assert rows[SHOP]["legal_representative"] == PERSONS[7]["name"][0] + "*" * (len(PERSONS[7]["name"]) - 1)
    assert rows[COMPANY]["entity_kind"] == "企业" and rows[COMPANY]["region_name"] == "江西省南昌市东湖区"

    # Licences: only organisations' (not the individual business's, not the natural person's).
    assert [r["holder_code"] for r in read_rows(root, "enterprise-licences")] == [COMPANY]

    # 双公示: natural persons masked and pseudonymised, their names redacted from text.
    permits = {r["record_id"]: r for r in read_rows(root, "admin-licensing")}
    person = permits["credit_xzxk:2"]
    assert person["subject_code"] is None and len(person["subject_pseudonym"]) == 24
    assert person["subject_name"] == PERSONS[3]["name"][0] + "*" * (len(PERSONS[3]["name"]) - 1)
    assert PERSONS[3]["name"] not in person["permit_content"]
    assert permits["credit_xzxk:3"]["legal_representative"].endswith("*")
    assert permits["credit_xzxk:1"]["permit_category"] and permits["credit_xzxk:1"]["permit_valid_to"] == "2031-02-28"
    penalties = {r["record_id"]: r for r in read_rows(root, "admin-penalty")}
    assert penalties["credit_xzcf:1"]["fine_amount"] == 1.5
    assert PERSONS[4]["name"] not in json.dumps(penalties, ensure_ascii=False)

    # Population statistics: small cells suppressed, nothing below k published.
    cells = read_rows(root, "population-statistics")
    assert all(c["population"] is None or c["population"] >= 5 for c in cells)
    assert any(c["suppressed"] for c in cells) and any(not c["suppressed"] for c in cells)
    manifest = store.manifest(root, "population-statistics")
    assert manifest["provenance"]["suppressed"]["small_cells"]["suppressed_cells"] >= 1

    # Microdata: every combination of quasi-identifiers at least k times.
    micro = pq.read_table(store.file_path(root, "population-microdata", "latest", "data.parquet")).to_pylist()
    combos: dict[tuple, int] = {}
    for r in micro:
        key = tuple(r[q] for q in get_dataset("population-microdata").quasi_identifiers)
        combos[key] = combos.get(key, 0) + 1
    assert micro and min(combos.values()) >= 5
    provenance = store.manifest(root, "population-microdata")["provenance"]
    assert provenance["generalised"] and provenance["privacy_gate"]["passed"]
    assert provenance["suppressed"]["k_anonymity"]["rows_in"] == 59  # the dead person is not in the population

    # Provenance names the source runs and the ruleset versions found in the lineage.
    sources = store.manifest(root, "legal-entity-registry")["provenance"]["sources"][0]
    assert sources["source_runs"] == [{"source_id": "scjg_qydj", "run_id": "run-1", "rows": 3}]
    assert sources["ruleset_versions"] == ["rs-test1"]


def test_no_personal_identifier_in_any_file(library) -> None:
    engine, root = library
    release(engine=engine, data_root=root, at=AT)
    blob = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in (root / "opendata").rglob("*") if p.is_file()
                     and p.suffix in (".csv", ".json", ".jsonld"))
    for p in PERSONS:
        assert p["id_number"] not in blob and p["phone"] not in blob and p["address"] not in blob
    for p in (PERSONS[3], PERSONS[4], PERSONS[7]):  # natural-person subjects and an individual business's operator
        assert p["name"] not in blob


def test_frictionless_validates_datapackage(library) -> None:
    frictionless = pytest.importorskip("frictionless")
    engine, root = library
    release(engine=engine, data_root=root, at=AT)
    for dataset_id in all_ids():
        path = store.file_path(root, dataset_id, "latest", "datapackage.json")
        report = frictionless.validate(str(path))
        assert report.valid, (dataset_id, report.flatten(["rowNumber", "fieldName", "type", "note"])[:5])


def test_dcat_parses_with_rdflib(library) -> None:
    rdflib = pytest.importorskip("rdflib")
    engine, root = library
    release(engine=engine, data_root=root, at=AT)
    path = store.file_path(root, "admin-penalty", "latest", "dcat.jsonld")
    graph = rdflib.Graph().parse(path, format="json-ld")
    DCAT, SPDX = rdflib.Namespace("http://www.w3.org/ns/dcat#"), rdflib.Namespace("http://spdx.org/rdf/terms#")
    datasets = list(graph.subjects(rdflib.RDF.type, DCAT.Dataset))
    assert len(datasets) == 1
    distributions = list(graph.objects(datasets[0], DCAT.distribution))
    manifest = {f["name"]: f for f in store.manifest(root, "admin-penalty")["files"]}
    assert len(distributions) == 9  # data ×3, diff ×3 kinds ×2 formats
    for dist in distributions:
        url = str(graph.value(dist, DCAT.downloadURL))
        name = url.split("/2026-12-01.1/", 1)[1]
        assert int(graph.value(dist, DCAT.byteSize)) == manifest[name]["bytes"]
        checksum = graph.value(dist, SPDX.checksum)
        assert str(graph.value(checksum, SPDX.checksumValue)) == manifest[name]["sha256"]
        assert str(graph.value(dist, DCAT.mediaType)).endswith(manifest[name]["media_type"])


def test_csv_has_bom_and_neutralises_formulas(library) -> None:
    engine, root = library
    release(engine=engine, data_root=root, at=AT)
    raw = store.file_path(root, "legal-entity-registry", "latest", "data.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert "'=SUM(A1:A2) 货物运输" in text and "'-日用品销售" in text
    assert "\n=SUM" not in text and ",=SUM" not in text
    penalty = store.file_path(root, "admin-penalty", "latest", "data.csv").read_text(encoding="utf-8-sig")
    assert "'+超出登记范围经营" in penalty
    # JSON and Parquet keep the value as it is.
    rows = {r["uscc"]: r for r in read_rows(root, "legal-entity-registry")}
    assert rows[COMPANY2]["business_scope"] == "=SUM(A1:A2) 货物运输"


def test_rerun_unchanged_publishes_nothing_and_versions_are_immutable(library) -> None:
    engine, root = library
    first = release(["legal-entity-registry"], engine=engine, data_root=root, at=AT)["results"][0]
    folder = root / "opendata" / "legal-entity-registry" / first["version"]
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    again = release(["legal-entity-registry"], engine=engine, data_root=root, at=AT + timedelta(days=3))["results"][0]
    assert again["status"] == "unchanged" and again["version"] == first["version"]
    assert store.list_versions(root, "legal-entity-registry") == [first["version"]]

    # A change on the same day makes version .2; the first folder is untouched.
    with engine.begin() as connection:
        connection.execute(sa.update(LegalEntity.__table__).where(LegalEntity.__table__.c.uscc == COMPANY)
                           .values(status="注销"))
    second = release(["legal-entity-registry"], engine=engine, data_root=root, at=AT + timedelta(hours=1))["results"][0]
    assert second["version"] == "2026-12-01.2" and second["previous_version"] == "2026-12-01.1"
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert store.latest_version(root, "legal-entity-registry") == "2026-12-01.2"
    assert store.manifest(root, "legal-entity-registry")["previous_version"] == "2026-12-01.1"
    assert store.dataset(root, "legal-entity-registry")["versions"][0]["version"] == "2026-12-01.2"

    # Never going backwards: a release dated earlier continues the newest day's sequence.
    with engine.begin() as connection:
        connection.execute(sa.update(LegalEntity.__table__).where(LegalEntity.__table__.c.uscc == COMPANY)
                           .values(status="吊销"))
    third = release(["legal-entity-registry"], engine=engine, data_root=root, at=AT - timedelta(days=5))["results"][0]
    assert third["version"] == "2026-12-01.3"


def test_diff_added_changed_removed(library) -> None:
    engine, root = library
    release(["legal-entity-registry", "population-statistics"], engine=engine, data_root=root, at=AT)
    first_added = pq.read_table(store.file_path(root, "legal-entity-registry", "latest", "diff/added.parquet"))
    assert first_added.num_rows == 3  # the first release adds everything
    table = LegalEntity.__table__
    with engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.uscc == COMPANY).values(address="南昌市东湖区新地址1号"))
        connection.execute(sa.delete(table).where(table.c.uscc == COMPANY2))
        connection.execute(sa.insert(table).values(
            uscc=uscc(9), name="南昌新创科技有限公司", entity_kind="enterprise", legal_rep_name="新代表", status="存续",
            source_id="scjg_qydj", run_id="run-2", updated_at=LEARNT))
    release(["legal-entity-registry"], engine=engine, data_root=root, at=AT + timedelta(days=1))
    diff = {kind: pq.read_table(store.file_path(root, "legal-entity-registry", "latest", f"diff/{kind}.parquet")).to_pylist()
            for kind in ("added", "changed", "removed")}
    assert [r["uscc"] for r in diff["added"]] == [uscc(9)]
    assert [(r["uscc"], r["address"]) for r in diff["changed"]] == [(COMPANY, "南昌市东湖区新地址1号")]
    assert [(r["uscc"], r["name"]) for r in diff["removed"]] == [(COMPANY2, "九江远航物流有限公司")]
    csv_text = store.file_path(root, "legal-entity-registry", "latest", "diff/changed.csv").read_text(encoding="utf-8-sig")
    assert COMPANY in csv_text
    manifest = store.manifest(root, "legal-entity-registry")
    assert manifest["rows"] == {"data": 3, "diff_added": 1, "diff_changed": 1, "diff_removed": 1}
    assert manifest["version"] == "2026-12-02.1"


def test_aggregate_diff_is_by_cell(library) -> None:
    engine, root = library
    release(["population-statistics"], engine=engine, data_root=root, at=AT)
    before = {(c["region_code"], c["age_band"], c["gender"], c["ethnicity"]): c for c in read_rows(root, "population-statistics")}
    # Five newcomers in one new cell (南昌, born 1950), and one person of a big cell moves away.
    cipher = get_cipher()
    newcomers = [{"id_number": resident_id("19500101", 500 + 2 * i), "name": f"新{GIVEN[i]}", "gender": "1",
                  "birth_date": date(1950, 1, 1), "ethnicity": "01", "region_code": "360102"} for i in range(5)]
    rows = PopulationLibrary().database_rows([cipher.person_key(p["id_number"]) for p in newcomers], newcomers)
    _insert(engine, Person.__table__, rows, "gongan_hjrk", "run-2")
    release(["population-statistics"], engine=engine, data_root=root, at=AT + timedelta(days=31))
    diff = {kind: pq.read_table(store.file_path(root, "population-statistics", "latest", f"diff/{kind}.parquet")).to_pylist()
            for kind in ("added", "changed", "removed")}
    assert [(c["region_code"], c["age_band"], c["gender"], c["ethnicity"], c["population"]) for c in diff["added"]] == [
        ("360100", "75-79", "男", "汉族", 5)]
    assert diff["changed"] == [] and diff["removed"] == []  # no age band moved between the two dates
    assert all(key in before for key in [(c["region_code"], c["age_band"], c["gender"], c["ethnicity"])
                                         for c in read_rows(root, "population-statistics")] if key[1] != "75-79")


def test_parallel_release_publishes_the_same_files_as_one_process(library) -> None:
    """Two worker processes (as release_opendata's tasks run side by side) publish byte-identical releases."""
    engine, root = library
    one = release(engine=engine, data_root=root / "one", at=AT)
    two = release(engine=engine, data_root=root / "two", at=AT, workers=2)
    assert one["failed"] == two["failed"] == []
    assert [r["dataset"] for r in two["results"]] == [r["dataset"] for r in one["results"]] == all_ids()
    for dataset_id in all_ids():
        first, second = (store.opendata_dir(root / side) / dataset_id / "2026-12-01.1" for side in ("one", "two"))
        files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
        for name in files:
            assert (first / name).read_bytes() == (second / name).read_bytes(), (dataset_id, name)
        assert store.verify_release(root / "two", dataset_id)["ok"]
        recorded = json.loads((store.opendata_dir(root / "two") / dataset_id / ".inputs.json").read_text())
        assert recorded["version"] == "2026-12-01.1" and recorded["build_seconds"] > 0
    catalog = json.loads((store.opendata_dir(root / "two") / "catalog.json").read_text(encoding="utf-8"))["datasets"]
    assert {d["id"] for d in catalog} == set(all_ids())
    again = release(engine=engine, data_root=root / "two", at=AT + timedelta(hours=1), workers=2)
    assert {r["status"] for r in again["results"]} == {"unchanged"}


def test_parallel_release_reports_a_workers_gate_failure_and_publishes_the_rest(library) -> None:
    """A privacy-gate failure inside a worker fails that dataset only, with the gate's message."""
    engine, root = library
    with engine.begin() as connection:  # an ID number typed into a registration field: the real builder copies it
        connection.execute(sa.update(LegalEntity.__table__).where(LegalEntity.__table__.c.uscc == COMPANY)
                           .values(business_scope=f"经营者身份证 {PERSONS[2]['id_number']}"))
    out = release(engine=engine, data_root=root, at=AT, workers=2)
    assert [f["dataset"] for f in out["failed"]] == ["legal-entity-registry"]
    assert "resident_id" in out["failed"][0]["error"] and PERSONS[2]["id_number"] not in out["failed"][0]["error"]
    assert {r["dataset"] for r in out["results"]} == set(all_ids()) - {"legal-entity-registry"}
    assert all(r["status"] == "published" for r in out["results"])
    assert store.list_versions(root, "legal-entity-registry") == []


def test_not_open_dataset_is_skipped(library, monkeypatch) -> None:
    engine, root = library
    import opendata.release as module

    monkeypatch.setattr(module, "catalogue_open_attribute", lambda spec: "不予开放" if spec.id == "admin-penalty" else spec.open_attribute)
    out = release(["admin-penalty", "admin-licensing"], engine=engine, data_root=root, at=AT)
    assert [r["status"] for r in out["results"]] == ["not_open", "published"]
    assert store.list_versions(root, "admin-penalty") == []


def test_build_time_small_scale(library) -> None:
    engine, root = library
    out = release(engine=engine, data_root=root, at=AT)
    seconds = sum(r["seconds"] for r in out["results"])
    print(f"\nrelease build time, 6 datasets, small library: {seconds:.2f} s")
    assert seconds < 60


def test_portal_serves_real_releases_with_matching_checksums(library) -> None:
    """The portal and the CKAN API over releases the builder really made (not fixtures): every listed file downloads
    with the manifest's SHA-256, and the release verifies."""
    import hashlib

    from fastapi.testclient import TestClient

    from opendata.portal import PortalConfig, create_portal

    engine, root = library
    assert release(engine=engine, data_root=root, at=AT)["failed"] == []
    # Every file of every release in one burst: more than an anonymous client's rate limit allows, so widen it.
    client = TestClient(create_portal(root, engine, PortalConfig(rate=1000.0, burst=1000)))
    assert "法人登记信息" in client.get("/opendata/", params={"q": "法人登记"}).text
    package = client.get("/api/3/action/package_show", params={"id": "legal-entity-registry"}).json()
    assert package["success"] and package["result"]["name"] == "legal-entity-registry"
    for dataset_id in all_ids():
        manifest = store.manifest(root, dataset_id)
        for entry in manifest["files"]:
            response = client.get(f"/opendata/datasets/{dataset_id}/{manifest['version']}/files/{entry['name']}")
            assert response.status_code == 200, (dataset_id, entry["name"])
            assert hashlib.sha256(response.content).hexdigest() == entry["sha256"]
        assert store.verify_release(root, dataset_id)["ok"]
