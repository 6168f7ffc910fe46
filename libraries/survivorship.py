"""Field-level survivorship: one value per golden field out of every source's latest claim, and why.

The rules are declarative (libraries/survivorship.yaml): authority order per library and per field, then
recency, then completeness. A null never beats a value. An active steward override beats every source.
Disagreements among live claims on a field are reported as conflicts (stored by libraries/merge.py).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CONFIG_PATH = Path(__file__).with_name("survivorship.yaml")
_OLDEST = float("-inf")


class SurvivorshipError(ValueError):
    """survivorship.yaml is malformed."""


@dataclass(frozen=True)
class Rules:
    """Authority order of one library: default and per field (entries are department codes or source ids)."""

    order: tuple[str, ...] = ()
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def authority(self, name: str) -> tuple[str, ...]:
        """The authority list deciding one field."""
        return self.fields.get(name, self.order)


@dataclass
class LiveClaim:
    """One source's latest claim about a subject, decrypted."""

    source_id: str
    source_key: str
    run_id: str
    extracted_at: dt.datetime
    valid_from: dt.datetime | None
    ruleset_version: str | None
    fields: dict[str, Any]


@dataclass
class ActiveOverride:
    """A steward's active correction of one field."""

    id: int
    field: str
    value: Any
    steward: str
    created_at: dt.datetime


@dataclass
class Survivor:
    """The golden record of one subject, the lineage of each field, and the sources' disagreements."""

    record: dict[str, Any]
    lineage: dict[str, dict[str, Any]]
    conflicts: list[dict[str, Any]]
    valid_from: dt.datetime | None


@lru_cache(maxsize=4)
def load_rules(path: Path = CONFIG_PATH) -> dict[str, Rules]:
    """Parse and check survivorship.yaml."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SurvivorshipError(f"无法读取择优规则 cannot read {path}: {error}") from error
    rules = {}
    for library, body in document.items():
        body = body or {}
        unknown = set(body) - {"order", "fields"}
        if unknown:
            raise SurvivorshipError(f"{path.name}: {library} 含未知配置项 unknown keys {sorted(unknown)}")
        fields = {str(k): tuple(str(s) for s in (v or [])) for k, v in (body.get("fields") or {}).items()}
        rules[str(library)] = Rules(tuple(str(s) for s in body.get("order") or []), fields)
    return rules


def rules_for(library: str) -> Rules:
    """The rules of one library (none declared = recency and completeness only)."""
    return load_rules().get(library, Rules())


@lru_cache(maxsize=256)
def department_of(source_id: str) -> str | None:
    """The department code of a registered source (None for a source the registry does not know)."""
    from connectors.registry import get_source

    try:
        return get_source(source_id).department_code
    except (KeyError, ValueError):
        return None


def same(a: Any, b: Any) -> bool:
    """Values equal as the history stores them (so 1.50 and 1.5, or a date and its ISO text, agree)."""
    return canonical_value(a) == canonical_value(b)


def canonical_value(value: Any) -> str:
    """One value as canonical JSON text."""
    return _CANONICAL.encode(value)


def _json_default(value: Any) -> Any:
    """Dates, times and decimals as text (Decimal normalised: 100.500000 → 100.5)."""
    from decimal import Decimal

    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"无法序列化 cannot serialise {type(value).__name__}")


# = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default), without
# building an encoder per call (an encoder keeps no state between calls)
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _rank(claim: LiveClaim, authority: tuple[str, ...], completeness: int) -> tuple:
    """Sort key: authority, then recency (valid_from, extracted_at), then completeness, then source id."""
    return (_position(claim.source_id, authority), *_tail(claim, completeness))


def _position(source_id: str, authority: tuple[str, ...]) -> int:
    """Where a source stands in an authority list (its id or its department; unlisted = after every listed one)."""
    department = department_of(source_id)
    for i, entry in enumerate(authority):
        if entry == source_id or entry == department:
            return i
    return len(authority)


def _tail(claim: LiveClaim, completeness: int) -> tuple:
    """The rank after authority: recency (valid_from, extracted_at), completeness, source id, source key."""
    valid = claim.valid_from.timestamp() if claim.valid_from else _OLDEST
    return (-valid, -claim.extracted_at.timestamp(), -completeness, claim.source_id, claim.source_key)


def _lineage_of(claim: LiveClaim) -> dict[str, Any]:
    """Where a field's value came from."""
    return {"source_id": claim.source_id, "source_key": claim.source_key, "run_id": claim.run_id,
            "extracted_at": claim.extracted_at.isoformat(), "ruleset_version": claim.ruleset_version,
            "valid_from": claim.valid_from.isoformat() if claim.valid_from else None}


