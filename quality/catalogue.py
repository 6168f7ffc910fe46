"""The rule catalogue: quality/rules/<library>.yaml plus the rules derived from the standard data elements.

质量规则目录。Required flags, code tables, identifier kinds and date types are read from
schemas/data/elements (and from the source fields a catalogue declares), so they are never typed twice;
the YAML files add what the element catalogue cannot say: consistency, uniqueness, cross-source
comparison, referential integrity, timeliness, and each source's promises.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from connectors.registry import SourceSpec, all_sources
from schemas.code_tables import load_table
from schemas.elements import LIBRARIES, Element, ElementError, library_elements

RULE_DIR = Path(__file__).resolve().parent / "rules"
DIMENSIONS = ("完整性", "规范性", "一致性", "唯一性", "及时性", "关联性")
SEVERITIES = ("error", "warning")
IDENTIFIER_STANDARDS = {
    "resident-id": "GB 11643-1999 公民身份号码",
    "uscc": "GB 32100-2015 统一社会信用代码",
    "licence-id": "GB/T 36904-2018 证照标识",
}
FIELD_KEYS = {"identifier", "type", "values", "code_table", "label", "severity"}
SOURCE_KEYS = {"anchor", "natural_key", "required", "not_required", "fields", "update_frequency"}
RULE_KEYS = {"id", "name", "dimension", "severity", "check", "fields", "params", "sources", "standard", "description"}
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


class CatalogueError(ValueError):
    """A rule file is malformed; the message names the file, the entry and the problem."""


@dataclass(frozen=True)
class Rule:
    """One quality rule: what it checks, on which fields, how bad a failure is, and which standard it enforces."""

    id: str
    name: str
    library: str
    dimension: str
    severity: str
    check: str
    fields: tuple[str, ...]
    standard: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    sources: tuple[str, ...] | None = None  # None: every source of the library that has the fields (and any file)
    exclude: tuple[str, ...] = ()  # sources whose own agreement overrides this rule (e.g. a narrower value list)
    derived: bool = False  # generated from the element catalogue
    description: str = ""

    @property
    def field(self) -> str:
        """The field a finding of this rule is reported against."""
        return str(self.params.get("report_field") or (self.fields[0] if self.fields else ""))

    def applies_to(self, source_id: str, columns: set[str] | list[str]) -> bool:
        """Whether the rule runs on a source whose standardised batch has these columns."""
        if (self.sources is not None and source_id not in self.sources) or source_id in self.exclude:
            return False
        if self.params.get("any_field"):  # e.g. a credit subject is named by whichever code field the source has
            return any(name in columns for name in self.fields)
        return all(name in columns for name in self.fields)


@dataclass(frozen=True)
class FieldDecl:
    """A source field the element catalogue does not describe (or describes differently for that source)."""

    name: str
    identifier: str | None = None
    type: str | None = None
    values: tuple[str, ...] = ()
    code_table: str | None = None
    label: str | None = None
    severity: str | None = None


@dataclass(frozen=True)
class SourceProfile:
    """What one source promised: its natural key, extra required fields, declared fields, update frequency."""

    source_id: str
    library: str
    anchor: bool = False
    natural_key: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    not_required: tuple[str, ...] = ()
    fields: dict[str, FieldDecl] = field(default_factory=dict, hash=False, compare=False)
    update_frequency: timedelta | None = None


@dataclass(frozen=True)
class Catalogue:
    """Every rule of one library and the profiles of its sources."""

    library: str
    prefix: str
    rules: tuple[Rule, ...]
    profiles: dict[str, SourceProfile]
    natural_key: tuple[str, ...] = ()  # the library's default natural key (a source may declare its own)
    long_term_markers: tuple[str, ...] = ()
    aliases: dict[str, dict[str, str]] = field(default_factory=dict, hash=False, compare=False)

    def rule(self, rule_id: str) -> Rule:
        """One rule by id."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"未知规则 unknown rule {rule_id!r} in {self.library}")

    def profile(self, source_id: str) -> SourceProfile:
        """The profile of a source (an empty one if the catalogue says nothing about it)."""
        return self.profiles.get(source_id) or SourceProfile(source_id, self.library, natural_key=self.natural_key)

    def rules_for(self, source_id: str, columns: set[str] | list[str]) -> list[Rule]:
        """The rules that run on a source's standardised batch."""
        return [rule for rule in self.rules if rule.applies_to(source_id, columns)]


