"""Build and publish open-data releases: one immutable, signed, versioned folder per dataset and change.

开放数据发布。A release is built in a temporary folder beside the versions, passes the privacy gate, gets its
manifest signed, and is renamed into place; only then does LATEST move and catalog.json change. A rerun whose data
(and metadata) hash equals the latest release's publishes nothing. Version ids are `<date>.<n>` (the release's date
in Asia/Shanghai, n from 1), never reused and never going backwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from hub.faults import fault_point
from opendata import formats, signing, store
from opendata.builders import BUILDERS, BuildContext, Built, Field
from opendata.datasets import NOT_OPEN, DatasetSpec, catalogue_open_attribute, get_dataset, load_datasets, open_datasets
from opendata.diff import COUNT, diff_tables
from opendata.privacy import NameIndex, PrivacyGateError, digest, run_gate

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
MANIFEST_FORMAT = "hub-opendata-manifest/1"
DATA_FORMATS = ("parquet", "csv", "json")
DIFF_FORMATS = ("parquet", "csv")
TYPE_OF_ARROW = {"string": "string", "large_string": "string", "int64": "integer", "int32": "integer",
                 "double": "number", "float": "number", "date32[day]": "date", "bool": "boolean"}


class ReleaseError(RuntimeError):
    """A release that cannot be built or published (other than a privacy-gate failure)."""


def release_date(at: datetime) -> date:
    """The calendar day (Asia/Shanghai) a release made at `at` belongs to."""
    if at.tzinfo is None:
        raise ReleaseError("发布时间须带时区 release time must be timezone-aware")
    return at.astimezone(SHANGHAI).date()


def next_version(existing: list[str], day: date) -> str:
    """`<day>.<n>`: the next sequence of the day — or of the newest existing day, so ids never go backwards."""
    newest = max((store.version_key(v) for v in existing), default=None)
    label = day.isoformat()
    if newest is not None and newest[0] > label:
        label = newest[0]
    n = max((seq for d, seq in (store.version_key(v) for v in existing) if d == label), default=0) + 1
    return f"{label}.{n}"


def content_hash(spec: DatasetSpec, fields: list[Field], data_json: bytes) -> str:
    """What decides whether a release is new: the data, its columns and the dataset's published metadata."""
    basis = {"metadata": spec.metadata(), "fields": [f.__dict__ for f in fields], "key": list(spec.key),
             "data_sha256": hashlib.sha256(data_json).hexdigest()}
    return digest(json.dumps(basis, ensure_ascii=False, sort_keys=True))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a lock file (two releases of one dataset never interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _replace_text(path: Path, text: str) -> None:
    """Atomically replace a small text file."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    formats.write_bytes(temp, text.encode("utf-8"))
    os.replace(temp, path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in the folder durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fields_of(table: pa.Table, fields: list[Field]) -> list[Field]:
    """Output fields of a table derived from the dataset's (diff tables may add the `records` count)."""
    by_name = {f.name: f for f in fields}
    out = []
    for column in table.schema:
        if column.name in by_name:
            out.append(by_name[column.name])
        elif column.name == COUNT:
            out.append(Field(COUNT, "integer", "记录数", "该单元格（准标识符组合）的记录数"))
        else:
            out.append(Field(column.name, TYPE_OF_ARROW.get(str(column.type), "string"), column.name))
    return out


def _provenance(built: Built, gate: dict[str, Any], diffs: dict[str, pa.Table], previous: str | None,
                as_of: date) -> dict[str, Any]:
    """Manifest provenance: what was read (source runs, ruleset versions), what was changed, the gate's verdict."""
    return {
        "as_of": as_of.isoformat(),
        **built.provenance,
        "privacy_gate": gate,
        "diff": {"previous_version": previous, **{kind: t.num_rows for kind, t in diffs.items()}},
    }


def _repair_latest(data_root: Path, dataset_id: str, folder: Path) -> str | None:
    """The latest version, first moving LATEST forward to a complete version folder a crash left it behind.

    A version folder appears only complete (built, gated, signed, then renamed), so one newer than LATEST was
    published by a run that died before it moved LATEST; without this the rerun would publish its content again
    under the next version id.
    """
    latest = store.latest_version(data_root, dataset_id)
    versions = store.list_versions(data_root, dataset_id)
    if versions and (latest is None or store.version_key(versions[-1]) > store.version_key(latest)):
        log.warning("开放数据集 %s: 版本 %s 已就位但 LATEST 未更新（上次发布中断），现补上 LATEST was behind, repaired",
                    dataset_id, versions[-1])
        _replace_text(folder / "LATEST", versions[-1] + "\n")
        return versions[-1]
    return latest


def release_dataset(spec: DatasetSpec, *, engine: sa.Engine, data_root: Path, at: datetime,
                    names: NameIndex | Callable[[], NameIndex] | None = None,
                    builder: Callable[[BuildContext], Built] | None = None) -> dict[str, Any]:
    """Build one dataset's release and publish it unless nothing changed; PrivacyGateError publishes nothing.

    Returns {dataset, status: published | unchanged, version, previous_version, rows, seconds}.
    """
    started = time.perf_counter()
    root = store.opendata_dir(data_root)
    folder = root / spec.id
    as_of = release_date(at)
    with _locked(folder / ".lock"):
        built = (builder or BUILDERS[spec.builder])(BuildContext(engine, spec, as_of))
        table = built.table()
        data_json = formats.json_bytes(table)
        content = content_hash(spec, built.fields, data_json)
        previous = _repair_latest(data_root, spec.id, folder)
        if previous is not None:
            before = store.manifest(data_root, spec.id, previous)
            if before.get("content_sha256") == content:
                return {"dataset": spec.id, "status": "unchanged", "version": previous, "previous_version": previous,
                        "rows": table.num_rows, "seconds": round(time.perf_counter() - started, 3)}
        version = next_version(store.list_versions(data_root, spec.id), as_of)
        final = folder / version
        temp = folder / f".tmp-{version}-{uuid.uuid4().hex[:12]}"
        temp.mkdir(parents=True)
        try:
            _build_folder(temp, spec, engine, at, as_of, version, previous, built, table, data_json, content, names,
                          folder)
            if final.exists():
                raise ReleaseError(f"版本目录已存在，发布不可覆盖 release {spec.id}/{version} already exists")
            fault_point("release.before_rename")
            os.rename(temp, final)
            _fsync_dir(folder)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fault_point("release.before_latest")  # the version is in place but LATEST still names the previous one
        _replace_text(folder / "LATEST", version + "\n")
    fault_point("release.before_catalog")
    publish_keys(engine, data_root)
    write_catalog(data_root)
    return {"dataset": spec.id, "status": "published", "version": version, "previous_version": previous,
            "rows": table.num_rows, "seconds": round(time.perf_counter() - started, 3)}


def _build_folder(temp: Path, spec: DatasetSpec, engine: sa.Engine, at: datetime, as_of: date, version: str,
                  previous: str | None, built: Built, table: pa.Table, data_json: bytes, content: str,
                  names: NameIndex | Callable[[], NameIndex] | None, folder: Path) -> None:
    """Write every file of a release into `temp`, run the gate, sign the manifest."""
    created = at.astimezone(timezone.utc).isoformat(timespec="seconds")
    pq.write_table(table, temp / "data.parquet", compression="zstd")
    formats.write_bytes(temp / "data.csv", formats.csv_bytes(table))
    formats.write_bytes(temp / "data.json", data_json)
    old = pq.read_table(folder / previous / "data.parquet") if previous else None
    diffs = diff_tables(old, table, list(spec.key), spec.diff_mode)
    data_files = ["data.parquet", "data.csv", "data.json"]
    resources = [{"name": "data", "path": "data.csv", "title": spec.title,
                  "schema": formats.table_schema(built.fields, spec.key if spec.diff_mode == "rows" else ())}]
    for kind, diff in diffs.items():
        data_files += formats.write_table(diff, temp, f"diff/{kind}", DIFF_FORMATS)
        resources.append({"name": f"diff-{kind}", "path": f"diff/{kind}.csv",
                          "title": f"{spec.title} 差分（{ {'added': '新增', 'changed': '变更', 'removed': '删除'}[kind] }）",
                          "schema": formats.table_schema(_fields_of(diff, built.fields))})
    package = formats.datapackage(spec, version, created, temp, resources)
    formats.write_bytes(temp / "datapackage.json", signing.dumps(package))
    catalogue = formats.dcat(spec, version, created, temp, [*data_files], previous, table.num_rows)
    formats.write_bytes(temp / "dcat.jsonld", signing.dumps(catalogue))

    if callable(names):
        names = names()
    if names is None and (spec.person_level or spec.name_checks):
        names = NameIndex.from_engine(engine)
    gate = run_gate(temp, spec, names, data_files)
    if gate.violations:
        raise PrivacyGateError(spec.id, gate.violations)

    files = sorted((p.relative_to(temp).as_posix() for p in temp.rglob("*") if p.is_file()))
    document = {
        "format": MANIFEST_FORMAT,
        "dataset_id": spec.id, "resource_code": spec.resource_code, "title": spec.title,
        "version": version, "previous_version": previous, "created_at": created,
        "content_sha256": content,
        "open_attribute": spec.open_attribute,
        "rows": {"data": table.num_rows, **{f"diff_{kind}": t.num_rows for kind, t in diffs.items()}},
        "files": [formats.file_entry(temp, name) for name in files],
        "provenance": _provenance(built, gate.summary(), diffs, previous, as_of),
    }
    manifest_bytes = signing.dumps(document)
    formats.write_bytes(temp / "manifest.json", manifest_bytes)
    key_id = signing.release_key_id(engine, at)
    formats.write_bytes(temp / "manifest.sig", signing.dumps(signing.sign(engine, key_id, manifest_bytes)))
    _fsync_dir(temp)


def publish_keys(engine: sa.Engine, data_root: Path) -> Path:
    """Write keys.json (every release public key) when it changed."""
    root = store.opendata_dir(data_root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "keys.json"
    text = signing.dumps(signing.public_keys(engine)).decode("utf-8")
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        _replace_text(path, text)
    return path


def catalog_entry(spec: DatasetSpec, data_root: Path) -> dict[str, Any] | None:
    """The catalog.json entry of a dataset (None before its first release)."""
    versions = store.list_versions(data_root, spec.id)
    if not versions:
        return None
    listed = []
    for version in reversed(versions):
        m = store.manifest(data_root, spec.id, version)
        listed.append({"version": version, "created_at": m["created_at"], "rows": m["rows"]["data"]})
    meta = spec.metadata()
    return {**{k: meta[k] for k in ("id", "resource_code", "title", "description", "provider_code", "provider_name",
                                    "theme", "update_frequency", "open_attribute", "keywords", "legal_basis", "licence")},
            "latest_version": store.latest_version(data_root, spec.id) or versions[-1],
            "updated_at": listed[0]["created_at"], "versions": listed, "formats": list(DATA_FORMATS)}


def write_catalog(data_root: Path) -> Path:
    """Rewrite catalog.json: every open dataset (catalogue open attribute not 不予开放) that has a release."""
    root = store.opendata_dir(data_root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".catalog.lock"):
        entries = [e for e in (catalog_entry(s, data_root) for s in open_datasets()) if e is not None]
        _replace_text(root / "catalog.json", json.dumps({"format": "hub-opendata-catalog/1", "datasets": entries},
                                                          ensure_ascii=False, indent=2) + "\n")
    return root / "catalog.json"


def release(dataset_ids: list[str] | None = None, *, engine: sa.Engine | None = None, data_root: Path | None = None,
            at: datetime) -> dict[str, Any]:
    """Release the open datasets (all, or the given ids); a gate failure of one does not stop the others.

    Returns {results: [...], failed: [{dataset, error}]}; datasets the catalogue marks 不予开放 are skipped.
    """
    from hub.db import engine_for
    from hub.settings import get_settings

    engine = engine or engine_for()
    data_root = Path(data_root or get_settings().data_root)
    specs = [get_dataset(i) for i in dataset_ids] if dataset_ids else list(load_datasets().values())
    cache: dict[str, NameIndex] = {}

    def names() -> NameIndex:
        """The person-name index, read once for all datasets of this run."""
        if "names" not in cache:
            cache["names"] = NameIndex.from_engine(engine)
        return cache["names"]

    results, failed = [], []
    for spec in specs:
        attribute = catalogue_open_attribute(spec)
        if attribute == NOT_OPEN:
            results.append({"dataset": spec.id, "status": "not_open", "open_attribute": attribute})
            continue
        if attribute != spec.open_attribute:
            spec = replace(spec, open_attribute=attribute)
        try:
            results.append(release_dataset(spec, engine=engine, data_root=data_root, at=at, names=names))
            fault_point("release.between_datasets")
        except (PrivacyGateError, ReleaseError) as error:
            log.error("%s", error)
            failed.append({"dataset": spec.id, "error": str(error)})
    # A run that died between a dataset's LATEST and catalog.json finds it "unchanged": bring the catalogue up to date.
    if results:
        publish_keys(engine, data_root)
        write_catalog(data_root)
    return {"results": results, "failed": failed}


__all__ = ["ReleaseError", "content_hash", "next_version", "publish_keys", "release", "release_dataset",
           "release_date", "write_catalog"]
