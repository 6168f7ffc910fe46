"""The sharing catalogue (政务信息资源目录): every resource with its core metadata, generated, never typed twice.

共享目录：资源的核心元数据由数据元、数据源登记簿与质量规则自动生成，人工只在 catalog/resources.yaml 中作出
共享类型、共享条件、法律依据、开放属性等决定。

Sources of each fact:
- items (name, label, data type, sensitivity, item sharing type): `schemas/data/elements/<library>.csv`;
- providers: the departments whose sources (`connectors/sources.yaml`) map to the resource's items;
- update frequency: the providers' promised frequency (`quality/rules/<library>.yaml`), else their schedule;
- human decisions: `catalog/resources.yaml`; thematic open-data datasets: `opendata/datasets.yaml` (if present).

The catalogue is rebuilt when any of those files changes (checked by modification time, at most once a second).
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

import schemas.elements as elements_module
from connectors.registry import REGISTRY_FILE, SourceSpec, all_sources
from schemas.code_tables import load_table
from schemas.elements import LIBRARIES, library_elements

ROOT = Path(__file__).resolve().parent.parent
DECISIONS_FILE = Path(__file__).with_name("resources.yaml")
DATASETS_FILE = ROOT / "opendata" / "datasets.yaml"
RULES_DIR = ROOT / "quality" / "rules"
SHARING_TYPES = ("无条件共享", "有条件共享", "不予共享")
OPEN_ATTRIBUTES = ("无条件开放", "有条件开放", "不予开放")
SHARED_GROUPS = {"population": ("source",), "legal_entity": ("source",), "licence": (), "credit": ("common",)}
GROUP_NAMES = {  # the Chinese name of an element group when resources.yaml gives none
    "basic": "基本信息", "household": "户籍信息", "contact": "联系方式", "marriage": "婚姻信息", "other": "其他信息",
    "status": "状态信息", "registration": "登记信息", "admin_licence": "行政许可信息", "admin_penalty": "行政处罚信息",
    "dishonest_debtor": "失信被执行人信息", "abnormal_operation": "经营异常名录信息", "red_black_list": "红黑名单信息",
}
CREDIT_GROUP_TYPES = {"admin_licence": "行政许可", "admin_penalty": "行政处罚", "dishonest_debtor": "失信被执行人",
                      "abnormal_operation": "经营异常名录", "red_black_list": "红名单"}
SCHEDULE_LABELS = {"@hourly": "每小时", "@daily": "每日", "@weekly": "每周", "@monthly": "每月", "@yearly": "每年"}
CHECK_INTERVAL = 1.0  # seconds between checks of the input files' modification times


class CatalogueError(ValueError):
    """The catalogue's decisions are malformed, or a resource code is unknown."""


class UnknownResource(CatalogueError, LookupError):
    """No resource has this code."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def load_decisions(path: Path | None = None) -> dict[str, Any]:
    """The human decisions (resources.yaml) as a dict."""
    return yaml.safe_load((path or DECISIONS_FILE).read_text(encoding="utf-8")) or {}


def load_datasets(path: Path | None = None) -> list[dict[str, Any]]:
    """The open-data helper's thematic datasets (empty when opendata/datasets.yaml does not exist yet)."""
    path = path or DATASETS_FILE
    if not path.exists():
        return []
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = document.get("datasets", document) if isinstance(document, dict) else document
    return [entry for entry in entries or [] if isinstance(entry, dict) and entry.get("resource_code")]


def _input_files() -> list[Path]:
    """Every file the catalogue is generated from."""
    element_dir = Path(elements_module.ELEMENT_DIR)
    files = [DECISIONS_FILE, DATASETS_FILE, REGISTRY_FILE, *sorted(element_dir.glob("*.csv")), *sorted(RULES_DIR.glob("*.yaml"))]
    return files


def _signature() -> tuple[tuple[str, int], ...]:
    """Paths and modification times of the inputs (a missing file counts as time 0)."""
    return tuple((str(path), path.stat().st_mtime_ns if path.exists() else 0) for path in _input_files())


def _duration_label(delta: timedelta) -> str:
    """A promised update frequency in Chinese (每日, 每7天, 每小时…)."""
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return "实时"
    if hours < 24:
        return "每小时" if hours == 1 else f"每{hours:g}小时"
    days = delta.days
    return {1: "每日", 7: "每周", 30: "每月", 31: "每月", 90: "每季度", 365: "每年"}.get(days, f"每{days}天")


