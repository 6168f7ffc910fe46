"""The open datasets declared in datasets.yaml, and the open catalogue (those the sharing catalogue lets open).

开放数据集定义与开放目录。
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

DATASETS_FILE = Path(__file__).with_name("datasets.yaml")
OPEN_ATTRIBUTES: tuple[str, ...] = ("无条件开放", "有条件开放", "不予开放")
NOT_OPEN = "不予开放"
DIFF_MODES: tuple[str, ...] = ("rows", "cells")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
DEFAULT_K = 5


class DatasetError(LookupError):
    """An unknown dataset id, or a malformed datasets.yaml entry."""


@dataclass(frozen=True)
class DatasetSpec:
    """One open dataset: catalogue metadata, how to build it and the privacy rules it must pass."""

    id: str
    resource_code: str
    title: str
    description: str
    provider_code: str
    provider_name: str
    theme: str
    update_frequency: str
    open_attribute: str
    legal_basis: str
    keywords: tuple[str, ...]
    builder: str
    libraries: tuple[str, ...]
    key: tuple[str, ...]
    diff_mode: str = "rows"
    person_level: bool = False
    quasi_identifiers: tuple[str, ...] = ()
    k: int = DEFAULT_K
    count_column: str | None = None
    name_checks: tuple[dict[str, Any], ...] = ()
    licence: str = "CC-BY-4.0"
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The catalogue metadata of the dataset (what catalog.json and the release metadata show)."""
        return {
            "id": self.id, "resource_code": self.resource_code, "title": self.title, "description": self.description,
            "provider_code": self.provider_code, "provider_name": self.provider_name, "theme": self.theme,
            "update_frequency": self.update_frequency, "open_attribute": self.open_attribute,
            "legal_basis": self.legal_basis, "keywords": list(self.keywords), "licence": self.licence,
        }


def _spec(entry: dict[str, Any]) -> DatasetSpec:
    """One YAML entry → DatasetSpec, with its mistakes named."""
    known = set(DatasetSpec.__dataclass_fields__)
    ident = entry.get("id", "?")
    unknown = set(entry) - known
    if unknown:
        raise DatasetError(f"开放数据集 {ident} 有未知字段 unknown fields {sorted(unknown)}")
    spec = DatasetSpec(**{
        **entry,
        "keywords": tuple(entry.get("keywords") or ()),
        "libraries": tuple(entry.get("libraries") or ()),
        "key": tuple(entry.get("key") or ()),
        "quasi_identifiers": tuple(entry.get("quasi_identifiers") or ()),
        "name_checks": tuple(entry.get("name_checks") or ()),
        "k": int(entry.get("k") or DEFAULT_K),
        "person_level": bool(entry.get("person_level", False)),
    })
    if not SLUG.match(spec.id):
        raise DatasetError(f"开放数据集标识须为小写 ASCII 短名 dataset id must be an ASCII slug: {spec.id!r}")
    if spec.open_attribute not in OPEN_ATTRIBUTES:
        raise DatasetError(f"开放数据集 {spec.id} 的开放属性须为 {'/'.join(OPEN_ATTRIBUTES)}: {spec.open_attribute!r}")
    if spec.diff_mode not in DIFF_MODES or not spec.key:
        raise DatasetError(f"开放数据集 {spec.id} 须给出 key 和 diff_mode（rows/cells）")
    if spec.k < 2:
        raise DatasetError(f"开放数据集 {spec.id} 的 k 须不小于 2")
    if spec.person_level and not spec.quasi_identifiers:
        raise DatasetError(f"个人级开放数据集 {spec.id} 须列出准标识符 quasi_identifiers")
    return spec


def load_datasets(path: Path | None = None) -> dict[str, DatasetSpec]:
    """Every declared dataset by id, in file order."""
    return dict(_load(str(path or DATASETS_FILE)))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[tuple[str, DatasetSpec], ...]:
    """Parse datasets.yaml once per process."""
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    specs = [_spec(entry) for entry in document.get("datasets") or []]
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"开放数据集标识重复 duplicate dataset ids in {path}")
    return tuple((s.id, s) for s in specs)


def get_dataset(dataset_id: str) -> DatasetSpec:
    """One declared dataset; DatasetError if there is none."""
    specs = load_datasets()
    if dataset_id not in specs:
        raise DatasetError(f"未知开放数据集 unknown dataset {dataset_id!r}; one of {', '.join(specs)}")
    return specs[dataset_id]


def catalogue_open_attribute(spec: DatasetSpec) -> str:
    """The open attribute the sharing catalogue gives the dataset's resource (this file's value when it has none)."""
    try:
        resources = importlib.import_module("catalog.resources")
    except ModuleNotFoundError:
        return spec.open_attribute
    getter = getattr(resources, "get_resource", None)
    if getter is None:
        return spec.open_attribute
    try:
        resource = getter(spec.resource_code)
    except Exception as error:  # noqa: BLE001 - the catalogue may be unreachable; fall back to the declared value
        log.warning("共享目录查询失败，使用 datasets.yaml 的开放属性 catalogue lookup of %s failed: %s", spec.resource_code, error)
        return spec.open_attribute
    value = (resource or {}).get("open_attribute") if isinstance(resource, dict) else getattr(resource, "open_attribute", None)
    return value if value in OPEN_ATTRIBUTES else spec.open_attribute


def open_datasets() -> list[DatasetSpec]:
    """The open catalogue: declared datasets whose open attribute (from the sharing catalogue) is not 不予开放."""
    out = []
    for spec in load_datasets().values():
        attribute = catalogue_open_attribute(spec)
        if attribute != NOT_OPEN:
            out.append(spec if attribute == spec.open_attribute else _with_attribute(spec, attribute))
    return out


def _with_attribute(spec: DatasetSpec, attribute: str) -> DatasetSpec:
    """A copy of the spec carrying the catalogue's open attribute."""
    from dataclasses import replace

    return replace(spec, open_attribute=attribute)


__all__ = ["DatasetError", "DatasetSpec", "NOT_OPEN", "OPEN_ATTRIBUTES", "catalogue_open_attribute", "get_dataset",
           "load_datasets", "open_datasets"]
