"""Same seed ⇒ byte-identical world; another seed ⇒ another world; the process split never matters."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from world import WorldError, generate

SCALE = 0.002


def _digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    """Two runs with one seed: every file (SQLite, xlsx, CSV, JSONL, Parquet, world.json) is identical."""
    generate(tmp_path / "a", scale=SCALE, seed=11, workers=1)
    generate(tmp_path / "b", scale=SCALE, seed=11, workers=2)  # forked workers must not change a byte
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) > 50
    assert a == b


def test_other_seed_gives_other_world(tmp_path: Path) -> None:
    """A different seed changes the data files."""
    generate(tmp_path / "a", scale=SCALE, seed=11, workers=1)
    generate(tmp_path / "b", scale=SCALE, seed=12, workers=1)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    for name in ("gongan/gongan.sqlite", "renshe/sbcb.xlsx", "court/sxbzxr.jsonl", "truth/persons.parquet"):
        assert a[name] != b[name], name


def test_regenerating_into_a_world_replaces_it(tmp_path: Path) -> None:
    """A world directory can be regenerated in place and ends up identical to a fresh one."""
    generate(tmp_path / "a", scale=SCALE, seed=3, workers=1)
    generate(tmp_path / "a", scale=SCALE, seed=4, workers=1)
    generate(tmp_path / "a", scale=SCALE, seed=3, workers=1)
    generate(tmp_path / "b", scale=SCALE, seed=3, workers=1)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_refuses_a_foreign_directory(tmp_path: Path) -> None:
    """A non-empty directory without world.json is never wiped."""
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(WorldError):
        generate(tmp_path, scale=SCALE, seed=1)
    assert (tmp_path / "mine.txt").read_text(encoding="utf-8") == "keep me"
