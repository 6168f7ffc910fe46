"""Standard data elements (数据元) of the four base libraries, read from CSV data files. 标准数据元。

Each library — population 人口库, legal_entity 法人库, licence 电子证照库, credit 信用库 — is one
UTF-8 CSV in ``data/elements`` (see libraries.yaml there for the columns), so an element is added or
re-graded by editing data, not code. Loading validates every row against the code tables.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from schemas.code_tables import CodeTable, CodeTableError, load_table, table_names

ELEMENT_DIR = Path(__file__).resolve().parent / "data" / "elements"
LIBRARIES = ("population", "legal_entity", "licence", "credit")
TYPES = ("string", "date", "datetime", "integer", "decimal", "boolean", "code")
SHARING_TYPES = ("无条件共享", "有条件共享", "不予共享")
IDENTIFIER_KINDS = ("resident-id", "uscc", "licence-id")


class ElementError(LookupError):
    """An unknown library or element, or a malformed element file."""


@dataclass(frozen=True)
class Element:
    """One standard data element of a base library."""

    library: str
    name: str
    type: str
    label: str
    required: bool
    sensitivity: int
    sharing: str
    code_table: str | None
    identifier: str | None
    group: str
    description: str

    @property
    def is_code(self) -> bool:
        """Whether values come from a code table."""
        return self.code_table is not None


def _bool(text: str, where: str) -> bool:
    """'true'/'false' from the CSV."""
    if text.lower() not in ("true", "false"):
        raise ElementError(f"{where}: required 须为 true/false must be true or false, got {text!r}")
    return text.lower() == "true"


def _element(library: str, row: dict[str, str], line: int) -> Element:
    """One validated element from a CSV row."""
    where = f"{library}.csv line {line}"
    if row["type"] not in TYPES:
        raise ElementError(f"{where}: 未知类型 unknown type {row['type']!r}; one of {TYPES}")
    if row["sharing"] not in SHARING_TYPES:
        raise ElementError(f"{where}: 未知共享类型 unknown sharing type {row['sharing']!r}")
    if row["sensitivity"] not in ("1", "2", "3", "4"):
        raise ElementError(f"{where}: 敏感级别须为1-4 sensitivity must be 1-4, got {row['sensitivity']!r}")
    code_table = row.get("code_table") or None
    if (row["type"] == "code") != (code_table is not None):
        raise ElementError(f"{where}: type=code 与 code_table 须同时出现 type 'code' goes with a code_table")
    if code_table and code_table not in table_names():
        raise ElementError(f"{where}: 代码表不存在 unknown code table {code_table!r}")
    identifier = row.get("identifier") or None
    if identifier and identifier not in IDENTIFIER_KINDS:
        raise ElementError(f"{where}: 未知标识类型 unknown identifier kind {identifier!r}")
    return Element(library=library, name=row["name"], type=row["type"], label=row["label"],
                   required=_bool(row["required"], where), sensitivity=int(row["sensitivity"]), sharing=row["sharing"],
                   code_table=code_table, identifier=identifier, group=row.get("group", ""),
                   description=row.get("description", ""))


@lru_cache(maxsize=8)
def _load(library: str) -> tuple[Element, ...]:
    """All elements of one library, validated (cached)."""
    if library not in LIBRARIES:
        raise ElementError(f"未知基础库 unknown library {library!r}; one of {LIBRARIES}")
    path = ELEMENT_DIR / f"{library}.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = [{key: (value or "").strip() for key, value in row.items()} for row in csv.DictReader(handle)]
    elements = tuple(_element(library, row, line) for line, row in enumerate(rows, start=2))
    names = [element.name for element in elements]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ElementError(f"{library}.csv: 数据元名称重复 duplicate element names {duplicates}")
    return elements


def library_elements(library: str, group: str | None = None) -> list[Element]:
    """Elements of ``library`` ('population', 'legal_entity', 'licence', 'credit'), optionally of one group."""
    return [element for element in _load(library) if group is None or element.group == group]


def element(library: str, name: str) -> Element:
    """The element called ``name`` (English identifier) in ``library``."""
    for candidate in _load(library):
        if candidate.name == name:
            return candidate
    raise ElementError(f"{library} 无此数据元 has no element named {name!r}")


def element_by_label(library: str, label: str, group: str | None = None) -> Element:
    """The element whose Chinese label is ``label``; pass ``group`` where the label recurs (e.g. 列入日期)."""
    matches = [e for e in _load(library) if e.label == label and (group is None or e.group == group)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ElementError(f"{library} 无此数据元 has no element labelled {label!r}")
    raise ElementError(f"{library} 中 {label!r} 出现于多个分组 is in several groups {[e.group for e in matches]}; pass group=")


def groups(library: str) -> list[str]:
    """The groups of ``library`` in file order (e.g. the credit record types)."""
    return list(dict.fromkeys(element.group for element in _load(library)))


def library_title(library: str) -> str:
    """Chinese title of a library, e.g. 人口库."""
    _load(library)
    index = yaml.safe_load((ELEMENT_DIR / "libraries.yaml").read_text(encoding="utf-8")) or {}
    return str(index.get(library, {}).get("title", library))


def all_elements() -> list[Element]:
    """Every element of every library."""
    return [element for library in LIBRARIES for element in _load(library)]


def code_table_of(element_: Element) -> CodeTable:
    """The loaded code table of a code element (raises for other types)."""
    if element_.code_table is None:
        raise CodeTableError(f"{element_.library}.{element_.name} 不是代码型数据元 is not a code element")
    return load_table(element_.code_table)
