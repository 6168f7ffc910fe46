"""Open-data portal (opendata/portal.py): pages, search and facets, downloads and their counts, protections."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_opendata_portal_fakes import portal_database, write_fake_releases

from hub import db
from opendata.portal import DownloadCounter, PortalConfig, TokenBuckets, create_portal, human_size, normalise_text

LEGAL = "legal-entity-registry"
V1, V2 = "2026-11-01.1", "2026-11-02.1"
RELAXED = PortalConfig(rate=1000, burst=1000)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, sa.Engine]]:
    """Fake releases and a migrated SQLite hub database, shared by the module's tests."""
    root = tmp_path_factory.mktemp("portal")
    write_fake_releases(root)
    url = portal_database(root)
    yield root, db.engine_for(url)
    db.dispose_engines()


@pytest.fixture
def client(site: tuple[Path, sa.Engine]) -> TestClient:
    """A client of a portal without a practical rate limit."""
    return TestClient(create_portal(site[0], site[1], RELAXED))


def _manifest(root: Path, version: str = V2) -> dict:
    """The fake release's manifest."""
    return json.loads((root / "opendata" / LEGAL / version / "manifest.json").read_text(encoding="utf-8"))


def _count(engine: sa.Engine, version: str, name: str) -> int:
    """Downloads recorded for one file."""
    return DownloadCounter(engine).counts(LEGAL).get((LEGAL, version, name), 0)


