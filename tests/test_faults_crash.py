"""Crash safety: the fault-injection harness, and a short campaign — kill the pipeline at a risk point, rerun it,
compare with an uninterrupted run (no row lost or duplicated). `make faults` runs the long campaign (≥ 20 trials)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub import fault_campaign, faults

# The points where a crash did or could do harm: a release whose LATEST was not moved, a load between batches, a
# landing published but not recorded, a checked run not recorded, seals half stored.
SUITE_POINTS = ["release.before_latest", "load.between_batches", "landing.after_rename", "quality.before_record",
                "seal.between_chunks"]


def _child(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run a snippet in a child process with extra environment."""
    return subprocess.run([sys.executable, "-c", code], env=os.environ | env, capture_output=True, text=True, timeout=60)


SNIPPET = "from hub.faults import fault_point\nfor i in range(5):\n    fault_point('p')\n    print(i, flush=True)\n"


def test_fault_points_are_no_ops_unless_armed() -> None:
    done = _child(SNIPPET)
    assert done.returncode == 0 and done.stdout.split() == ["0", "1", "2", "3", "4"]


def test_an_armed_point_kills_at_the_nth_hit(tmp_path: Path) -> None:
    done = _child(SNIPPET, HUB_FAULT="p:3")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1"]  # killed on the third arrival, before it printed


def test_counting_mode_writes_the_counts_at_exit(tmp_path: Path) -> None:
    target = tmp_path / "counts.json"
    assert _child(SNIPPET, HUB_FAULT_COUNTS=str(target)).returncode == 0
    assert json.loads(target.read_text(encoding="utf-8")) == {"p": 5}


@pytest.mark.parametrize("spec", ["p", "p:0", ":3", "p:x"])
def test_a_malformed_fault_spec_is_named(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv(faults.ARM_VARIABLE, spec)
    with pytest.raises(faults.FaultSpecError, match="HUB_FAULT"):
        faults.fault_point("p")


def test_every_declared_point_is_placed_in_the_code() -> None:
    root = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text(encoding="utf-8") for folder in ("connectors", "quality", "libraries", "licences", "opendata")
                     for p in (root / folder).glob("*.py"))
    missing = [name for name in faults.POINTS if f'fault_point("{name}")' not in text]
    assert not missing


def test_plan_is_seeded_and_covers_the_reached_points() -> None:
    counts = {"a": 3, "b": 1, "c": 0}
    first, again = fault_campaign.plan(counts, 6, seed=5), fault_campaign.plan(counts, 6, seed=5)
    assert first == again and {p for p, _ in first} == {"a", "b"}
    assert all(1 <= n <= counts[p] for p, n in first)


def test_snapshot_differences_name_what_differs() -> None:
    expected = {"libraries": {"person": {"rows": 3}}, "releases": {"d": {"versions": [["v1", "h", 3]]}}}
    actual = {"libraries": {"person": {"rows": 4}}, "releases": {"d": {"versions": [["v1", "h", 3], ["v2", "h", 3]]}}}
    found = fault_campaign.differences(expected, actual)
    assert any("libraries.person.rows" in f for f in found) and any("v2" in f for f in found)


@pytest.mark.slow
def test_a_short_crash_campaign_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Five trials at the riskiest points (the full campaign is `make faults`)."""
    summary = fault_campaign.campaign(tmp_path / "campaign", trials=5, seed=20261201, scale=0.001,
                                      progress=lambda _: None, only=SUITE_POINTS)
    failed = [r for r in summary["results"] if not r["survived"]]
    assert summary["injected"] == 5, [r for r in summary["results"] if not r["killed"]]
    assert not failed, json.dumps(failed, ensure_ascii=False, indent=1)
    assert summary["baseline"]["libraries"]["person"] > 0 and summary["baseline"]["releases"] > 0


def test_the_report_is_generated_from_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import main

    summary = {"scale": 0.001, "seed": 1, "trials": 2, "injected": 2, "survived": 1, "seconds": 12.0,
               "baseline": {"libraries": {"person": 10}, "golden_versions": 30, "releases": 6},
               "per_point": {"load.before_mark": {"where": "libraries/load.py", "reached": 4, "injected": 2, "survived": 1}},
               "results": [{"trial": 2, "point": "load.before_mark", "hit": 3, "killed": True, "survived": False,
                            "differences": ["history.golden_versions: 期望 expected 30 实际 actual 31"]}]}
    (tmp_path / "faults.json").write_text(json.dumps(summary), encoding="utf-8")
    (tmp_path / "bad_input.json").write_text(json.dumps({"csv": {"tried": 3, "handled": 3}}), encoding="utf-8")
    (tmp_path / "leaks.json").write_text(json.dumps({"hub database (SQLite)": ["scanned 40"]}), encoding="utf-8")
    monkeypatch.setenv("HUB_RELIABILITY_DIR", str(tmp_path))
    assert main(["faults", "report", "--out", str(tmp_path / "reliability.md")]) == 0
    text = (tmp_path / "reliability.md").read_text(encoding="utf-8")
    assert "**2 trials, 2 kills injected (SIGKILL), 1 survived**" in text and "| `load.before_mark` |" in text
    assert "trial 2 `load.before_mark:3`" in text and "| csv | 3 | 3 |" in text and "| hub database (SQLite) | 40 | 0 |" in text


def test_report_without_results_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from hub.cli import main

    monkeypatch.setenv("HUB_RELIABILITY_DIR", str(tmp_path))
    assert main(["faults", "report", "--out", str(tmp_path / "r.md")]) == 1
    assert "没有演练结果" in capsys.readouterr().err
