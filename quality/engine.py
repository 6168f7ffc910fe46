"""The bare pass: every rule of a library over a whole standardised batch, vectorised, and the verdict per row.

Verdict: a row failing any error-severity rule is quarantined; a duplicate (and nothing worse) is merged
into the record it repeats; every other row loads, warnings or not. Findings are produced only for failing
rows, so their cost follows the defect rate, not the batch size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.catalogue import Rule
from quality.checks import CHECKS, SOURCE_LEVEL_CHECKS, Outcome
from quality.frame import Frame, RuleContext
from quality.staging import StagedRows, take_rows

LOAD, QUARANTINE, MERGE = 0, 1, 2
BLOCK_ROWS = 100_000  # rows per block of the row-by-row rules: bounds what a batch's derived columns hold
WHOLE_BATCH_CHECKS = frozenset({"duplicate"})  # checks that compare rows with each other see the whole batch
VERDICTS = {LOAD: "load", QUARANTINE: "quarantine", MERGE: "merge"}

FINDING_SCHEMA = pa.schema([
    ("row", pa.int64()), ("source_key", pa.string()), ("rule_id", pa.string()), ("field", pa.string()),
    ("severity", pa.string()), ("dimension", pa.string()), ("message", pa.string()),
])
CONFLICT_SCHEMA = pa.schema([
    ("row", pa.int64()), ("source_key", pa.string()), ("rule_id", pa.string()), ("field", pa.string()),
    ("subject", pa.string()), ("value", pa.string()), ("reference_source", pa.string()),
    ("reference_key", pa.string()), ("reference_value", pa.string()),
])


@dataclass
class Evaluation:
    """The outcome of every rule over one batch, and what happens to each row."""

    frame: Frame
    rules: list[Rule]
    outcomes: dict[str, Outcome]
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows evaluated."""
        return self.frame.rows

    def fail(self, rule_id: str) -> np.ndarray:
        """Rows failing one rule."""
        return self.outcomes[rule_id].fail

    def any_fail(self, rules: list[Rule]) -> np.ndarray:
        """Rows failing any of the rules."""
        mask = np.zeros(self.rows, dtype=bool)
        for rule in rules:
            mask |= self.outcomes[rule.id].fail
        return mask

    @cached_property
    def error_mask(self) -> np.ndarray:
        """Rows failing an error-severity rule (duplicates aside)."""
        return self.any_fail([r for r in self.rules if r.severity == "error" and r.check != "duplicate"])

    @cached_property
    def warning_mask(self) -> np.ndarray:
        """Rows failing a warning-severity rule."""
        return self.any_fail([r for r in self.rules if r.severity == "warning"])

    @cached_property
    def duplicate_mask(self) -> np.ndarray:
        """Rows repeating another record's natural key."""
        return self.any_fail([r for r in self.rules if r.check == "duplicate"])

    @cached_property
    def verdict(self) -> np.ndarray:
        """LOAD, QUARANTINE or MERGE per row."""
        verdict = np.full(self.rows, LOAD, dtype=np.int8)
        verdict[self.duplicate_mask] = MERGE
        verdict[self.error_mask] = QUARANTINE
        return verdict

    @property
    def source_keys(self) -> pa.Array:
        """The source's own key of every row as Arrow text ('' where missing)."""
        return self.frame.source_keys()

    @cached_property
    def quarantined_rows(self) -> pa.Table:
        """The whole rows (every column) the verdict quarantines, in batch order (taken once, for the quarantine
        file and the encrypted payloads alike)."""
        return take_rows(self.frame.table, np.flatnonzero(self.verdict == QUARANTINE))

    def counts(self) -> dict[str, int]:
        """Rows in, to load, quarantined, merged as duplicates, loaded with warnings."""
        verdict = self.verdict
        return {"rows": self.rows, "loaded": int((verdict == LOAD).sum()), "quarantined": int((verdict == QUARANTINE).sum()),
                "merged": int((verdict == MERGE).sum()), "warned": int((self.warning_mask & (verdict == LOAD)).sum())}

    @cached_property
    def findings(self) -> pa.Table:
        """One row per (failing row, rule): where, which rule, how severe, and why (in Chinese)."""
        columns: dict[str, list] = {name: [] for name in FINDING_SCHEMA.names}
        for rule in self.rules:
            rows = np.flatnonzero(self.outcomes[rule.id].fail)
            if not len(rows):
                continue
            columns["row"].append(rows)
            columns["message"].append(np.asarray(self.outcomes[rule.id].messages(rows), dtype=object))
            for name, value in (("rule_id", rule.id), ("field", rule.field), ("severity", rule.severity), ("dimension", rule.dimension)):
                columns[name].append(np.full(len(rows), value, dtype=object))
        if not columns["row"]:
            return FINDING_SCHEMA.empty_table()
        rows = np.concatenate(columns.pop("row"))
        columns.pop("source_key")
        data = {name: pa.array(np.concatenate(parts), FINDING_SCHEMA.field(name).type) for name, parts in columns.items()}
        data["row"] = pa.array(rows, pa.int64())  # source keys taken in Arrow at the failing rows only
        data["source_key"] = pc.fill_null(self.frame.text("_source_key").take(pa.array(rows)), "")
        return pa.table({name: data[name] for name in FINDING_SCHEMA.names}, schema=FINDING_SCHEMA)

    @cached_property
    def conflicts(self) -> pa.Table:
        """Cross-source conflicts: the subject, this source's value, and the other source's record and value."""
        keys = self.source_keys
        parts = []
        for rule in self.rules:
            outcome = self.outcomes[rule.id]
            if not outcome.conflicts:
                continue
            rows = np.flatnonzero(outcome.fail)
            parts.append(pa.table({
                "row": pa.array(rows, pa.int64()), "source_key": keys.take(pa.array(rows, pa.int64())),
                "rule_id": pa.array([rule.id] * len(rows), pa.string()), "field": pa.array([rule.field] * len(rows), pa.string()),
                **{name: pa.array([None if v is None else str(v) for v in outcome.conflicts[name]], pa.string())
                   for name in ("subject", "value", "reference_source", "reference_key", "reference_value")},
            }, schema=CONFLICT_SCHEMA))
        return pa.concat_tables(parts) if parts else CONFLICT_SCHEMA.empty_table()

    def pass_columns(self) -> dict[str, np.ndarray]:
        """rule id → True where the row passes (what the Great Expectations suite validates)."""
        return {rule.id: ~self.outcomes[rule.id].fail for rule in self.rules}