def promised_frequency(spec: SourceSpec) -> tuple[timedelta | None, str]:
    """A source's promised update frequency: the quality catalogue's promise, else its collection schedule."""
    from quality.catalogue import load_catalogue  # lazy: the quality package is heavy to import

    try:
        promised = load_catalogue(spec.library).profile(spec.id).update_frequency
    except Exception:  # a catalogue that cannot load must not hide the sharing catalogue; fall back to the schedule
        promised = None
    if promised is not None:
        return promised, _duration_label(promised)
    label = SCHEDULE_LABELS.get(spec.schedule or "", spec.schedule or "不定期")
    delta = {"@hourly": timedelta(hours=1), "@daily": timedelta(days=1), "@weekly": timedelta(days=7)}.get(spec.schedule or "")
    return delta, label


def department_name(code: str) -> str:
    """The Chinese name of a department code (the code itself when unknown)."""
    return load_table("departments").label(code) or code


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _item(element: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """One 信息项 of a resource from a standard data element, with the catalogue's overrides applied."""
    override = overrides.get(element.name, {}) or {}
    return {"name": element.name, "label": element.label, "type": element.type,
            "sensitivity": int(override.get("sensitivity", element.sensitivity)),
            "sharing": override.get("sharing", element.sharing), "required": element.required,
            "code_table": element.code_table, "description": element.description}


def _sources_supplying(library: str, names: set[str], sources: tuple[SourceSpec, ...], group: str) -> list[SourceSpec]:
    """Sources of the library that map at least one of the resource's own items (credit: by record type)."""
    out = []
    for spec in sources:
        if spec.library != library:
            continue
        if library == "credit":
            record_type = spec.constants.get("record_type")
            wanted = CREDIT_GROUP_TYPES.get(group)
            if record_type is not None:
                if record_type != wanted and not (group == "red_black_list" and record_type == "黑名单"):
                    continue
                out.append(spec)
                continue
        targets = {mapping.target for mapping in spec.fields} | set(spec.constants)
        if targets & names:
            out.append(spec)
    return out


def _providers(supplying: list[SourceSpec], names: set[str]) -> list[str]:
    """Department codes of the suppliers, the one supplying most items first."""
    counts: dict[str, int] = {}
    for spec in supplying:
        targets = {mapping.target for mapping in spec.fields} | set(spec.constants)
        counts[spec.department_code] = max(counts.get(spec.department_code, 0), len(targets & names))
    return sorted(counts, key=lambda code: (-counts[code], code))


def _resource(code: str, library: str, group_label: str, items: list[dict[str, Any]], supplying: list[SourceSpec],
              own_names: set[str], decisions: dict[str, Any]) -> dict[str, Any]:
    """One generated resource: generated facts first, then the human decisions on top."""
    library_decision = decisions.get("libraries", {}).get(library, {}) or {}
    decision = decisions.get("resources", {}).get(code, {}) or {}
    policy = decisions.get("policy", {}) or {}
    providers = _providers(supplying, own_names) or ["dsj"]
    frequencies = [promised_frequency(spec) for spec in supplying if spec.department_code == providers[0]]
    # The resource is as fresh as its main provider's slowest source promises (the 责任清单 lists every supplier).
    slowest = max((f for f in frequencies if f[0] is not None), key=lambda f: f[0], default=(None, "不定期"))
    title = elements_module.library_title(library)
    sharing_type = decision.get("sharing_type", "无条件共享")  # 以共享为原则、不共享为例外
    resource = {
        "code": code,
        "kind": "library_view",
        "library": library,
        "name": decision.get("name") or f"{title}{group_label}",
        "classification": [*library_decision.get("classification", ["基础信息资源", title]), group_label],
        "provider_code": providers[0],
        "provider_name": department_name(providers[0]),
        "providers": [{"code": p, "name": department_name(p)} for p in providers],
        "sources": [spec.id for spec in supplying],
        "summary": decision.get("summary") or f"{title}中的{group_label}（{len(items)}个信息项），由"
                   f"{'、'.join(department_name(p) for p in providers)}提供，枢纽归集、比对后共享。",
        "format": library_decision.get("format", "JSON"),
        "items": items,
        "sharing_type": sharing_type,
        "sharing_conditions": decision.get("sharing_conditions") or ("" if sharing_type == "无条件共享" else "须经提供方同意"),
        "sharing_method": decision.get("sharing_method") or library_decision.get("sharing_method", "接口调用"),
        "legal_basis": decision.get("legal_basis") or library_decision.get("legal_basis", ""),
        "open_attribute": decision.get("open_attribute", "不予开放"),
        "update_frequency": slowest[1],
        "update_frequency_hours": round(slowest[0].total_seconds() / 3600, 2) if slowest[0] else None,
        "published": str(decision.get("published") or policy.get("default_published") or date.today().isoformat()),
        "related": [],
    }
    _validate(resource, bool(decision.get("legal_basis")))
    return resource


def _validate(resource: dict[str, Any], explicit_basis: bool) -> None:
    """Closed vocabularies, and a legal basis for every exception to sharing."""
    code = resource["code"]
    if resource["sharing_type"] not in SHARING_TYPES:
        raise CatalogueError(f"资源 {code} 的共享类型 {resource['sharing_type']!r} 不在 {SHARING_TYPES} 之中")
    if resource["open_attribute"] not in OPEN_ATTRIBUTES:
        raise CatalogueError(f"资源 {code} 的开放属性 {resource['open_attribute']!r} 不在 {OPEN_ATTRIBUTES} 之中")
    if resource["sharing_type"] != "无条件共享" and not explicit_basis:
        raise CatalogueError(f"资源 {code} 为{resource['sharing_type']}，须在 catalog/resources.yaml 中写明法律依据 legal_basis")


def library_resources(decisions: dict[str, Any], sources: tuple[SourceSpec, ...]) -> list[dict[str, Any]]:
    """The base-library view resources: one per element group (licence: one per issuing source)."""
    out: list[dict[str, Any]] = []
    for library in LIBRARIES:
        library_decision = decisions.get("libraries", {}).get(library, {}) or {}
        prefix = library_decision.get("prefix", library.upper())
        elements = library_elements(library)
        shared = SHARED_GROUPS[library]
        shared_elements = [e for e in elements if e.group in shared]
        if library == "licence":
            for spec in (s for s in sources if s.library == "licence"):
                code = f"{prefix}.{spec.id}"
                overrides = (decisions.get("resources", {}).get(code, {}) or {}).get("items", {}) or {}
                items = [_item(e, overrides) for e in elements]
                label = f"（{department_name(spec.department_code)}颁发）"
                out.append(_resource(code, library, label, items, [spec], {e.name for e in elements}, decisions))
            continue
        for group in dict.fromkeys(e.group for e in elements if e.group not in shared):
            code = f"{prefix}.{group}"
            decision = decisions.get("resources", {}).get(code, {}) or {}
            own = [e for e in elements if e.group == group]
            items = [_item(e, decision.get("items", {}) or {}) for e in [*shared_elements, *own]]
            if library != "credit":  # credit's common items (subject) come first; the source group goes last
                items = [_item(e, decision.get("items", {}) or {}) for e in [*own, *shared_elements]]
            own_names = {e.name for e in own}
            supplying = _sources_supplying(library, own_names, sources, group)
            out.append(_resource(code, library, GROUP_NAMES.get(group, group), items, supplying, own_names, decisions))
    return out


def dataset_resource(entry: dict[str, Any], decisions: dict[str, Any]) -> dict[str, Any]:
    """A thematic open-data dataset declared by the open-data helper, as a catalogue resource."""
    provider = str(entry.get("provider_code") or "dsj")
    resource = {
        "code": str(entry["resource_code"]),
        "kind": "open_dataset",
        "library": None,
        "dataset_id": entry.get("id"),
        "name": str(entry.get("title") or entry["resource_code"]),
        "classification": ["主题信息资源", str(entry.get("theme") or "其他")],
        "provider_code": provider,
        "provider_name": department_name(provider),
        "providers": [{"code": provider, "name": department_name(provider)}],
        "sources": [],
        "summary": str(entry.get("description") or ""),
        "format": str(entry.get("format") or "CSV；Parquet"),
        "items": [{"name": str(i.get("name")), "label": str(i.get("label", i.get("name"))), "type": str(i.get("type", "string")),
                   "sensitivity": int(i.get("sensitivity", 1)), "sharing": "无条件共享", "required": False,
                   "code_table": None, "description": ""} for i in entry.get("items", []) or [] if isinstance(i, dict)],
        "sharing_type": "无条件共享",  # a de-identified open release is shared with every department
        "sharing_conditions": "",
        "sharing_method": "开放平台下载",
        "legal_basis": str(entry.get("legal_basis") or ""),
        "open_attribute": str(entry.get("open_attribute") or "无条件开放"),
        "update_frequency": str(entry.get("update_frequency") or "不定期"),
        "update_frequency_hours": None,
        "published": str(entry.get("published") or (decisions.get("policy", {}) or {}).get("default_published") or ""),
        "related": [str(code) for code in entry.get("related", []) or []],
        "keywords": [str(k) for k in entry.get("keywords", []) or []],
    }
    if resource["open_attribute"] not in OPEN_ATTRIBUTES:
        raise CatalogueError(f"开放数据集 {resource['code']} 的开放属性 {resource['open_attribute']!r} 不在 {OPEN_ATTRIBUTES} 之中")
    return resource


def _link_related(resources: list[dict[str, Any]]) -> None:
    """关联资源代码: the other resources of the same library (and any codes a dataset named)."""
    by_library: dict[str, list[str]] = {}
    for resource in resources:
        if resource["library"]:
            by_library.setdefault(resource["library"], []).append(resource["code"])
    for resource in resources:
        siblings = [c for c in by_library.get(resource["library"], []) if c != resource["code"]] if resource["library"] else []
        resource["related"] = list(dict.fromkeys([*siblings, *resource["related"]]))


def build_catalogue() -> list[dict[str, Any]]:
    """Generate every resource from the inputs (uncached; use all_resources())."""
    decisions = load_decisions()
    resources = library_resources(decisions, all_sources())
    known = {r["code"] for r in resources}
    for entry in load_datasets():
        resource = dataset_resource(entry, decisions)
        if resource["code"] not in known:  # a dataset naming a library resource's code is a view of it, not a new one
            resources.append(resource)
            known.add(resource["code"])
    _link_related(resources)
    return resources


# ---------------------------------------------------------------------------------------------
# Cached access
# ---------------------------------------------------------------------------------------------


class _Cache:
    """The generated catalogue of this process, rebuilt when an input file changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.signature: tuple[tuple[str, int], ...] | None = None
        self.checked = 0.0
        self.resources: list[dict[str, Any]] = []
        self.by_code: dict[str, dict[str, Any]] = {}
        self.generation = 0  # bumped on every rebuild, so dependants (search index, authoriser) can follow

    def refresh(self, force: bool = False) -> None:
        """Rebuild if the inputs changed (checked at most once per CHECK_INTERVAL)."""
        now = time.monotonic()
        if not force and self.signature is not None and now - self.checked < CHECK_INTERVAL:
            return
        with self.lock:
            signature = _signature()
            self.checked = now
            if not force and signature == self.signature:
                return
            if self.signature is not None:
                elements_module._load.cache_clear()  # an element file changed: its lru_cache holds the old rows
            resources = build_catalogue()
            self.resources, self.by_code = resources, {r["code"]: r for r in resources}
            self.signature = signature
            self.generation += 1


_cache = _Cache()


def refresh(force: bool = True) -> int:
    """Rebuild the catalogue now (tests, after editing inputs); returns the new generation number."""
    _cache.refresh(force=force)
    return _cache.generation


def generation() -> int:
    """The generation of the current catalogue (changes whenever it is rebuilt)."""
    _cache.refresh()
    return _cache.generation


def all_resources() -> list[dict[str, Any]]:
    """Every resource of the catalogue, in catalogue order (do not mutate the dicts)."""
    _cache.refresh()
    return _cache.resources


def resource_index() -> dict[str, dict[str, Any]]:
    """Resources by code (do not mutate)."""
    _cache.refresh()
    return _cache.by_code


def get_resource(code: str) -> dict[str, Any]:
    """One resource by code; UnknownResource when there is none."""
    found = resource_index().get(code)
    if found is None:
        raise UnknownResource(f"目录中没有资源代码 {code!r}")
    return found


_decided: tuple[tuple[str, int, int], dict[str, str], dict[str, Any]] | None = None
_decided_lock = threading.Lock()


def _decided_parts() -> tuple[dict[str, str], dict[str, Any]]:
    """Purposes and policy of resources.yaml, parsed once per version of the file (keyed by path, mtime and size:
    a stat instead of a YAML parse per call)."""
    global _decided
    path = DECISIONS_FILE
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = (str(path), 0, 0)
    found = _decided
    if found is None or found[0] != key:
        with _decided_lock:
            decisions = load_decisions(path)
            found = _decided = (key, {str(k): str(v) for k, v in (decisions.get("purposes", {}) or {}).items()},
                                dict(decisions.get("policy", {}) or {}))
    return found[1], found[2]


def purposes() -> dict[str, str]:
    """用途代码 → 名称, from resources.yaml (cached per version of the file; a copy)."""
    return dict(_decided_parts()[0])


def policy() -> dict[str, Any]:
    """The catalogue's policy settings (answer deadline, holidays, cache recheck interval); cached, a copy."""
    return dict(_decided_parts()[1])


__all__ = ["CatalogueError", "UnknownResource", "all_resources", "build_catalogue", "department_name", "generation",
           "get_resource", "policy", "promised_frequency", "purposes", "refresh", "resource_index"]
