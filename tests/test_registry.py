"""The source registry: every entry is complete and refers to things that exist."""

from __future__ import annotations

import pytest

from connectors.registry import RegistryError, _spec, all_sources
from schemas.code_tables import load_table
from schemas.elements import library_elements


def test_every_department_code_is_in_the_departments_table() -> None:
    departments = load_table("departments")
    for spec in all_sources():
        assert spec.department_code in departments, f"{spec.id}: {spec.department_code}"


def test_core_sources_map_only_to_standard_elements() -> None:
    """The 公安 and 市场监管 registrations feed the libraries directly: their targets must be standard elements."""
    for spec in all_sources():
        if spec.id in {"gongan_hjrk", "scjg_qydj", "scjg_gtgsh"}:
            names = {element.name for element in library_elements(spec.library)}
            assert {m.target for m in spec.fields} <= names, spec.id


def test_malformed_entries_are_named() -> None:
    with pytest.raises(RegistryError, match="broken"):
        _spec({"id": "broken", "department": "x"})
    with pytest.raises(RegistryError, match="unknown kind"):
        _spec({"id": "k", "department": "d", "department_code": "gongan", "kind": "ftp", "connection": "c",
               "library": "population", "primary_key": ["id"], "fields": {"a": {"to": "name"}}})