def evaluate(table: pa.Table | StagedRows, context: RuleContext, rules: list[Rule] | None = None,
             block_rows: int = BLOCK_ROWS) -> Evaluation:
    """Run the row-level rules of the context's catalogue that apply to this batch.

    Rules that judge each row on its own run over blocks of at most block_rows rows, each with a frame of its
    own, so the derived columns (identifier checks, texts) of one block at a time are held: memory follows the
    block, not the run. Rules that compare rows with each other (duplicates) see the whole batch."""
    started = time.perf_counter()
    frame = Frame(table, context)
    chosen = rules if rules is not None else context.catalogue.rules_for(context.source_id, frame.columns)
    chosen = [rule for rule in chosen if rule.check not in SOURCE_LEVEL_CHECKS]
    blocked = table.num_rows > block_rows
    outcomes: dict[str, Outcome] = {}
    for rule in chosen:
        if not blocked or rule.check in WHOLE_BATCH_CHECKS:
            outcomes[rule.id] = CHECKS[rule.check](frame, rule)
    if blocked:
        row_rules = [rule for rule in chosen if rule.check not in WHOLE_BATCH_CHECKS]
        outcomes.update(_evaluate_in_blocks(table, context, row_rules, block_rows))
    outcomes = {rule.id: outcomes[rule.id] for rule in chosen}  # the catalogue's order
    skipped = {rule_id: outcome.skipped for rule_id, outcome in outcomes.items() if outcome.skipped}
    if context.waived:
        _apply_waivers(frame, outcomes, context.waived)
    _spare_deletions(table, outcomes)
    return Evaluation(frame, chosen, outcomes, time.perf_counter() - started, skipped)


