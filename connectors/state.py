"""Incremental state of file-drop sources: the SHA-256 of every file already loaded (or rejected).

One small JSON file per source under <data_root>/state/<source_id>.files.json. It is written only after
the run's landing is published and recorded (see connectors.collect), with an atomic replace, so a crash
leaves either the old or the new state — never a half-written file and never a file marked but not landed.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from connectors.base import SourceError

STATE_VERSION = 1


def state_path(data_root: Path, source_id: str) -> Path:
    """The fingerprint file of one source."""
    return data_root / "state" / f"{source_id}.files.json"


class FileState:
    """Fingerprints (SHA-256 → what happened to that content) of one file-drop source."""

    def __init__(self, path: Path, source_id: str) -> None:
        self.path = path
        self.source_id = source_id

    def known(self) -> dict[str, dict[str, Any]]:
        """Every fingerprint seen so far, with its outcome ('loaded' or 'rejected'), file name and run id."""
        if not self.path.exists():
            return {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            return dict(document["files"])
        except (ValueError, KeyError, TypeError) as error:
            # Guessing would either reload every file or skip new ones: stop and let a person look.
            raise SourceError(
                f"数据源 {self.source_id}: 状态文件损坏 state file is corrupt: {self.path} ({type(error).__name__})"
            ) from error

    def record(self, entries: dict[str, dict[str, Any]]) -> None:
        """Add fingerprints (idempotent: an existing entry is kept as first recorded)."""
        if not entries:
            return
        files = self.known()
        added = {sha: entry for sha, entry in entries.items() if sha not in files}
        if not added:
            return
        files.update(added)
        document = {"version": STATE_VERSION, "source_id": self.source_id, "files": dict(sorted(files.items()))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
        temporary.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)
