"""CKAN Action API subset (opendata/ckan.py): CKAN's envelope and errors, and the real `ckanapi` client over uvicorn."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import ckanapi
import pytest
import requests
from fastapi.testclient import TestClient
from test_opendata_portal_fakes import portal_database, running_server, write_fake_releases

from hub import db
from opendata.ckan import resource_id
from opendata.portal import PortalConfig, create_portal

LEGAL = "legal-entity-registry"
V2 = "2026-11-02.1"
RELAXED = PortalConfig(rate=1000, burst=1000)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Fake releases plus a migrated hub database."""
    folder = tmp_path_factory.mktemp("ckan")
    write_fake_releases(folder)
    portal_database(folder)
    yield folder
    db.dispose_engines()


@pytest.fixture(scope="module")
def app(root: Path):
    """The portal app over the fake releases."""
    return create_portal(root, db.engine_for(f"sqlite:///{root / 'hub.db'}"), RELAXED)


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    """The portal on a real uvicorn server on a free loopback port."""
    with running_server(app) as url:
        yield url


@pytest.fixture
def client(app) -> TestClient:
    """An in-process client."""
    return TestClient(app)


def _call(client: TestClient, action: str, **params) -> tuple[int, dict]:
    """GET an action; (status, body)."""
    response = client.get(f"/api/3/action/{action}", params=params)
    return response.status_code, response.json()


def test_envelope_and_both_prefixes(client: TestClient) -> None:
    """Results come in {"help", "success", "result"} under /api/3/action/ and /api/action/, by GET and POST."""
    for prefix in ("/api/3/action", "/api/action"):
        body = client.get(f"{prefix}/package_list").json()
        assert body["success"] is True and body["result"] == ["admin-licensing", LEGAL, "population-by-region"]
        assert body["help"].endswith("/api/3/action/help_show?name=package_list")
    posted = client.post("/api/3/action/package_list", json={"limit": 1, "offset": 1}).json()
    assert posted["result"] == [LEGAL]
    assert client.get("/api/3").json() == {"version": 3}


def test_package_show_fields(client: TestClient, root: Path) -> None:
    """A package dict has CKAN's fields; resources carry url, format, size, hash, mimetype, last_modified."""
    status, body = _call(client, "package_show", id=LEGAL)
    package = body["result"]
    assert status == 200
    assert package["name"] == LEGAL and package["title"] == "法人登记信息" and package["notes"].startswith("全省企业")
    assert package["organization"]["name"] == "scjg" and package["organization"]["title"] == "省市场监督管理局"
    assert [t["name"] for t in package["tags"]] == ["法人", "企业登记", "统一社会信用代码"]
    assert package["version"] == V2 and package["metadata_modified"].startswith("2026-11-02")
    assert package["metadata_created"].startswith("2026-11-01")
    extras = {e["key"]: e["value"] for e in package["extras"]}
    assert extras["resource_code"] == "KF-SCJG-0001" and extras["update_frequency"] == "每日"
    manifest = json.loads((root / "opendata" / LEGAL / V2 / "manifest.json").read_text(encoding="utf-8"))
    resources = {r["name"]: r for r in package["resources"]}
    for entry in manifest["files"]:
        resource = resources[entry["name"]]
        assert resource["hash"] == entry["sha256"] and resource["size"] == entry["bytes"]
        assert resource["url"].startswith("http://testserver/opendata/datasets/")
        assert resource["last_modified"] == manifest["created_at"]
        assert resource["id"] == resource_id(LEGAL, V2, entry["name"])
    assert resources["data.csv"]["format"] == "CSV" and resources["data.csv"]["mimetype"] == "text/csv"
    assert resources["data.parquet"]["format"] == "PARQUET"
    assert {"manifest.json", "manifest.sig"} <= set(resources)


