"""Fake open-data releases in the release builder's layout, so the portal's tests need no real release build.

Layout (as opendata.store reads it): <data_root>/opendata/catalog.json ({"datasets": [...]}), keys.json, <dataset>/LATEST, <dataset>/<version>/{data.parquet,
data.csv, data.json, datapackage.json, dcat.jsonld, manifest.json, manifest.sig, diff/…}.
The other portal test modules import `write_fake_releases` from here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

MEDIA = {".parquet": "application/vnd.apache.parquet", ".csv": "text/csv", ".json": "application/json",
         ".jsonld": "application/ld+json"}

FIELDS = {
    "legal-entity-registry": [
        {"name": "uscc", "title": "统一社会信用代码", "type": "string", "description": "18 位统一社会信用代码",
         "constraints": {"required": True}},
        {"name": "name", "title": "名称", "type": "string", "description": "市场主体名称"},
        {"name": "established", "title": "成立日期", "type": "date", "description": "成立日期"},
    ],
    "population-by-region": [
        {"name": "region_code", "title": "行政区划代码", "type": "string", "description": "六位行政区划代码"},
        {"name": "population", "title": "户籍人口数", "type": "integer", "description": "小于 5 的单元格已抑制"},
    ],
    "admin-licensing": [
        {"name": "decision_no", "title": "许可决定书文号", "type": "string", "description": "文号"},
        {"name": "holder", "title": "行政相对人名称", "type": "string", "description": "自然人仅公开脱敏姓名"},
    ],
}

ROWS: dict[str, list[list[dict[str, Any]]]] = {
    "legal-entity-registry": [
        [{"uscc": "91330100MA27XXXX1A", "name": "杭州示例科技有限公司", "established": "2019-03-01"},
         {"uscc": "91330200MA28XXXX2B", "name": "宁波海港贸易有限公司", "established": "2020-07-15"},
         {"uscc": "92330300MA29XXXX3C", "name": "温州瓯江小吃店", "established": "2021-01-20"}],
        [{"uscc": "91330100MA27XXXX1A", "name": "杭州示例科技有限公司", "established": "2019-03-01"},
         {"uscc": "91330200MA28XXXX2B", "name": "宁波海港贸易有限公司", "established": "2020-07-15"},
         {"uscc": "92330300MA29XXXX3C", "name": "温州瓯江小吃店", "established": "2021-01-20"},
         {"uscc": "93330400MA2AXXXX4D", "name": "嘉兴南湖农业专业合作社", "established": "2026-10-30"}],
    ],
    "population-by-region": [
        [{"region_code": "330102", "population": 412345}, {"region_code": "330105", "population": 398001}],
    ],
    "admin-licensing": [
        [{"decision_no": "浙市监许〔2026〕1号", "holder": "杭州示例科技有限公司"}],
    ],
}

CATALOG = [
    {"id": "legal-entity-registry", "resource_code": "KF-SCJG-0001", "title": "法人登记信息",
     "description": "全省企业、个体工商户、农民专业合作社的登记事项：统一社会信用代码、名称、成立日期。",
     "provider_code": "scjg", "provider_name": "省市场监督管理局", "theme": "市场监管", "update_frequency": "每日",
     "open_attribute": "无条件开放", "keywords": ["法人", "企业登记", "统一社会信用代码"], "formats": ["parquet", "csv", "json"]},
    {"id": "population-by-region", "resource_code": "KF-GA-0001", "title": "户籍人口统计（按行政区划）",
     "description": "各县（市、区）户籍人口数，小单元格已抑制。", "provider_code": "gat", "provider_name": "省公安厅",
     "theme": "人口与社会", "update_frequency": "每月", "open_attribute": "无条件开放", "keywords": ["人口", "户籍", "行政区划"],
     "formats": ["parquet", "csv", "json"]},
    {"id": "admin-licensing", "resource_code": "KF-FGW-0001", "title": "行政许可信息（双公示）",
     "description": "各级行政机关作出的行政许可决定，法人登记相关许可也在其中。", "provider_code": "fgw",
     "provider_name": "省发展和改革委员会", "theme": "信用服务", "update_frequency": "每日", "open_attribute": "有条件开放",
     "keywords": ["行政许可", "双公示", "信用"], "formats": ["csv", "json"]},
]
VERSIONS = {"legal-entity-registry": ["2026-11-01.1", "2026-11-02.1"],
            "population-by-region": ["2026-10-15.1"], "admin-licensing": ["2026-11-02.1"]}


def _write(path: Path, data: bytes) -> dict[str, Any]:
    """Write bytes and return the manifest entry of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "media_type": MEDIA.get(path.suffix)}