def test_home_lists_datasets_with_facet_counts(client: TestClient) -> None:
    """The home page is Chinese, lists every dataset and counts each facet value."""
    page = client.get("/opendata/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert 'lang="zh-CN"' in text and "共 3 个数据集" in text
    for label in ("提供方", "主题", "格式", "更新频率"):
        assert f"<h2>{label}</h2>" in text
    assert "省市场监督管理局</a> <span class=\"count\">1</span>" in text
    assert "CSV</a> <span class=\"count\">3</span>" in text and "PARQUET</a> <span class=\"count\">2</span>" in text
    assert "每日</a> <span class=\"count\">2</span>" in text
    assert client.get("/opendata", follow_redirects=False).status_code == 308
    assert client.get("/", follow_redirects=False).headers["location"] == "/opendata/"


def test_search_chinese_text_ranks_title_first(client: TestClient) -> None:
    """A Chinese query matches titles, keywords and descriptions; title matches rank first; traditional characters work."""
    for query in ("法人", "法人登記", "法人　登记"):  # ideographic space splits terms too
        text = client.get("/opendata/", params={"q": query}).text
        assert text.count('class="dataset"') == 2, query
        assert text.index("法人登记信息") < text.index("行政许可信息（双公示）")
    assert "共 1 个数据集" in client.get("/opendata/", params={"q": "户籍"}).text  # a keyword only
    assert "共 1 个数据集" in client.get("/opendata/", params={"q": "法人 许可"}).text  # every term must occur
    empty = client.get("/opendata/", params={"q": "不存在的主题"}).text
    assert "共 0 个数据集" in empty and "没有找到符合条件的数据集" in empty
    assert normalise_text("ＡＢＣ 戶籍") == "abc 户籍"


def test_facet_filters_combine(client: TestClient) -> None:
    """Facet values filter (AND across facets) and the other facets' counts follow the filter."""
    text = client.get("/opendata/", params={"theme": "信用服务"}).text
    assert "共 1 个数据集" in text and "行政许可信息" in text and "法人登记信息</a>" not in text
    both = client.get("/opendata/", params=[("frequency", "每日"), ("format", "PARQUET")]).text
    assert "共 1 个数据集" in both and "法人登记信息" in both
    none = client.get("/opendata/", params=[("provider", "gat"), ("frequency", "每日")]).text
    assert "共 0 个数据集" in none


def test_dataset_page(client: TestClient, site: tuple[Path, sa.Engine]) -> None:
    """Metadata, data dictionary, 20-row preview, versions, files with sizes and SHA-256, diffs, integrity links."""
    manifest = _manifest(site[0])
    text = client.get(f"/opendata/datasets/{LEGAL}").text
    assert "<h1 id=\"dataset-title\">法人登记信息</h1>" in text
    assert "统一社会信用代码" in text and "成立日期" in text  # data dictionary titles
    assert "嘉兴南湖农业专业合作社" in text and "数据预览（前 4 行）" in text
    assert V1 in text and V2 in text and "（最新）" in text
    for entry in manifest["files"]:
        assert entry["sha256"] in text
        assert f"/opendata/datasets/{LEGAL}/{V2}/files/{entry['name']}" in text
    assert "diff/added.csv" in text and "与上一版本的差异" in text
    for link in ("files/manifest.json", "files/manifest.sig", "files/dcat.jsonld", "/opendata/keys.json", "release.zip"):
        assert link in text
    old = client.get(f"/opendata/datasets/{LEGAL}", params={"version": V1}).text
    assert "嘉兴南湖农业专业合作社" not in old and "查看最新版本" in old
    assert client.get("/opendata/datasets/admin-licensing").text.count("暂无预览") == 1
    assert client.get("/opendata/datasets/nope").status_code == 404
    assert client.get(f"/opendata/datasets/{LEGAL}", params={"version": "19990101"}).status_code == 404
    assert human_size(263) == "263 B" and human_size(2521) == "2.5 KB" and human_size(5 * 1024**3) == "5.0 GB"


def test_download_headers_and_count(client: TestClient, site: tuple[Path, sa.Engine]) -> None:
    """A download has Content-Type, Content-Length, ETag = SHA-256, a UTF-8 filename; it is counted once per GET."""
    root, engine = site
    entry = next(f for f in _manifest(root)["files"] if f["name"] == "data.csv")
    url = f"/opendata/datasets/{LEGAL}/{V2}/files/data.csv"
    before = _count(engine, V2, "data.csv")
    response = client.get(url)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == entry["sha256"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert int(response.headers["content-length"]) == entry["bytes"]
    assert response.headers["etag"] == f'"{entry["sha256"]}"'
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"filename*=UTF-8''{quote('法人登记信息')}_{V2}_data.csv" in disposition
    assert f'filename="{LEGAL}_{V2}_data.csv"' in disposition
    assert _count(engine, V2, "data.csv") == before + 1
    # Not counted: HEAD, a conditional request answered 304, a range request.
    assert client.head(url).headers["content-length"] == str(entry["bytes"])
    assert client.get(url, headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    assert client.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    assert _count(engine, V2, "data.csv") == before + 1
    client.get(url)
    assert _count(engine, V2, "data.csv") == before + 2
    parquet = client.get(f"/opendata/datasets/{LEGAL}/{V2}/files/data.parquet")
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    diff = client.get(f"/opendata/datasets/{LEGAL}/{V2}/files/diff/added.csv")
    assert diff.status_code == 200 and "嘉兴南湖农业专业合作社" in diff.content.decode("utf-8-sig")
    assert _count(engine, V2, "diff/added.csv") >= 1
    page = client.get(f"/opendata/datasets/{LEGAL}").text
    assert f'<td class="count">{before + 2}</td>' in page


def test_latest_redirects_to_pinned_version(client: TestClient) -> None:
    """'latest' in a download URL redirects to the concrete version, so a saved link stays reproducible."""
    response = client.get(f"/opendata/datasets/{LEGAL}/latest/files/data.json", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"].endswith(f"/{V2}/files/data.json")


def test_manifest_signature_and_keys(client: TestClient, site: tuple[Path, sa.Engine]) -> None:
    """The manifest and its signature are served (though not listed in the manifest); keys.json is JSON."""
    folder = site[0] / "opendata" / LEGAL / V2
    manifest = client.get(f"/opendata/datasets/{LEGAL}/{V2}/files/manifest.json")
    assert manifest.content == (folder / "manifest.json").read_bytes()
    assert manifest.headers["etag"] == f'"{hashlib.sha256(manifest.content).hexdigest()}"'
    assert client.get(f"/opendata/datasets/{LEGAL}/{V2}/files/manifest.sig").content == (folder / "manifest.sig").read_bytes()
    keys = client.get("/opendata/keys.json")
    assert keys.status_code == 200 and keys.headers["content-type"] == "application/json"
    assert keys.json()["keys"][0]["crv"] == "Ed25519"


def test_bulk_zip_is_streamed_and_complete(client: TestClient, site: tuple[Path, sa.Engine]) -> None:
    """release.zip holds every manifest file plus the manifest and signature, byte for byte; it is counted."""
    root, engine = site
    before = _count(engine, V2, "release.zip")
    response = client.get(f"/opendata/datasets/{LEGAL}/{V2}/release.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "content-length" not in response.headers  # streamed while it is zipped
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    folder = f"{LEGAL}-{V2}"
    for entry in _manifest(root)["files"]:
        assert hashlib.sha256(archive.read(f"{folder}/{entry['name']}")).hexdigest() == entry["sha256"]
    assert {f"{folder}/manifest.json", f"{folder}/manifest.sig"} <= set(archive.namelist())
    assert _count(engine, V2, "release.zip") == before + 1


TRAVERSALS = [
    f"/opendata/datasets/{LEGAL}/{V2}/files/..%2F..%2F..%2Fsecret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/%252e%252e%252fsecret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/..%5c..%5c..%5csecret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/%2Fetc%2Fpasswd",
    f"/opendata/datasets/{LEGAL}/{V2}/files//etc/passwd",
    f"/opendata/datasets/{LEGAL}/..%2F..%2F/files/secret.txt",
    f"/opendata/datasets/..%2F..%2F/{V2}/files/secret.txt",
    f"/opendata/datasets/{LEGAL}/{V2}/files/data.csv%00.json",
    f"/opendata/datasets/{LEGAL}/{V2}/files/LATEST",
    f"/opendata/datasets/{LEGAL}/{V2}/files/../../../secret.txt",
    f"/opendata/datasets/{LEGAL}/%2e%2e/release.zip",
    f"/opendata/datasets/{LEGAL}/{V2}/files/diff/../../../../secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_refused(client: TestClient, path: str) -> None:
    """No encoding of ../ (or an absolute path, a NUL, a file outside the manifest) reaches another file."""
    response = client.get(path)
    assert response.status_code in {400, 404}, path
    assert "不应被下载" not in response.text and "root:" not in response.text


def test_security_headers(client: TestClient) -> None:
    """Pages, errors, downloads and the API carry CSP with frame-ancestors, nosniff and a referrer policy."""
    for path in ("/opendata/", "/opendata/datasets/nope", f"/opendata/datasets/{LEGAL}/{V2}/files/data.csv",
                 "/api/3/action/package_list", "/opendata/static/portal.css"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert headers["x-frame-options"] == "DENY"
    assert "<style>" not in client.get("/opendata/").text  # the CSP forbids inline styles


def test_rate_limit_per_ip(site: tuple[Path, sa.Engine]) -> None:
    """Past the burst an anonymous client gets 429 with Retry-After and a Chinese message; trusted tokens pass."""
    config = PortalConfig(rate=0.5, burst=3, trusted_tokens=frozenset({"known-client-token"}))
    client = TestClient(create_portal(site[0], site[1], config))
    assert [client.get("/opendata/").status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/opendata/")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    assert "请求过于频繁" in limited.text and limited.headers["x-content-type-options"] == "nosniff"
    api = client.get("/api/3/action/package_list")
    assert api.status_code == 429 and api.json()["success"] is False and "请求过于频繁" in api.json()["error"]["message"]
    assert client.get("/opendata/static/portal.css").status_code == 200  # the stylesheet is not limited
    trusted = client.get("/opendata/", headers={"Authorization": "Bearer known-client-token"})
    assert trusted.status_code == 200
    assert client.get("/opendata/", headers={"Authorization": "Bearer guessed"}).status_code == 429


def test_token_bucket_refills_and_forgets_idle_clients() -> None:
    """Tokens come back at the configured rate; idle clients are pruned beyond max_clients."""
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=2, max_clients=2, clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("a") == 0
    buckets.take("b")
    now[0] = 10
    buckets.take("c")
    assert len(buckets._buckets) <= 2


def test_request_size_limits(site: tuple[Path, sa.Engine]) -> None:
    """Oversized bodies (declared or chunked) get 413 and overlong URLs 414, before any action runs."""
    client = TestClient(create_portal(site[0], site[1], PortalConfig(rate=1000, burst=1000, max_body_bytes=1024)))
    big = json.dumps({"q": "x" * 5000})
    response = client.post("/api/3/action/package_search", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "请求体过大" in response.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    assert client.post("/api/3/action/package_search", content=chunks()).status_code == 413
    assert client.get("/opendata/", params={"q": "法" * 3000}).status_code == 414
    small = client.post("/api/3/action/package_search", json={"q": "法人"})
    assert small.status_code == 200 and small.json()["result"]["count"] == 2


def test_download_counter_upsert_on_each_backend(hub_db_url: str) -> None:
    """One UPSERT per download counts correctly on SQLite and PostgreSQL."""
    db.upgrade(hub_db_url)
    try:
        counter = DownloadCounter(db.engine_for(hub_db_url))
        for _ in range(3):
            counter.hit(LEGAL, V2, "data.csv")
        counter.hit(LEGAL, V1, "data.csv")
        assert counter.counts(LEGAL) == {(LEGAL, V2, "data.csv"): 3, (LEGAL, V1, "data.csv"): 1}
        assert counter.totals() == {LEGAL: 4}
    finally:
        db.dispose_engines()


def test_counter_failure_never_breaks_a_download(tmp_path: Path) -> None:
    """Without the table (database not migrated) downloads still work; the failure is only logged."""
    write_fake_releases(tmp_path)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    client = TestClient(create_portal(tmp_path, engine, RELAXED))
    assert client.get(f"/opendata/datasets/{LEGAL}/{V2}/files/data.json").status_code == 200
    assert client.get(f"/opendata/datasets/{LEGAL}").status_code == 200
    engine.dispose()


def test_empty_data_root(tmp_path: Path) -> None:
    """Before the first release the portal answers with an empty catalogue, and CKAN with empty lists."""
    client = TestClient(create_portal(tmp_path, None, RELAXED))
    assert "共 0 个数据集" in client.get("/opendata/").text
    assert client.get("/api/3/action/package_list").json()["result"] == []
    assert client.get("/opendata/keys.json").status_code == 404


def test_portal_cli_is_registered() -> None:
    """`hub portal serve --help` exists."""
    from hub.cli import build_parser

    args = build_parser().parse_args(["portal", "serve", "--port", "9999", "--rate", "2"])
    assert args.port == 9999 and args.rate == 2 and args.handler.__name__ == "run_serve"