def test_errors_in_ckan_shape(client: TestClient) -> None:
    """404 Not Found Error, 409 Validation Error, 409 Search Query Error, 400 unknown action / bad JSON."""
    status, body = _call(client, "package_show", id="nope")
    assert status == 404 and body["success"] is False and body["error"]["__type"] == "Not Found Error"
    status, body = _call(client, "package_show")
    assert status == 409 and body["error"]["__type"] == "Validation Error" and "id" in body["error"]
    status, body = _call(client, "package_search", rows="many")
    assert status == 409 and body["error"]["rows"] == ["Invalid integer"]
    status, body = _call(client, "package_search", fq="colour:red")
    assert status == 409 and body["error"]["__type"] == "Search Query Error"
    status, body = _call(client, "package_search", sort="bogus desc")
    assert status == 409 and body["error"]["__type"] == "Search Query Error"
    status, body = _call(client, "package_create")
    assert status == 400 and body["error"]["message"] == "Bad request - Action name not known: package_create"
    bad = client.post("/api/3/action/package_show", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["__type"] == "Bad Request"
    status, body = _call(client, "resource_show", id="00000000-0000-0000-0000-000000000000")
    assert status == 404


def test_package_search(client: TestClient) -> None:
    """q (Chinese), fq on organization/tags/res_format/groups, rows/start, sort and facet.field → search_facets."""
    result = _call(client, "package_search", q="法人")[1]["result"]
    assert result["count"] == 2 and result["results"][0]["name"] == LEGAL
    assert _call(client, "package_search", fq="organization:scjg")[1]["result"]["count"] == 1
    assert _call(client, "package_search", fq='tags:"双公示"')[1]["result"]["results"][0]["name"] == "admin-licensing"
    assert _call(client, "package_search", fq="res_format:PARQUET")[1]["result"]["count"] == 2
    assert _call(client, "package_search", fq="res_format:csv -organization:scjg")[1]["result"]["count"] == 2
    assert _call(client, "package_search", fq="groups:信用服务 AND res_format:JSON")[1]["result"]["count"] == 1
    assert _call(client, "package_search", q="tags:户籍")[1]["result"]["count"] == 1
    assert _call(client, "package_search", q="*:*")[1]["result"]["count"] == 3
    page = _call(client, "package_search", rows=1, start=1, sort="name asc")[1]["result"]
    assert page["count"] == 3 and [p["name"] for p in page["results"]] == [LEGAL]
    titles = [p["name"] for p in _call(client, "package_search", sort="metadata_modified asc, name desc")[1]["result"]["results"]]
    assert titles == ["population-by-region", LEGAL, "admin-licensing"]
    facets = _call(client, "package_search", **{"facet.field": '["organization","res_format","tags","groups"]'})[1]["result"]
    assert facets["facets"]["res_format"] == {"CSV": 3, "JSON": 3, "PARQUET": 2}
    organization = facets["search_facets"]["organization"]
    assert organization["title"] == "organization"
    assert {"name": "scjg", "display_name": "省市场监督管理局", "count": 1} in organization["items"]
    assert _call(client, "package_search")[1]["result"]["search_facets"] == {}
    assert _call(client, "package_search", rows=1001)[0] == 409


def test_resource_organization_group_status_help(client: TestClient) -> None:
    """resource_show by id, organization_list / group_list (all_fields), status_show, help_show."""
    csv_id = resource_id(LEGAL, V2, "data.csv")
    resource = _call(client, "resource_show", id=csv_id)[1]["result"]
    assert resource["name"] == "data.csv" and resource["package_id"] == LEGAL
    assert sorted(_call(client, "organization_list")[1]["result"]) == ["fgw", "gat", "scjg"]
    organizations = _call(client, "organization_list", all_fields="true")[1]["result"]
    assert {o["name"]: o["package_count"] for o in organizations} == {"scjg": 1, "gat": 1, "fgw": 1}
    assert "信用服务" in _call(client, "group_list")[1]["result"]
    status = _call(client, "status_show")[1]["result"]
    assert status["ckan_version"].startswith("2.") and status["site_title"] == "政务开放数据门户"
    assert "Text query" in _call(client, "help_show", name="package_search")[1]["result"]


def test_ckanapi_client_against_uvicorn(server: str) -> None:
    """The real ckanapi client works by POST (default) and GET, and maps errors to its exceptions."""
    for get_only in (False, True):
        with ckanapi.RemoteCKAN(server, get_only=get_only) as ckan:
            assert ckan.action.package_list() == ["admin-licensing", LEGAL, "population-by-region"]
            package = ckan.action.package_show(id=LEGAL)
            assert package["organization"]["title"] == "省市场监督管理局"
            found = ckan.action.package_search(q="法人", fq="res_format:CSV", rows=5,
                                               **{"facet.field": json.dumps(["organization"]) if get_only else ["organization"]})
            assert found["count"] == 2 and found["search_facets"]["organization"]["items"]
            assert ckan.action.organization_list(all_fields=True)[0]["package_count"] == 1
            assert ckan.action.status_show()["ckan_version"]
            csv = next(r for r in package["resources"] if r["name"] == "data.csv")
            assert ckan.action.resource_show(id=csv["id"])["hash"] == csv["hash"]
            with pytest.raises(ckanapi.NotFound):
                ckan.action.package_show(id="nope")
            with pytest.raises(ckanapi.ValidationError):
                ckan.action.package_show()
    # The resource URL a CKAN client gets downloads the file with the advertised hash.
    downloaded = requests.get(csv["url"], timeout=10)
    assert downloaded.status_code == 200 and hashlib.sha256(downloaded.content).hexdigest() == csv["hash"]


RAW_TRAVERSALS = [
    f"/opendata/datasets/{LEGAL}/{V2}/files/../../../secret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/..%2f..%2f..%2fsecret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/..\\..\\..\\secret.txt",
    f"/opendata/datasets/{LEGAL}/../../secret.txt",
    "/opendata/static/../../../secret.txt",
    "/opendata/static/%2e%2e/%2e%2e/secret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
]


@pytest.mark.parametrize("path", RAW_TRAVERSALS)
def test_raw_traversal_over_http(server: str, path: str) -> None:
    """Unnormalised ../ sent byte for byte over a socket (no client-side cleanup) never reaches another file."""
    address = urlparse(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read().decode("utf-8", "replace")
    connection.close()
    assert response.status in {400, 404}, (path, response.status)
    assert "不应被下载" not in body