def _release(folder: Path, item: dict[str, Any], version: str, previous: str | None, rows: list[dict[str, Any]],
             old_rows: list[dict[str, Any]] | None, created_at: str) -> None:
    """One version folder with every file, diff files when there is a previous version, manifest and signature."""
    frame = pd.DataFrame(rows)
    files: dict[str, bytes] = {}
    if "parquet" in item["formats"]:
        parquet = folder / "data.parquet"
        parquet.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(parquet, index=False)
        files["data.parquet"] = parquet.read_bytes()
    files["data.csv"] = frame.to_csv(index=False).encode("utf-8-sig")
    files["data.json"] = json.dumps(rows, ensure_ascii=False).encode()
    files["datapackage.json"] = json.dumps({"name": item["id"], "title": item["title"], "version": version,
                                            "resources": [{"name": "data", "path": "data.csv",
                                                           "schema": {"fields": FIELDS[item["id"]]}}]},
                                           ensure_ascii=False).encode()
    files["dcat.jsonld"] = json.dumps({"@context": {"dcat": "http://www.w3.org/ns/dcat#"}, "@type": "dcat:Dataset",
                                       "dct:title": item["title"]}, ensure_ascii=False).encode()
    if old_rows is not None:
        old = {json.dumps(r, sort_keys=True) for r in old_rows}
        added = [r for r in rows if json.dumps(r, sort_keys=True) not in old]
        files["diff/added.csv"] = pd.DataFrame(added).to_csv(index=False).encode("utf-8-sig")
        files["diff/summary.json"] = json.dumps({"added": len(added), "removed": 0, "changed": 0}).encode()
    entries = [dict(_write(folder / name, data), name=name) for name, data in files.items()]
    manifest = {"dataset_id": item["id"], "version": version, "previous_version": previous, "created_at": created_at,
                "rows": len(rows), "files": entries, "provenance": {"builder": "fake", "libraries": ["legal_entity"]}}
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
    (folder / "manifest.json").write_bytes(manifest_bytes)
    signature = {"algorithm": "Ed25519", "key_id": "opendata-2026",
                 "signature": base64.b64encode(hashlib.sha256(manifest_bytes).digest()).decode()}  # shape only, not a real signature
    (folder / "manifest.sig").write_text(json.dumps(signature), encoding="utf-8")


def write_fake_releases(data_root: Path) -> dict[str, Any]:
    """Write three datasets (one with two versions) under data_root/opendata; returns the catalogue."""
    root = data_root / "opendata"
    catalog = []
    for base in CATALOG:
        item = dict(base)
        versions = VERSIONS[item["id"]]
        item["versions"] = []
        previous = None
        for index, version in enumerate(versions):
            rows = ROWS[item["id"]][index]
            old = ROWS[item["id"]][index - 1] if index else None
            created = f"{version[:10]}T00:00:00+00:00"
            _release(root / item["id"] / version, item, version, previous, rows, old, created)
            item["versions"].append({"version": version, "created_at": created, "rows": len(rows)})
            previous = version
        item["latest_version"] = versions[-1]
        (root / item["id"] / "LATEST").write_text(versions[-1], encoding="utf-8")
        catalog.append(item)
    (root / "catalog.json").write_text(json.dumps({"datasets": catalog}, ensure_ascii=False, indent=2), encoding="utf-8")
    (root / "keys.json").write_text(json.dumps({"keys": [{"kid": "opendata-2026", "kty": "OKP", "crv": "Ed25519",
                                                          "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
                                    encoding="utf-8")
    (data_root / "secret.txt").write_text("不应被下载", encoding="utf-8")  # a file outside the releases: traversal target
    return {"datasets": catalog}


def test_fake_layout(tmp_path: Path) -> None:
    """The fake releases have the layout the portal reads: every manifest entry matches its file."""
    catalog = write_fake_releases(tmp_path)
    assert len(catalog["datasets"]) == 3
    folder = tmp_path / "opendata" / "legal-entity-registry" / "2026-11-02.1"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        assert hashlib.sha256((folder / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert (folder / "data.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert manifest["previous_version"] == "2026-11-01.1"


def portal_database(folder: Path) -> str:
    """URL of a migrated SQLite hub database in folder (the download counter needs its table)."""
    from hub import db

    url = f"sqlite:///{folder / 'hub.db'}"
    db.upgrade(url)
    return url


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