def _same_value(a: Any, b: Any) -> bool:
    """same(a, b), without serialising the common case of two texts."""
    if type(a) is str and type(b) is str:
        return a == b
    return same(a, b)


def survive(library: str, fields: tuple[str, ...], claims: list[LiveClaim], overrides: list[ActiveOverride]) -> Survivor:
    """The golden record of one subject from its live claims and active overrides.

    Every field won by the same claim shares one lineage dict (do not mutate a Survivor's lineage entries)."""
    if len(claims) == 1 and not overrides:
        return _survive_single(fields, claims[0])
    return _survive_ranked(library, fields, claims, overrides)


def _survive_ranked(library: str, fields: tuple[str, ...], claims: list[LiveClaim], overrides: list[ActiveOverride]) -> Survivor:
    """The general case: rank the claims per authority list, pick per field, collect disagreements."""
    rules = rules_for(library)
    tails = [_tail(c, sum(v is not None for v in c.fields.values())) for c in claims]
    orders: dict[tuple[str, ...], list[int]] = {}  # authority list -> claim positions, best first (a total order)
    lineages: dict[int, dict[str, Any]] = {}
    by_field = {o.field: o for o in overrides}
    record: dict[str, Any] = {}
    lineage: dict[str, dict[str, Any]] = {}
    conflicts: list[dict[str, Any]] = []
    valid_from: dt.datetime | None = None
    for name in fields:
        authority = rules.authority(name)
        order = orders.get(authority)
        if order is None:
            ranks = [(_position(c.source_id, authority), *tails[i]) for i, c in enumerate(claims)]
            order = orders[authority] = sorted(range(len(claims)), key=ranks.__getitem__)
        candidates = [i for i in order if claims[i].fields.get(name) is not None]  # a null never beats a value
        winner = claims[candidates[0]] if candidates else None
        if winner is not None:
            value = winner.fields[name]
            for i in candidates[1:]:
                loser = claims[i]
                if not _same_value(loser.fields[name], value):
                    conflicts.append({"field": name, "source_id": loser.source_id, "source_key": loser.source_key,
                                      "value": loser.fields[name], "reference_source_id": winner.source_id,
                                      "reference_key": winner.source_key, "reference_value": value})
        override = by_field.get(name)
        if override is not None:  # a steward's correction is applied last: no collection erases it
            record[name] = override.value
            lineage[name] = {"override": override.id, "steward": override.steward, "at": override.created_at.isoformat()}
        elif winner is not None:
            record[name] = winner.fields[name]
            line = lineages.get(candidates[0])
            if line is None:
                line = lineages[candidates[0]] = _lineage_of(winner)
            lineage[name] = line
            if winner.valid_from and (valid_from is None or winner.valid_from > valid_from):
                valid_from = winner.valid_from
        else:
            record[name] = None
    return Survivor(record, lineage, conflicts, valid_from)


def _survive_single(fields: tuple[str, ...], claim: LiveClaim) -> Survivor:
    """One live claim and no override: the claim is the record (no ranking, no conflicts), one lineage for every field."""
    values = claim.fields
    record = {name: values.get(name) for name in fields}
    present = [name for name in fields if record[name] is not None]
    if not present:
        return Survivor(record, {}, [], None)
    line = _lineage_of(claim)
    return Survivor(record, dict.fromkeys(present, line), [], claim.valid_from or None)


__all__ = ["ActiveOverride", "LiveClaim", "Rules", "Survivor", "SurvivorshipError", "canonical_value", "load_rules",
           "rules_for", "same", "survive"]
