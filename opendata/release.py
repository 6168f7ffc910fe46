"""Build and publish open-data releases: one immutable, signed, versioned folder per dataset and change.

开放数据发布。A release is built in a temporary folder beside the versions, passes the privacy gate, gets its
manifest signed, and is renamed into place; only then does LATEST move and catalog.json change. A rerun whose data
(and metadata) hash equals the latest release's publishes nothing. Version ids are `<date>.<n>` (the release's date
in Asia/Shanghai, n from 1), never reused and never going backwards.

Incremental: before building, the dataset's inputs are fingerprinted (the rows its builder's queries return,
streamed; its definition; the code and code tables; the date where ages depend on it). When the fingerprint equals
the one recorded for the latest version (`<dataset>/.inputs.json`, also in the manifest's provenance), the dataset is
not rebuilt and the run reports "未变化，最新版本仍为 <version> unchanged, latest stays <version>". The outputs are
written in pieces from Arrow tables (no per-row dicts), and the gate and the diff run on Arrow columns.
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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from datetime import date, datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from hub.faults import fault_point
from libraries.bulk import driver_rows
from opendata import formats, signing, store
from opendata.builders import AS_OF_DEPENDENT, BUILDERS, INPUTS, PSEUDONYMISING, BuildContext, Built, Field
from opendata.datasets import NOT_OPEN, DatasetSpec, catalogue_open_attribute, get_dataset, load_datasets, open_datasets
from opendata.diff import COUNT, diff_tables
from opendata.privacy import NameIndex, PrivacyGateError, Pseudonymiser, digest, run_gate

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
MANIFEST_FORMAT = "hub-opendata-manifest/1"
DATA_FORMATS = ("parquet", "csv", "json")
DIFF_FORMATS = ("parquet", "csv")
INPUTS_FORMAT = "hub-opendata-inputs/2"  # /2: driver rows (one rebuild after the upgrade, then skips again)
INPUTS_FILE = ".inputs.json"  # {version, inputs_sha256} of the dataset's last run: lets an unchanged rerun skip the build
FINGERPRINT_BATCH = 50_000
CODE_FILES = ("builders.py", "privacy.py", "formats.py", "diff.py", "datasets.py", "release.py")
CODE_TABLES = ("regions", "gender", "ethnicity", "marital_status", "subject_categories", "credit_status",
               "licence_categories", "penalty_categories", "licence_status")
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


def content_hash(spec: DatasetSpec, fields: list[Field], data_json: bytes | str) -> str:
    """What decides whether a release is new: the data, its columns and the dataset's published metadata.

    `data_json` is data.json's bytes or, when it was written in pieces, their SHA-256 hex.
    """
    data_sha256 = data_json if isinstance(data_json, str) else hashlib.sha256(data_json).hexdigest()
    basis = {"metadata": spec.metadata(), "fields": [f.__dict__ for f in fields], "key": list(spec.key),
             "data_sha256": data_sha256}
    return digest(json.dumps(basis, ensure_ascii=False, sort_keys=True))


def _code_digest() -> str:
    """SHA-256 of what turns library rows into a release besides the rows: this package's code and the code tables."""
    from schemas.code_tables import table_path

    sha = hashlib.sha256()
    here = Path(__file__).parent
    for path in [*(here / name for name in CODE_FILES), *(table_path(name) for name in CODE_TABLES)]:
        sha.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def inputs_fingerprint(spec: DatasetSpec, engine: sa.Engine, as_of: date) -> str:
    """SHA-256 of everything a dataset's release is made from: the library rows its builder reads (the same
    queries, streamed in batches as the driver returns them), the dataset's definition, the code and code tables, the release date when ages
    depend on it, and a check value of the pseudonym key. Equal to the latest release's: nothing to rebuild."""
    basis = {"format": INPUTS_FORMAT, "spec": asdict(spec), "code": _code_digest(),
             "as_of": as_of.isoformat() if spec.builder in AS_OF_DEPENDENT else None,
             "pseudonym_check": Pseudonymiser().of(INPUTS_FORMAT) if spec.builder in PSEUDONYMISING else None}
    sha = hashlib.sha256(json.dumps(basis, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
    with engine.connect() as connection:
        for query in INPUTS[spec.builder]():
            for part in driver_rows(connection, query, FINGERPRINT_BATCH):
                sha.update(repr(part).encode("utf-8"))
            sha.update(b"\0")
    return sha.hexdigest()


def _inputs_of(folder: Path) -> dict[str, Any]:
    """What the last release run of a dataset recorded about its inputs ({version, inputs_sha256}; {} if nothing)."""
    try:
        value = json.loads((folder / INPUTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _remember_inputs(folder: Path, version: str, inputs: str | None, build_seconds: float) -> None:
    """Record that `version` is what inputs `inputs` give (a cache beside the immutable versions, not part of one),
    and how long building it took (what a parallel run orders its datasets by)."""
    if inputs is not None:
        record = {"version": version, "inputs_sha256": inputs, "build_seconds": round(build_seconds, 3)}
        _replace_text(folder / INPUTS_FILE, json.dumps(record) + "\n")


def _last_build_seconds(folder: Path) -> float:
    """How long the dataset's last build took (0 if never recorded)."""
    seconds = _inputs_of(folder).get("build_seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else 0.0


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


def _provenance(built: Built, gate: dict[str, Any], diffs: dict[str, int], previous: str | None,
                as_of: date, inputs: str | None = None) -> dict[str, Any]:
    """Manifest provenance: what was read (source runs, ruleset versions, the inputs fingerprint), what was changed,
    the gate's verdict."""
    return {
        "as_of": as_of.isoformat(),
        **built.provenance,
        **({"inputs_sha256": inputs} if inputs else {}),
        "privacy_gate": gate,
        "diff": {"previous_version": previous, **diffs},
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

    Unchanged is decided twice: before building, when the dataset's inputs fingerprint equals the one recorded for
    the latest version (nothing is read beyond the fingerprint's queries, nothing built); after building, when the
    content hash equals the latest release's. Returns {dataset, status: published | unchanged, version,
    previous_version, rows, seconds, message}.
    """
    started = time.perf_counter()
    root = store.opendata_dir(data_root)
    folder = root / spec.id
    as_of = release_date(at)
    with _locked(folder / ".lock"):
        previous = _repair_latest(data_root, spec.id, folder)
        inputs = inputs_fingerprint(spec, engine, as_of) if builder is None and spec.builder in INPUTS else None
        recorded = _inputs_of(folder)
        if previous is not None and inputs is not None and (recorded.get("version"), recorded.get("inputs_sha256")) == (previous, inputs):
            rows = store.manifest(data_root, spec.id, previous)["rows"]["data"]
            return _unchanged(spec, previous, rows, started, "输入未变，未重新构建 inputs unchanged, not rebuilt")
        built = (builder or BUILDERS[spec.builder])(BuildContext(engine, spec, as_of))
        table = built.table()
        version = next_version(store.list_versions(data_root, spec.id), as_of)
        final = folder / version
        temp = folder / f".tmp-{version}-{uuid.uuid4().hex[:12]}"
        temp.mkdir(parents=True)
        try:
            content = content_hash(spec, built.fields, formats.write_chunks(temp / "data.json", formats.json_chunks(table)))
            if previous is not None and store.manifest(data_root, spec.id, previous).get("content_sha256") == content:
                shutil.rmtree(temp, ignore_errors=True)
                _remember_inputs(folder, previous, inputs, time.perf_counter() - started)
                return _unchanged(spec, previous, table.num_rows, started, "内容未变 content unchanged")
            _build_folder(temp, spec, engine, at, as_of, version, previous, built, table, content, names, folder, inputs)
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
        _remember_inputs(folder, version, inputs, time.perf_counter() - started)
    fault_point("release.before_catalog")
    publish_keys(engine, data_root)
    write_catalog(data_root)
    return {"dataset": spec.id, "status": "published", "version": version, "previous_version": previous,
            "rows": table.num_rows, "seconds": round(time.perf_counter() - started, 3),
            "message": f"已发布 {version} published {version}"}


def _unchanged(spec: DatasetSpec, version: str, rows: int, started: float, why: str) -> dict[str, Any]:
    """The result of a run that publishes nothing: the latest version stays."""
    message = f"未变化，最新版本仍为 {version}（{why}）unchanged, latest stays {version}"
    log.info("开放数据集 %s: %s", spec.id, message)
    return {"dataset": spec.id, "status": "unchanged", "version": version, "previous_version": version,
            "rows": rows, "seconds": round(time.perf_counter() - started, 3), "message": message}


def _build_folder(temp: Path, spec: DatasetSpec, engine: sa.Engine, at: datetime, as_of: date, version: str,
                  previous: str | None, built: Built, table: pa.Table, content: str,
                  names: NameIndex | Callable[[], NameIndex] | None, folder: Path, inputs: str | None) -> None:
    """Write every file of a release into `temp` (data.json is there already), run the gate, sign the manifest."""
    created = at.astimezone(timezone.utc).isoformat(timespec="seconds")
    pq.write_table(table, temp / "data.parquet", compression="zstd")
    formats.write_chunks(temp / "data.csv", formats.csv_chunks(table))
    old = pq.read_table(folder / previous / "data.parquet") if previous else None
    diffs = diff_tables(old, table, list(spec.key), spec.diff_mode)
    del old
    data_files = ["data.parquet", "data.csv", "data.json"]
    resources = [{"name": "data", "path": "data.csv", "title": spec.title,
                  "schema": formats.table_schema(built.fields, spec.key if spec.diff_mode == "rows" else ())}]
    for kind, diff in diffs.items():
        data_files += formats.write_table(diff, temp, f"diff/{kind}", DIFF_FORMATS)
        resources.append({"name": f"diff-{kind}", "path": f"diff/{kind}.csv",
                          "title": f"{spec.title} 差分（{ {'added': '新增', 'changed': '变更', 'removed': '删除'}[kind] }）",
                          "schema": formats.table_schema(_fields_of(diff, built.fields))})
    diff_rows = {kind: t.num_rows for kind, t in diffs.items()}
    del diffs
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
        "rows": {"data": table.num_rows, **{f"diff_{kind}": n for kind, n in diff_rows.items()}},
        "files": [formats.file_entry(temp, name) for name in files],
        "provenance": _provenance(built, gate.summary(), diff_rows, previous, as_of, inputs),
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
            at: datetime, workers: int = 1) -> dict[str, Any]:
    """Release the open datasets (all, or the given ids); a gate failure of one does not stop the others.

    workers > 1: that many processes release datasets side by side (as release_opendata's tasks run under Airflow),
    the ones whose last build took longest first. Returns {results: [...], failed: [{dataset, error}]}, in the
    catalogue's order; datasets the catalogue marks 不予开放 are skipped.
    """
    from hub.db import engine_for
    from hub.settings import get_settings

    engine = engine or engine_for()
    data_root = Path(data_root or get_settings().data_root)
    specs = [get_dataset(i) for i in dataset_ids] if dataset_ids else list(load_datasets().values())
    outcomes: dict[str, tuple[str, Any]] = {}
    todo: list[DatasetSpec] = []
    for spec in specs:
        attribute = catalogue_open_attribute(spec)
        if attribute == NOT_OPEN:
            outcomes[spec.id] = ("result", {"dataset": spec.id, "status": "not_open", "open_attribute": attribute})
        else:
            todo.append(spec if attribute == spec.open_attribute else replace(spec, open_attribute=attribute))
    if workers > 1 and len(todo) > 1:
        outcomes |= _release_in_workers(todo, engine, data_root, at, workers)
    else:
        names = _names_once(engine)
        for spec in todo:
            outcomes[spec.id] = _release_caught(spec, engine, data_root, at, names)
            fault_point("release.between_datasets")
    results = [outcomes[s.id][1] for s in specs if outcomes[s.id][0] == "result"]
    failed = [{"dataset": s.id, "error": outcomes[s.id][1]} for s in specs if outcomes[s.id][0] == "failed"]
    # A run that died between a dataset's LATEST and catalog.json finds it "unchanged": bring the catalogue up to date.
    if results:
        publish_keys(engine, data_root)
        write_catalog(data_root)
    return {"results": results, "failed": failed}


def _names_once(engine: sa.Engine) -> Callable[[], NameIndex]:
    """The person-name index, read on first use and then kept for every dataset of the run."""
    cache: dict[str, NameIndex] = {}

    def names() -> NameIndex:
        if "names" not in cache:
            cache["names"] = NameIndex.from_engine(engine)
        return cache["names"]

    return names


def _release_caught(spec: DatasetSpec, engine: sa.Engine, data_root: Path, at: datetime,
                    names: Callable[[], NameIndex]) -> tuple[str, Any]:
    """("result", release_dataset's result), or ("failed", message) for a gate or release error (logged)."""
    try:
        return "result", release_dataset(spec, engine=engine, data_root=data_root, at=at, names=names)
    except (PrivacyGateError, ReleaseError) as error:
        log.error("%s", error)
        return "failed", str(error)


def _release_in_workers(specs: list[DatasetSpec], engine: sa.Engine, data_root: Path, at: datetime,
                        workers: int) -> dict[str, tuple[str, Any]]:
    """Release the datasets in `workers` spawned processes (each its own engine and name index), longest first so
    the last dataset to start is a short one. Each dataset is still built, gated and renamed under its own lock."""
    url = engine.url.render_as_string(hide_password=False)
    order = sorted(specs, key=lambda spec: -_last_build_seconds(store.opendata_dir(data_root) / spec.id))
    with ProcessPoolExecutor(max_workers=min(workers, len(specs)), mp_context=get_context("spawn")) as pool:
        futures = {spec.id: pool.submit(_release_in_worker, url, spec, data_root, at) for spec in order}
        return {dataset: future.result() for dataset, future in futures.items()}


_WORKER_NAMES: dict[str, Callable[[], NameIndex]] = {}  # per worker process and database: the name index of its run


def _release_in_worker(url: str, spec: DatasetSpec, data_root: Path, at: datetime) -> tuple[str, Any]:
    """One dataset's release inside a worker process."""
    from hub.db import engine_for

    engine = engine_for(url)
    names = _WORKER_NAMES.setdefault(url, _names_once(engine))
    return _release_caught(spec, engine, data_root, at, names)


__all__ = ["ReleaseError", "content_hash", "inputs_fingerprint", "next_version", "publish_keys", "release", "release_dataset",
           "release_date", "write_catalog"]
