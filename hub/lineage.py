"""Field lineage as the base libraries store it: one entry per source claim, not per field.

A golden record's lineage says, per field, where the value came from: a source claim (source, record key, run,
extraction time, rule-set version, valid-from) or a steward's override. Most fields of a record come from one
claim, so the per-field form repeats the same entry for every field (about 2 KB a person), and the merge writes it
twice per changed subject (history and current table): at scale 1 that was over half of the bytes the population
merge wrote. Stored, the lineage is a list of groups, each entry once with the fields it covers:

    [{"fields": ["id_number", "name", …], "source_id": "gongan_hjrk", "run_id": …}, {"fields": ["phone"], "override": 7, …}]

The column type (LineageJSON) hands readers the per-field dict again, so views, history and the API see the same
lineage as before; rows written in the per-field form (a dict) read as they are. In SQL, `json_each(lineage)`
yields the entries of either form, so the release's provenance query reads `$.ruleset_version` from both.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

FIELDS = "fields"  # the group's key naming its fields (no entry has a key of that name)
PerField = dict[str, dict[str, Any]]


def compact(lineage: PerField) -> list[dict[str, Any]]:
    """The stored form: entries in the order their first field appears, each with the fields it covers."""
    groups: dict[int, dict[str, Any]] = {}
    for name, entry in lineage.items():
        found = groups.get(id(entry))
        if found is None:  # entries equal in value but distinct objects stay apart: merge shares one per claim
            groups[id(entry)] = found = {FIELDS: [], **entry}
        found[FIELDS].append(name)
    return list(groups.values())


def expand(stored: Any) -> PerField | None:
    """The per-field dict of a stored lineage (either form; None stays None)."""
    if not isinstance(stored, list):
        return stored
    out: PerField = {}
    for group in stored:
        entry = {k: v for k, v in group.items() if k != FIELDS}
        for name in group[FIELDS]:
            out[name] = entry
    return out


_ENCODER = json.JSONEncoder(ensure_ascii=False)  # = json.dumps(value, ensure_ascii=False), the engines' serialiser


def compact_text(lineage: PerField) -> str:
    """The stored form as the engines' JSON serialiser writes it (for bulk writers that pass JSON text through)."""
    return _ENCODER.encode(compact(lineage))


class LineageJSON(sa.TypeDecorator[dict[str, Any]]):
    """A JSON column of field lineage: written compact (a dict is grouped on the way in), read per field."""

    impl = sa.JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        """A per-field dict goes in compact; the compact form (a list), and anything not per field, as it is."""
        if isinstance(value, dict) and all(isinstance(entry, dict) for entry in value.values()):
            return compact(value)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        """Per field, whichever form the row holds."""
        return expand(value)


__all__ = ["FIELDS", "LineageJSON", "compact", "compact_text", "expand"]
