"""Smoke run of the whole-pipeline benchmark through `hub bench` at a tiny scale: the report's shape, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.pipeline import pipeline_plan

pytestmark = [pytest.mark.slow]


def test_hub_bench_pipeline_smoke(tmp_path: Path) -> None:
    out = tmp_path / "report"
    environ = os.environ | {"HUB_DATA_ROOT": str(tmp_path / "data"), "HUB_SETTINGS_FILE": str(tmp_path / "absent.toml")}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "bench", "--scale", "0.002", "--only", "pipeline", "--out", str(out)],
                          env=environ, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "[pipeline]" in done.stdout, "progress lines are shown while it runs"

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    (result,) = report["results"]
    assert result["benchmark"] == "pipeline" and "error" not in result, result
    assert (out / "report.md").read_text(encoding="utf-8").count("| full |") == len(pipeline_plan())

    # Every stage ran in both phases, with the figures the report promises.
    planned = [stage if not argument else f"{stage}:{argument}" for stage, argument in pipeline_plan()]
    for phase in ("full", "incremental"):
        ran = [s["stage"] for s in result["stages"] if s["phase"] == phase]
        assert ran == planned, (phase, ran)
    assert [s["stage"] for s in result["stages"] if s["phase"] in ("world", "change")] == ["world:0.002", "change"]
    for stage in result["stages"]:
        assert stage["seconds"] >= 0 and stage["rows"] >= 0 and stage["peak_rss_mib"] > 0, stage
    for stage in result["stages"]:
        if stage["phase"] == "full" and stage["stage"].split(":")[0] in ("collect", "quality", "merge", "seal", "release"):
            assert stage["baseline"]["rows"] > 0, stage
    collected = next(s for s in result["stages"] if s["phase"] == "full" and s["stage"] == "collect")
    assert collected["rows"] > 0
    assert result["peak_stage"].split(":")[0] not in ("world", "change"), "the pipeline's peak leaves world generation aside"
    changed = next(s for s in result["stages"] if s["stage"] == "change")
    assert 0 < changed["rows"] < collected["rows"] * 0.05, "about 1 % of the records change"
    incremental = next(s for s in result["stages"] if s["phase"] == "incremental" and s["stage"] == "collect")
    assert 0 < incremental["rows"] < collected["rows"], "the incremental run collects only what changed"
    assert result["full_seconds"] > 0 and result["incremental_share_of_full"] > 0
    assert result["peak_stage_rss_mib"] > 0
