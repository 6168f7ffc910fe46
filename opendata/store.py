"""Reading the published open data (what the portal uses): catalogue, releases, files, verification.

开放数据发布目录读取。Layout under `<data_root>/opendata/`:

    catalog.json                       list of datasets (metadata, latest_version, versions, formats)
    keys.json                          public release keys (JWK, Ed25519)
    <dataset_id>/LATEST                the latest version id (text)
    <dataset_id>/<version>/            data.parquet data.csv data.json datapackage.json dcat.jsonld
                                       manifest.json manifest.sig diff/{added,changed,removed}.{parquet,csv}

Every function takes the data root (the folder holding `opendata/`; the `opendata` folder itself is accepted too).
Version folders are immutable; `version` may be 'latest'.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from opendata.formats import sha256_file

VERSION_PATTERN = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d+)$")
DATASET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SIGNED = ("manifest.json", "manifest.sig")
LATEST = "latest"


class ReleaseNotFound(LookupError):
    """No such dataset, version or file (or a name that tries to leave the release folder)."""


def opendata_dir(root: Path | str) -> Path:
    """The `opendata` folder of a data root (or the folder itself when given it)."""
    root = Path(root)
    if root.name == "opendata" or (root / "catalog.json").exists() and not (root / "opendata").exists():
        return root
    return root / "opendata"


def version_key(version: str) -> tuple[str, int]:
    """Sort key of a version id: (date, sequence)."""
    match = VERSION_PATTERN.match(version)
    if not match:
        raise ValueError(f"版本标识无效 invalid version id {version!r}")
    return match.group(1), int(match.group(2))


def _dataset_dir(root: Path | str, dataset_id: str) -> Path:
    """The folder of a dataset, refusing ids that are not slugs."""
    if not DATASET_PATTERN.match(dataset_id or ""):
        raise ReleaseNotFound(f"开放数据集标识无效 invalid dataset id {dataset_id!r}")
    return opendata_dir(root) / dataset_id


def list_versions(root: Path | str, dataset_id: str) -> list[str]:
    """Published version ids of a dataset, oldest first (temporary build folders are not versions)."""
    folder = _dataset_dir(root, dataset_id)
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name) and (p / "manifest.json").exists()]
    return sorted(found, key=version_key)


def latest_version(root: Path | str, dataset_id: str) -> str | None:
    """The version LATEST points at (None before the first release)."""
    path = _dataset_dir(root, dataset_id) / "LATEST"
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8").strip()
    return text if VERSION_PATTERN.match(text) else None


def resolve_version(root: Path | str, dataset_id: str, version: str = LATEST) -> str:
    """A concrete version id ('latest' resolved); ReleaseNotFound if it is not published."""
    if version == LATEST:
        found = latest_version(root, dataset_id)
        if found is None:
            raise ReleaseNotFound(f"开放数据集 {dataset_id} 尚无发布版本 no release yet")
        return found
    if not VERSION_PATTERN.match(version or ""):
        raise ReleaseNotFound(f"版本标识无效 invalid version {version!r}")
    if not (_dataset_dir(root, dataset_id) / version / "manifest.json").exists():
        raise ReleaseNotFound(f"开放数据集 {dataset_id} 没有版本 {version}")
    return version


def list_datasets(root: Path | str) -> list[dict[str, Any]]:
    """The open catalogue (catalog.json): one dict per dataset with metadata, latest_version, versions, formats."""
    path = opendata_dir(root) / "catalog.json"
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["datasets"]


def dataset(root: Path | str, dataset_id: str) -> dict[str, Any]:
    """One catalogue entry; ReleaseNotFound if the dataset is not in the open catalogue."""
    _dataset_dir(root, dataset_id)
    for entry in list_datasets(root):
        if entry["id"] == dataset_id:
            return entry
    raise ReleaseNotFound(f"开放目录中没有数据集 {dataset_id}")


def manifest(root: Path | str, dataset_id: str, version: str = LATEST) -> dict[str, Any]:
    """The manifest.json of a release (files, rows, provenance, previous version…)."""
    resolved = resolve_version(root, dataset_id, version)
    return json.loads((_dataset_dir(root, dataset_id) / resolved / "manifest.json").read_text(encoding="utf-8"))


def file_path(root: Path | str, dataset_id: str, version: str, name: str) -> Path:
    """The path of one file of a release: only files its manifest lists (plus manifest.json/.sig); no traversal."""
    resolved = resolve_version(root, dataset_id, version)
    folder = (_dataset_dir(root, dataset_id) / resolved).resolve()
    if not name or "\\" in name or name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        raise ReleaseNotFound(f"文件名无效 invalid file name {name!r}")
    listed = set(SIGNED) | {f["name"] for f in manifest(root, dataset_id, resolved)["files"]}
    if name not in listed:
        raise ReleaseNotFound(f"发布 {dataset_id}/{resolved} 中没有文件 {name}")
    path = (folder / name).resolve()
    if folder not in path.parents:
        raise ReleaseNotFound(f"文件名越界 file name escapes the release folder: {name!r}")
    return path


def keys(root: Path | str) -> dict[str, Any]:
    """keys.json: the public release keys."""
    path = opendata_dir(root) / "keys.json"
    if not path.exists():
        raise ReleaseNotFound("尚未发布公钥 keys.json missing")
    return json.loads(path.read_text(encoding="utf-8"))


def verify_release(root: Path | str, dataset_id: str, version: str = LATEST,
                   keys_document: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a release: manifest signature against keys.json, then size and SHA-256 of every listed file, and no
    unlisted file. Returns {ok, dataset, version, signature: {ok, key_id, reason}, files: [...], errors: [...]}."""
    from opendata.signing import verify

    resolved = resolve_version(root, dataset_id, version)
    folder = _dataset_dir(root, dataset_id) / resolved
    errors: list[str] = []
    manifest_bytes = (folder / "manifest.json").read_bytes()
    try:
        signature = json.loads((folder / "manifest.sig").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        signature = {}
    try:
        trusted = keys_document if keys_document is not None else keys(root)
    except ReleaseNotFound as error:
        trusted = {"keys": []}
        errors.append(str(error))
    sig_ok, reason = verify(signature, manifest_bytes, trusted) if signature else (False, "缺少或无法读取 manifest.sig")
    if not sig_ok:
        errors.append(f"manifest.sig: {reason}")
    document = json.loads(manifest_bytes)
    if document.get("dataset_id") != dataset_id or document.get("version") != resolved:
        errors.append("manifest.json 所述数据集或版本与目录不符")
    files = []
    for entry in document.get("files", []):
        path = folder / entry["name"]
        if not path.is_file():
            files.append({"name": entry["name"], "ok": False, "reason": "文件缺失"})
        elif path.stat().st_size != entry["bytes"]:
            files.append({"name": entry["name"], "ok": False, "reason": f"大小不符（{path.stat().st_size} ≠ {entry['bytes']}）"})
        elif sha256_file(path) != entry["sha256"]:
            files.append({"name": entry["name"], "ok": False, "reason": "SHA-256 不符（文件被篡改）"})
        else:
            files.append({"name": entry["name"], "ok": True})
    errors += [f"{f['name']}: {f['reason']}" for f in files if not f["ok"]]
    listed = set(SIGNED) | {f["name"] for f in document.get("files", [])}
    extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                   and p.relative_to(folder).as_posix() not in listed)
    errors += [f"{name}: 清单外的文件" for name in extra]
    return {"ok": not errors, "dataset": dataset_id, "version": resolved,
            "signature": {"ok": sig_ok, "key_id": signature.get("key_id"), "reason": reason},
            "files": files, "errors": errors}


__all__ = ["LATEST", "ReleaseNotFound", "dataset", "file_path", "keys", "latest_version", "list_datasets",
           "list_versions", "manifest", "opendata_dir", "resolve_version", "verify_release", "version_key"]
