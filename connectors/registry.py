"""The source registry: every departmental source described in sources.yaml, read into typed specs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REGISTRY_FILE = Path(__file__).with_name("sources.yaml")
KINDS = {"sql", "file", "http"}
MODES = ("incremental", "snapshot")
LIBRARIES = {"population", "legal_entity", "licence", "credit"}


@dataclass(frozen=True)
class FieldMapping:
    """How one source column becomes one standard data element."""

    source: str
    target: str
    normalize: tuple[str, ...] = ()
    code_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """One departmental source, as declared in the registry."""

    id: str
    department: str
    department_code: str
    kind: str
    connection: str
    library: str
    primary_key: tuple[str, ...]
    replication_key: str | None
    schedule: str | None
    fields: tuple[FieldMapping, ...]
    table: str | None = None
    constants: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    merge: bool = True

    @property
    def dag_id(self) -> str:
        """The collection DAG of this source."""
        return f"collect_{self.id}"

    @property
    def mode(self) -> str:
        """incremental (by replication key, or by file fingerprint) or snapshot (full read, diff by primary key)."""
        declared = self.options.get("mode")
        if declared is not None:
            return declared
        return "snapshot" if self.kind in ("sql", "http") and not self.replication_key else "incremental"

    @property
    def can_backfill(self) -> bool:
        """True when a run can be asked for an explicit replication-key window (sql and http, incremental)."""
        return self.kind in ("sql", "http") and self.mode == "incremental" and self.replication_key is not None


class RegistryError(ValueError):
    """The registry file is malformed; the message names the entry and the problem."""


def registry_path() -> Path:
    """The registry file in use ($HUB_SOURCE_REGISTRY overrides the shipped one)."""
    return Path(os.environ.get("HUB_SOURCE_REGISTRY", REGISTRY_FILE))


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[SourceSpec, ...]:
    """Parse and check the registry file."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    specs = tuple(_spec(entry) for entry in document.get("sources", []))
    ids = [spec.id for spec in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RegistryError(f"数据源编号重复 duplicate source ids: {duplicates}")
    return specs


def _spec(entry: dict[str, Any]) -> SourceSpec:
    """One registry entry as a SourceSpec, with a clear error for a malformed one."""
    source_id = entry.get("id", "?")
    try:
        fields = tuple(
            FieldMapping(
                source=column,
                target=rule["to"],
                normalize=tuple(rule.get("normalize", ())),
                code_map={str(k): str(v) for k, v in (rule.get("code_map") or {}).items()},
            )
            for column, rule in entry["fields"].items()
        )
        known = {"id", "department", "department_code", "kind", "connection", "library", "primary_key",
                 "replication_key", "schedule", "fields", "table", "constants", "merge"}
        spec = SourceSpec(
            id=entry["id"],
            department=entry["department"],
            department_code=entry["department_code"],
            kind=entry["kind"],
            connection=entry["connection"],
            library=entry["library"],
            primary_key=tuple(entry["primary_key"]),
            replication_key=entry.get("replication_key"),
            schedule=entry.get("schedule"),
            fields=fields,
            table=entry.get("table"),
            constants=dict(entry.get("constants") or {}),
            merge=bool(entry.get("merge", True)),
            options={k: v for k, v in entry.items() if k not in known},
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise RegistryError(f"数据源 {source_id} 登记项不完整 malformed registry entry: missing {error}") from error
    if spec.kind not in KINDS:
        raise RegistryError(f"数据源 {spec.id}: 未知类型 unknown kind {spec.kind!r}")
    if spec.library not in LIBRARIES:
        raise RegistryError(f"数据源 {spec.id}: 未知基础库 unknown library {spec.library!r}")
    if spec.mode not in MODES:
        raise RegistryError(f"数据源 {spec.id}: mode 只能是 incremental 或 snapshot must be incremental or snapshot, not {spec.mode!r}")
    if spec.mode == "incremental" and spec.kind in ("sql", "http") and not spec.replication_key:
        raise RegistryError(f"数据源 {spec.id}: 增量采集需要 replication_key incremental mode needs a replication_key (or use mode: snapshot)")
    if spec.mode == "snapshot" and not spec.primary_key:
        raise RegistryError(f"数据源 {spec.id}: 快照比对需要 primary_key snapshot mode needs a primary_key")
    return spec


def all_sources() -> tuple[SourceSpec, ...]:
    """Every registered source."""
    return _load(registry_path())


def get_source(source_id: str) -> SourceSpec:
    """One source by id."""
    for spec in all_sources():
        if spec.id == source_id:
            return spec
    raise KeyError(f"未登记的数据源 unknown source: {source_id}")


def sources_for(library: str, merged_only: bool = False) -> tuple[SourceSpec, ...]:
    """The sources feeding one base library (only those its merge takes in, if merged_only)."""
    return tuple(spec for spec in all_sources() if spec.library == library and (spec.merge or not merged_only))