def parse_duration(text: str, where: str) -> timedelta:
    """An ISO 8601 duration such as P1D, P7D, P1M, PT1H (a month counts 30 days, a year 365)."""
    match = _DURATION.match(str(text).strip())
    if not match or not any(match.groups()):
        raise CatalogueError(f"{where}: 无法识别的周期 unknown duration {text!r} (e.g. P1D, P7D, P1M, PT1H)")
    years, months, weeks, days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(days=365 * years + 30 * months + 7 * weeks + days, hours=hours, minutes=minutes)


def _tuple(value: Any, where: str) -> tuple[str, ...]:
    """A YAML list of names as a tuple of strings."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise CatalogueError(f"{where}: 须为列表 must be a list of names, got {value!r}")
    return tuple(str(v) for v in value)


def _severity(value: Any, where: str) -> str:
    """A checked severity."""
    if value not in SEVERITIES:
        raise CatalogueError(f"{where}: severity 须为 error 或 warning, got {value!r}")
    return str(value)


def _field_decl(name: str, body: Any, where: str) -> FieldDecl:
    """One declared source field."""
    if not isinstance(body, dict) or set(body) - FIELD_KEYS:
        raise CatalogueError(f"{where}.{name}: 字段声明只能含 {sorted(FIELD_KEYS)} field keys, got {body!r}")
    identifier = body.get("identifier")
    if identifier is not None and identifier not in IDENTIFIER_STANDARDS:
        raise CatalogueError(f"{where}.{name}: 未知标识类型 unknown identifier kind {identifier!r}")
    if body.get("code_table"):
        load_table(body["code_table"])  # raises a clear error for an unknown table
    severity = _severity(body["severity"], f"{where}.{name}") if "severity" in body else None
    return FieldDecl(name=name, identifier=identifier, type=body.get("type"), values=_tuple(body.get("values"), f"{where}.{name}.values"),
                     code_table=body.get("code_table"), label=body.get("label"), severity=severity)


def _profile(library: str, source_id: str, body: Any, default_key: tuple[str, ...], where: str) -> SourceProfile:
    """One source profile."""
    body = body or {}
    if not isinstance(body, dict) or set(body) - SOURCE_KEYS:
        raise CatalogueError(f"{where}: 数据源约定只能含 {sorted(SOURCE_KEYS)} source keys, got {sorted(body) if isinstance(body, dict) else body!r}")
    frequency = body.get("update_frequency")
    return SourceProfile(
        source_id=source_id,
        library=library,
        anchor=bool(body.get("anchor", False)),
        natural_key=_tuple(body.get("natural_key"), f"{where}.natural_key") or default_key,
        required=_tuple(body.get("required"), f"{where}.required"),
        not_required=_tuple(body.get("not_required"), f"{where}.not_required"),
        fields={name: _field_decl(name, decl, f"{where}.fields") for name, decl in (body.get("fields") or {}).items()},
        update_frequency=parse_duration(frequency, f"{where}.update_frequency") if frequency else None,
    )


def _rule(library: str, body: Any, where: str) -> Rule:
    """One explicit rule from the YAML file."""
    from quality.checks import CHECKS  # the check kinds live beside their implementations

    if not isinstance(body, dict) or set(body) - RULE_KEYS or not {"id", "name", "dimension", "severity", "check"} <= set(body):
        raise CatalogueError(f"{where}: 规则须含 id/name/dimension/severity/check，只能含 {sorted(RULE_KEYS)}, got {body!r}")
    where = f"{where} {body['id']}"
    if body["dimension"] not in DIMENSIONS:
        raise CatalogueError(f"{where}: 未知维度 unknown dimension {body['dimension']!r}; one of {DIMENSIONS}")
    if body["check"] not in CHECKS:
        raise CatalogueError(f"{where}: 未知检查类型 unknown check {body['check']!r}; one of {sorted(CHECKS)}")
    sources = body.get("sources")
    return Rule(
        id=str(body["id"]), name=str(body["name"]), library=library, dimension=body["dimension"],
        severity=_severity(body["severity"], where), check=body["check"], fields=_tuple(body.get("fields"), f"{where}.fields"),
        standard=str(body.get("standard", "")), params=dict(body.get("params") or {}),
        sources=_tuple(sources, f"{where}.sources") if sources is not None else None,
        description=str(body.get("description", "")),
    )


@dataclass
class _FieldFacts:
    """What is known about one field of the library across the element catalogue and the source declarations."""

    name: str
    label: str
    element: Element | None = None
    required_by: set[str] = field(default_factory=set)  # sources that must fill it (None-element fields)
    decls: dict[str, FieldDecl] = field(default_factory=dict)  # source id → declaration


def _library_sources(library: str) -> list[SourceSpec]:
    """The registered sources of a library."""
    return [spec for spec in all_sources() if spec.library == library]


@lru_cache(maxsize=8)
def field_labels(library: str) -> dict[str, str]:
    """Field → a Chinese label: the element's, else the source column it is mapped from."""
    labels: dict[str, str] = {}
    for spec in _library_sources(library):
        for mapping in spec.fields:
            labels.setdefault(mapping.target, mapping.source)
    return labels | {e.name: e.label for e in library_elements(library)}


