"""Fault injection: named points in the pipeline where a crash is most harmful, armed only by the environment.

`fault_point(name)` is a no-op in normal runs. Two variables turn it on (for tests and `make faults` only):

- HUB_FAULT=<name>:<n> kills the process with SIGKILL the n-th time it reaches point <name> — no cleanup, no
  `finally`, no atexit: what a power cut or the OOM killer does to a task.
- HUB_FAULT_COUNTS=<file> counts how often each point is reached and writes the counts (JSON) to <file> when the
  process exits, so a campaign knows which points an uninterrupted run passes and how often.

Counts are per process: a point reached in a worker process counts in that worker.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
from pathlib import Path

ARM_VARIABLE = "HUB_FAULT"
COUNTS_VARIABLE = "HUB_FAULT_COUNTS"

# Every point placed in the code, with where it sits (the campaign and docs/reliability.md list them).
POINTS: dict[str, str] = {
    "extract.sql_batch": "connectors/sql.py: between batches read from a relational source",
    "landing.batch": "connectors/landing.py: between batches written to the temporary landing",
    "landing.before_rename": "connectors/landing.py: landing complete, not yet renamed into place",
    "landing.after_rename": "connectors/landing.py: landing published, run not yet recorded",
    "collect.before_commit": "connectors/collect.py: run recorded, file fingerprints not yet committed",
    "staging.before_replace": "quality/staging.py: staged Parquet written under its temporary name",
    "quality.before_record": "quality/stage.py: verdicts and quarantine file written, run not yet recorded",
    "load.between_batches": "libraries/load.py: after one batch of claims merged, before the next",
    "load.before_mark": "libraries/load.py: run merged, not yet marked loaded",
    "seal.between_chunks": "licences/seal.py: after one chunk of seals stored, before the next",
    "release.before_rename": "opendata/release.py: release folder built, not yet renamed into place",
    "release.before_latest": "opendata/release.py: version folder in place, LATEST not yet moved",
    "release.before_catalog": "opendata/release.py: LATEST moved, keys.json and catalog.json not yet rewritten",
    "release.between_datasets": "opendata/release.py: one dataset released, before the next",
}

_counts: dict[str, int] = {}
_writer_registered = False


class FaultSpecError(ValueError):
    """HUB_FAULT is not of the form <point>:<n>."""


def armed() -> tuple[str, int] | None:
    """The armed (point, n) from HUB_FAULT, or None when nothing is armed."""
    text = os.environ.get(ARM_VARIABLE, "").strip()
    if not text:
        return None
    name, _, count = text.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise FaultSpecError(f"{ARM_VARIABLE} 应为 <故障点>:<次数> must be <point>:<n> (n ≥ 1), not {text!r}")
    return name, int(count)


def fault_point(name: str) -> None:
    """Mark a risk point: count it, and kill this process here if HUB_FAULT arms this point for this hit."""
    counting = os.environ.get(COUNTS_VARIABLE)
    target = armed()
    if not counting and target is None:  # the normal case: two dictionary lookups
        return
    _counts[name] = _counts.get(name, 0) + 1
    if counting:
        _register_writer(Path(counting))
    if target is not None and target[0] == name and _counts[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def counts() -> dict[str, int]:
    """How often each point was reached in this process so far (while counting or armed)."""
    return dict(_counts)


def _register_writer(path: Path) -> None:
    """Write the counts to `path` when the process exits normally (once per process)."""
    global _writer_registered
    if not _writer_registered:
        _writer_registered = True
        atexit.register(lambda: path.write_text(json.dumps(_counts, sort_keys=True), encoding="utf-8"))


__all__ = ["POINTS", "FaultSpecError", "armed", "counts", "fault_point"]
