"""The exchange lookup benchmark at a tiny scale: a few seconds of wrk against `hub serve` and the bare baseline.

No timing assertions (the figures depend on the machine): the report has its documented shape, both servers
answered, and every answered lookup is in the audit log — audit rows ≥ answered, and at most what wrk may have
sent but not read when it stopped (2 × connections: the warm-up run and the measured run) beyond that.
Needs wrk (`scripts/install-test-tools.sh`, run by `make test`): skips without it locally, fails with CI=true.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.slow

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _wrk_or_skip() -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("CI=true but wrk is missing (scripts/install-test-tools.sh)")
        pytest.skip("wrk missing (apt-get install wrk; scripts/install-test-tools.sh)")


def test_benchmark_report_shape_and_no_lost_audit(hub_settings, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    _wrk_or_skip()
    from benchmarks import exchange_lookup

    monkeypatch.setenv("HUB_KEYRING_FILE", str(tmp_path / "bench-keyring.json"))
    report = exchange_lookup.run(scale=0.001, seconds=2)
    assert report["persons"] == 1000 and report["seconds"] == 2 and report["cores"] >= 1
    assert len(report["load_average_before"]) == 3 and len(report["load_average_after"]) == 3
    measured = [b for b in ("sqlite", "postgresql") if "skipped" not in report[b]]
    assert "sqlite" in measured
    if IN_CI:
        assert "postgresql" in measured, report["postgresql"]
    for backend in measured:
        result = report[backend]
        full, bare = result["full"], result["bare"]
        for run in (full, bare):
            assert {"requests_per_s", "answered", "p50_ms", "p99_ms", "non_2xx", "socket_errors", "audit_rows"} <= run.keys()
            assert run["answered"] > 0 and run["requests_per_s"] > 0 and run["p50_ms"] is not None
        assert full["non_2xx"] == 0, (backend, full)  # every lookup found and allowed: the IDs and key are right
        assert result["share_of_bare"] == pytest.approx(full["requests_per_s"] / bare["requests_per_s"], abs=0.001)
        # answered == audited, within what wrk leaves unread at its cut-off
        assert full["audit_rows"] >= full["answered"], (backend, full)
        assert full["audit_rows"] - full["answered"] <= 2 * result["connections"], (backend, full)
        assert result["no_audit_lost"] and result["unread_at_cutoff_within_connections"]