def _derive(library: str, prefix: str, config: dict[str, Any], profiles: dict[str, SourceProfile],
            may_be_future: set[str]) -> list[Rule]:
    """Rules generated from the element catalogue and the declared source fields."""
    labels = field_labels(library)
    elements = {e.name: e for e in library_elements(library)}
    rules: list[Rule] = []

    def severity(kind: str, name: str, decl: FieldDecl | None = None) -> str:
        """The severity of a derived rule on a field (declaration, then overrides, then the kind's default)."""
        settings = config.get(kind) or {}
        if decl is not None and decl.severity:
            return decl.severity
        return _severity((settings.get("overrides") or {}).get(name, settings.get("severity", "error")), f"derive.{kind}")

    def declared(attribute: str) -> dict[str, dict[str, FieldDecl]]:
        """field → {source: declaration} for declarations that set ``attribute``."""
        out: dict[str, dict[str, FieldDecl]] = {}
        for profile in profiles.values():
            for decl in profile.fields.values():
                if getattr(decl, attribute):
                    out.setdefault(decl.name, {})[profile.source_id] = decl
        return out


    if "required" in config:
        extra: dict[str, set[str]] = {}
        for profile in profiles.values():
            for name in profile.required:
                extra.setdefault(name, set()).add(profile.source_id)
        exempt = {name: {p.source_id for p in profiles.values() if name in p.not_required} for name in labels}
        # Elements of the 'source' group (data source department, update time) are provenance the hub fills from
        # the registry and the run: a department is not faulted for them.
        hub_filled = {n for n, e in elements.items() if e.group == "source"}
        for name in sorted(set(extra) | {n for n, e in elements.items() if e.required and n not in hub_filled}):
            element_required = name in elements and elements[name].required and name not in hub_filled
            rules.append(Rule(f"{prefix}-REQ-{name}", f"{labels.get(name, name)}不得为空", library, "完整性",
                              severity("required", name), "required", (name,),
                              f"数据元目录必填项（schemas/data/elements/{library}.csv）" if element_required else "数据源约定必填项",
                              sources=None if element_required else tuple(sorted(extra[name])),
                              exclude=tuple(sorted(exempt.get(name, set()))) if element_required else (), derived=True))
    if "code_table" in config:
        valued = declared("values")
        tabled = declared("code_table")
        for name, element in elements.items():
            if element.code_table:
                table = load_table(element.code_table)
                overridden = set(valued.get(name, {})) | set(tabled.get(name, {}))
                rules.append(Rule(f"{prefix}-CODE-{name}", f"{element.label}须为{table.title}中的代码", library, "规范性",
                                  severity("code_table", name), "code_table", (name,), table.standard or table.title,
                                  params={"table": element.code_table}, exclude=tuple(sorted(overridden)), derived=True))
        for name, by_source in sorted(tabled.items()):
            for source_id, decl in by_source.items():
                table = load_table(decl.code_table)
                rules.append(Rule(f"{prefix}-CODE-{name}-{source_id}", f"{labels.get(name, name)}须为{table.title}中的代码", library,
                                  "规范性", severity("code_table", name, decl), "code_table", (name,), table.standard or table.title,
                                  params={"table": decl.code_table}, sources=(source_id,), derived=True))
        for name, by_source in sorted(valued.items()):
            for source_id, decl in by_source.items():
                rules.append(Rule(f"{prefix}-VALUES-{name}" + ("" if len(by_source) == 1 else f"-{source_id}"),
                                  f"{labels.get(name, name)}须为约定取值之一", library, "规范性", severity("code_table", name, decl),
                                  "allowed_values", (name,), f"数据源约定取值：{'、'.join(decl.values)}",
                                  params={"values": list(decl.values)}, sources=(source_id,), derived=True))
    if "identifier" in config:
        kinds: dict[str, dict[str | None, FieldDecl | None]] = {}
        for name, element in elements.items():
            if element.identifier:
                kinds.setdefault(name, {})[None] = None
        for name, by_source in declared("identifier").items():
            for source_id, decl in by_source.items():
                kinds.setdefault(name, {})[source_id] = decl
        for name in sorted(kinds):
            for source_id, decl in kinds[name].items():
                kind = decl.identifier if decl is not None else elements[name].identifier
                scope = (source_id,) if source_id else None
                exclude = () if source_id else tuple(sorted(s for s in kinds[name] if s))
                suffix = f"-{source_id}" if source_id and len(kinds[name]) > 1 else ""
                label = labels.get(name, name)
                rules.append(Rule(f"{prefix}-ID-{name}{suffix}", f"{label}须为有效的{IDENTIFIER_STANDARDS[kind].split(' ')[1]}", library,
                                  "规范性", severity("identifier", name, decl), "identifier", (name,), IDENTIFIER_STANDARDS[kind],
                                  params={"kind": kind}, sources=scope, exclude=exclude, derived=True))
                if kind == "uscc":  # STANDARDS.md: a failed check character is a warning, never a rejection
                    rules.append(Rule(f"{prefix}-IDCHK-{name}{suffix}", f"{label}校验位正确", library, "规范性", "warning",
                                      "uscc_check", (name,), "GB 32100-2015 第5章校验码；GB 11714 组织机构代码校验码",
                                      sources=scope, exclude=exclude, derived=True))
    if "date_not_future" in config:
        dated = {name for name, e in elements.items() if e.type in ("date", "datetime")}
        dated |= {name for name, by_source in declared("type").items() if any(d.type in ("date", "datetime") for d in by_source.values())}
        for name in sorted(dated - may_be_future):
            rules.append(Rule(f"{prefix}-FUTURE-{name}", f"{labels.get(name, name)}不得晚于基准日期", library, "一致性",
                              severity("date_not_future", name), "date_not_future", (name,), "日期逻辑：已发生的事实不晚于数据基准日期",
                              derived=True))
    if "format" in config:
        rules.append(Rule(f"{prefix}-FORMAT", "字段值可按标准格式识别", library, "规范性", severity("format", "*"), "format", (),
                          "GB/T 7408 日期格式；数据元类型", derived=True))
    return rules