@dataclass
class _Settled:
    """One rule's outcome over one block, with the messages of its failing rows already made (it holds no frame)."""

    fail: np.ndarray
    texts: list[str]
    skipped: str | None
    conflicts: dict[str, np.ndarray]


def _evaluate_in_blocks(table: pa.Table | StagedRows, context: RuleContext, rules: list[Rule], block_rows: int) -> dict[str, Outcome]:
    """Row-by-row rules over consecutive blocks of the batch; each rule's outcome joined over the blocks, its
    messages and conflict facts taken for the failing rows of each block before the block's frame is let go."""
    parts: dict[str, list[_Settled]] = {rule.id: [] for rule in rules}
    for start in range(0, table.num_rows, block_rows):
        block = Frame(table.slice(start, block_rows), context)
        for rule in rules:
            outcome = CHECKS[rule.check](block, rule)
            texts = outcome.messages(np.flatnonzero(outcome.fail))
            parts[rule.id].append(_Settled(outcome.fail, texts, outcome.skipped, outcome.conflicts))
    return {rule_id: _joined(found) for rule_id, found in parts.items()}


def _joined(parts: list[_Settled]) -> Outcome:
    """The settled outcomes of consecutive blocks as one outcome over the whole batch."""
    fail = np.concatenate([part.fail for part in parts])
    failing = np.flatnonzero(fail)
    texts = np.asarray([text for part in parts for text in part.texts], dtype=object)

    def messages(rows: np.ndarray) -> list[str]:
        """The messages made for these failing rows (found by their place among the failing rows)."""
        return texts[np.searchsorted(failing, rows)].tolist()

    names = list(dict.fromkeys(name for part in parts for name in part.conflicts))
    # a block that reported no facts (nothing to compare) has none for its failing rows either
    conflicts = {name: np.concatenate([part.conflicts.get(name, np.full(int(part.fail.sum()), None, dtype=object))
                                       for part in parts]) for name in names}
    skipped = next((part.skipped for part in parts if part.skipped), None)
    return Outcome(fail, messages, skipped, conflicts)


def _spare_deletions(table: pa.Table | StagedRows, outcomes: dict[str, Outcome]) -> None:
    """A snapshot's delete row (key only, `_change = delete`) is judged by no rule: it loads, and the merge withdraws
    the source's claims on that record."""
    if "_change" not in table.column_names:
        return
    deleted = np.asarray(pc.fill_null(pc.equal(table.column("_change"), "delete"), False).to_numpy(zero_copy_only=False), dtype=bool)
    if not deleted.any():
        return
    for outcome in outcomes.values():
        if outcome.conflicts:  # conflict facts are aligned with the failing rows: keep those still failing
            still = ~deleted[np.flatnonzero(outcome.fail)]
            outcome.conflicts = {name: values[still] for name, values in outcome.conflicts.items()}
        outcome.fail = outcome.fail & ~deleted


def _apply_waivers(frame: Frame, outcomes: dict[str, Outcome], waived: frozenset[tuple[str, str]]) -> None:
    """Clear failures a steward accepted (a disputed defect decided in the department's favour)."""
    keys = frame.source_keys()
    by_rule: dict[str, set[str]] = {}
    for source_key, rule_id in waived:
        by_rule.setdefault(rule_id, set()).add(source_key)
    for rule_id, source_keys in by_rule.items():
        outcome = outcomes.get(rule_id)
        if outcome is None:
            continue
        kept = outcome.fail & ~np.asarray(pc.is_in(keys, value_set=pa.array(sorted(source_keys), pa.string())).to_numpy(zero_copy_only=False), dtype=bool)
        if outcome.conflicts:  # conflict facts are aligned with the failing rows: keep those still failing
            still = kept[np.flatnonzero(outcome.fail)]
            outcome.conflicts = {name: values[still] for name, values in outcome.conflicts.items()}
        outcome.fail = kept
