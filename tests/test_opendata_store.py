"""Reading releases (what the portal uses): checksums and signature verify, tampering is detected, no path traversal; CLI."""

from __future__ import annotations

import json

import pytest

from hub.cli import main
from opendata import store
from opendata.release import release
from test_opendata_release import AT, keyring, library  # noqa: F401 - fixtures


@pytest.fixture
def released(library):
    engine, root = library
    assert release(["legal-entity-registry", "population-statistics"], engine=engine, data_root=root, at=AT)["failed"] == []
    return engine, root


def test_verify_release_ok(released) -> None:
    _, root = released
    result = store.verify_release(root, "legal-entity-registry", "latest")
    assert result["ok"] and result["signature"]["ok"] and result["version"] == "2026-12-01.1"
    assert all(f["ok"] for f in result["files"]) and len(result["files"]) == 11
    sig = json.loads(store.file_path(root, "legal-entity-registry", "latest", "manifest.sig").read_text())
    assert sig["algorithm"] == "Ed25519" and sig["key_id"] == json.loads((root / "opendata" / "keys.json").read_text())["keys"][0]["kid"]


def test_tampered_data_file_detected(released) -> None:
    _, root = released
    path = store.file_path(root, "legal-entity-registry", "latest", "data.csv")
    path.write_bytes(path.read_bytes().replace("存续".encode(), "注销".encode(), 1))
    result = store.verify_release(root, "legal-entity-registry")
    assert not result["ok"] and result["signature"]["ok"]
    assert any("data.csv" in e and "SHA-256" in e for e in result["errors"])


def test_tampered_manifest_detected(released) -> None:
    _, root = released
    path = store.file_path(root, "population-statistics", "latest", "manifest.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    document["rows"]["data"] += 1
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    result = store.verify_release(root, "population-statistics")
    assert not result["ok"] and not result["signature"]["ok"] and "签名无效" in result["signature"]["reason"]


def test_extra_file_and_foreign_key_detected(released) -> None:
    _, root = released
    folder = root / "opendata" / "legal-entity-registry" / "2026-12-01.1"
    (folder / "diff" / "evil.csv").write_text("x")
    result = store.verify_release(root, "legal-entity-registry")
    assert not result["ok"] and any("evil.csv" in e for e in result["errors"])
    other = store.verify_release(root, "population-statistics", keys_document={"keys": []})
    assert not other["ok"] and "公钥集中没有签名密钥" in other["signature"]["reason"]


def test_file_path_refuses_traversal(released) -> None:
    _, root = released
    assert store.file_path(root, "legal-entity-registry", "2026-12-01.1", "diff/added.csv").is_file()
    for name in ("../LATEST", "../../keys.json", "/etc/passwd", "diff/../data.csv", "", "nothing.csv", "..\\x"):
        with pytest.raises(store.ReleaseNotFound):
            store.file_path(root, "legal-entity-registry", "latest", name)
    for dataset_id, version in (("../opendata", "latest"), ("legal-entity-registry", "../x"), ("missing", "latest"),
                                ("legal-entity-registry", "2020-01-01.1")):
        with pytest.raises(store.ReleaseNotFound):
            store.file_path(root, dataset_id, version, "data.csv")


def test_store_lists_and_reads(released) -> None:
    _, root = released
    assert {d["id"] for d in store.list_datasets(root)} == {"legal-entity-registry", "population-statistics"}
    assert store.dataset(root, "population-statistics")["open_attribute"] == "无条件开放"
    assert store.manifest(root, "legal-entity-registry", "2026-12-01.1")["dataset_id"] == "legal-entity-registry"
    assert store.list_datasets(root / "opendata") == store.list_datasets(root)  # the opendata folder itself works too
    with pytest.raises(store.ReleaseNotFound):
        store.dataset(root, "admin-penalty")


def test_cli_release_list_verify(library, capsys, monkeypatch) -> None:
    engine, root = library
    url = engine.url.render_as_string(hide_password=False)
    args = ["opendata", "--url", url, "--data-root", str(root)]
    assert main([*args, "release", "--dataset", "enterprise-licences"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["status"] == "published"
    assert main([*args, "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["id"] == "enterprise-licences" and listed[0]["latest_version"]
    assert main([*args, "verify", "enterprise-licences"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    path = store.file_path(root, "enterprise-licences", "latest", "data.json")
    path.write_text("[]", encoding="utf-8")
    assert main([*args, "verify", "enterprise-licences", listed[0]["latest_version"]]) == 1
    capsys.readouterr()
    assert main([*args, "verify", "no-such-dataset"]) == 1
    assert main([*args, "release", "--dataset", "no-such-dataset"]) == 1
    capsys.readouterr()
    assert main([*args, "release", "--workers", "0"]) == 1
    assert "--workers" in capsys.readouterr().err
