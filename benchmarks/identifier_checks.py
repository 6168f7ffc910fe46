"""Identifier checks at 1,000,000 values: in-process vectorised checks and `hub validate` end to end.

Baseline in the same run: python-stdnum's is_valid looped over a 100,000-value sample (the
per-value way), scaled to values per second.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import numpy as np

from schemas import identifiers


def _resident_ids(count: int, rng: np.random.Generator) -> np.ndarray:
    """Valid 18-digit IDs with about 5 % check characters corrupted."""
    days = rng.integers(0, 365 * 60, count).astype("timedelta64[D]") + np.datetime64("1950-01-01")
    birth = np.strings.replace(days.astype("datetime64[D]").astype(str), "-", "")
    bodies = np.strings.add(np.strings.add("420102", birth), np.char.zfill(rng.integers(0, 1000, count).astype(str), 3))
    values = np.strings.add(bodies, identifiers.resident_id_check_chars(bodies))
    broken = rng.random(count) < 0.05
    values[broken] = np.strings.add(bodies[broken], "0")
    return values


def _usccs(count: int, rng: np.random.Generator) -> np.ndarray:
    """Valid USCCs (market regulation, enterprises, Wuhan)."""
    org = np.char.zfill(rng.integers(0, 10**8, count).astype(str), 8)
    org9 = np.strings.add(org, identifiers.org_code_check_chars(org))
    bodies = np.strings.add("91420100", org9)
    return np.strings.add(bodies, identifiers.uscc_check_chars(bodies))


def _licence_ids(count: int, rng: np.random.Generator) -> np.ndarray:
    """Valid GB/T 36904 licence identifiers."""
    issuer = _usccs(count, rng)
    type_code = "11100000000013338W011"
    serial = np.char.zfill(rng.integers(0, 10**9, count).astype(str), 10)
    payload = np.strings.add(np.strings.add(np.strings.add(type_code, issuer), serial), "001")
    check = identifiers.licence_id_check_chars(payload)
    parts = [identifiers.LICENCE_ID_PREFIX + type_code + ".", issuer, ".", serial, ".001.", check]
    result = np.asarray(parts[0])
    for part in parts[1:]:
        result = np.strings.add(result, part)
    return result


def _median_seconds(function, repeats: int = 3) -> float:
    """Median wall time of a few calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(scale: float = 1.0) -> dict:
    """Values/s of each check, in-process and through `hub validate`, with the per-value stdnum baseline."""
    from stdnum.cn import ric, uscc

    count = max(10_000, int(1_000_000 * min(scale, 1.0)))
    rng = np.random.default_rng(7)
    data = {"resident-id": _resident_ids(count, rng), "uscc": _usccs(count, rng), "licence-id": _licence_ids(count, rng)}
    checks = {"resident-id": identifiers.check_resident_ids, "uscc": identifiers.check_usccs, "licence-id": identifiers.check_licence_ids}
    oracles = {"resident-id": ric.is_valid, "uscc": uscc.is_valid}
    figures: dict = {"values": count}
    for kind, values in data.items():
        seconds = _median_seconds(lambda: checks[kind](values))
        figures[f"{kind}_check_values_per_s"] = round(count / seconds)
        if kind in oracles:
            sample = values[:100_000].tolist()
            started = time.perf_counter()
            for value in sample:
                oracles[kind](value)
            figures[f"{kind}_stdnum_loop_values_per_s"] = round(len(sample) / (time.perf_counter() - started))
        stdin = ("\n".join(values.tolist()) + "\n").encode()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hub.cli", "validate", "--kind", kind], input=stdin,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cli_seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(done.stderr.decode()[-500:])
        figures[f"{kind}_hub_validate_values_per_s"] = round(count / cli_seconds)
    return figures