@lru_cache(maxsize=8)
def load_catalogue(library: str) -> Catalogue:
    """The full catalogue of one library (explicit and derived rules), validated."""
    if library not in LIBRARIES:
        raise CatalogueError(f"未知基础库 unknown library {library!r}; one of {LIBRARIES}")
    path = RULE_DIR / f"{library}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CatalogueError(f"无法读取规则目录 cannot read {path}: {error}") from error
    where = path.name
    prefix = str(document.get("prefix") or library[:3].upper())
    default_key = _tuple(document.get("natural_key"), f"{where}.natural_key")
    registered = {spec.id for spec in _library_sources(library)}
    profiles = {}
    for source_id, body in (document.get("sources") or {}).items():
        if source_id not in registered:
            raise CatalogueError(f"{where}: sources.{source_id} 未在数据源登记簿中登记为{library} not a registered {library} source")
        profiles[source_id] = _profile(library, source_id, body, default_key, f"{where}.sources.{source_id}")
    for source_id in registered - set(profiles):
        profiles[source_id] = SourceProfile(source_id, library, natural_key=default_key)
    try:
        derived = _derive(library, prefix, document.get("derive") or {}, profiles, set(_tuple(document.get("may_be_future"), f"{where}.may_be_future")))
    except ElementError as error:
        raise CatalogueError(f"{where}: {error}") from error
    explicit = [_rule(library, body, f"{where} rules[{i}]") for i, body in enumerate(document.get("rules") or [])]
    rules = tuple(derived + explicit)
    ids = [rule.id for rule in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogueError(f"{where}: 规则编号重复 duplicate rule ids {duplicates}")
    aliases = {str(t): {str(k): str(v) for k, v in (m or {}).items()} for t, m in (document.get("aliases") or {}).items()}
    return Catalogue(library=library, prefix=prefix, rules=rules, profiles=profiles, natural_key=default_key,
                     long_term_markers=_tuple(document.get("long_term_markers"), f"{where}.long_term_markers"), aliases=aliases)


@lru_cache(maxsize=8)
def ruleset_version(library: str) -> str:
    """Short SHA-256 of a library's rule catalogue (its YAML and the rules derived from the data elements), recorded
    with every checked run and every claim so a golden field can say which rules admitted it."""
    catalogue = load_catalogue(library)
    digest = hashlib.sha256((RULE_DIR / f"{library}.yaml").read_bytes())
    digest.update(repr(catalogue.rules).encode("utf-8"))
    return digest.hexdigest()[:16]


def all_rules() -> list[Rule]:
    """Every rule of every library."""
    return [rule for library in LIBRARIES for rule in load_catalogue(library).rules]
