"""Run benchmark modules in child processes, measure wall time and peak memory, write the reports."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import benchmarks

RESULT_MARK = "BENCH-RESULT "


def available() -> list[str]:
    """Names of every benchmark module (those defining run())."""
    names = []
    for module in pkgutil.iter_modules(benchmarks.__path__):
        if module.name != "harness" and hasattr(importlib.import_module(f"benchmarks.{module.name}"), "run"):
            names.append(module.name)
    return sorted(names)


PROGRESS_MARK = "BENCH-PROGRESS "


def _read_stderr(stream: Any, kept: list[str], progress: Any) -> None:
    """Collect a child's stderr; lines it marks as progress are shown at once (long benchmarks say where they are)."""
    for line in stream:
        if line.startswith(PROGRESS_MARK):
            progress("    " + line[len(PROGRESS_MARK):].rstrip("\n"))
            sys.stdout.flush()  # shown now even when stdout is a file or a pipe
        else:
            kept.append(line)


def run_child(name: str, scale: float, timeout: float, progress: Any = print) -> dict[str, Any]:
    """One benchmark in its own process: its figures, wall seconds and peak RSS (MiB)."""
    import threading

    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.harness", "--child", name, "--scale", str(scale)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"HUB_BENCH_PROGRESS": "1"},
    )
    kept: list[str] = []
    reader = threading.Thread(target=_read_stderr, args=(process.stderr, kept, progress), daemon=True)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"benchmark": name, "error": f"超时 timed out after {timeout:.0f} s"}
    reader.join()
    stderr = "".join(kept)
    wall = time.monotonic() - started
    figures = next((json.loads(line[len(RESULT_MARK):]) for line in stdout.splitlines() if line.startswith(RESULT_MARK)), None)
    if process.returncode != 0 or figures is None:
        return {"benchmark": name, "error": (stderr or stdout).strip().splitlines()[-1:] or ["no output"]}
    return {"benchmark": name, "wall_seconds": round(wall, 2), **figures}


def child_main(name: str, scale: float) -> None:
    """Inside the child: run the benchmark and print its figures plus this process's peak memory."""
    import resource

    module = importlib.import_module(f"benchmarks.{name}")
    figures = module.run(scale=scale)
    figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if children:
        figures["peak_rss_children_mib"] = round(children, 1)
    print(RESULT_MARK + json.dumps(figures, ensure_ascii=False, default=str), flush=True)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one section per benchmark, its figures as a table."""
    lines = [f"# 基准测试 Benchmarks — {report['finished_at']}", "", f"机器 machine: {report['machine']}", ""]
    for result in report["results"]:
        lines += [f"## {result['benchmark']}", "", "| 指标 figure | 值 value |", "| --- | --- |"]
        tables = {key: value for key, value in result.items() if _is_rows(value)}
        for key, value in result.items():
            if key != "benchmark" and key not in tables:
                lines.append(f"| {key} | {value if not isinstance(value, (dict, list)) else json.dumps(value, ensure_ascii=False)} |")
        lines.append("")
        for key, rows in tables.items():  # e.g. the pipeline's stages: one row each
            columns = list(dict.fromkeys(column for row in rows for column in row))
            lines += [f"### {key}", "", "| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
            lines += ["| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def _is_rows(value: Any) -> bool:
    """A list of flat-ish dicts, shown as a table of its own."""
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _cell(value: Any) -> str:
    """One table cell: nested values as compact JSON."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def run_all(names: list[str], scale: float, out: Path, timeout: float, progress=print) -> dict[str, Any]:
    """Run the named benchmarks one after another and write report.json and report.md under out."""
    results = []
    for number, name in enumerate(names, start=1):
        progress(f"[{number}/{len(names)}] {name} (scale {scale}) …")
        result = run_child(name, scale, timeout, progress)
        results.append(result)
        progress(f"    {json.dumps(result, ensure_ascii=False)[:400]}")
    report = {
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "scale": scale,
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    arguments = parser.parse_args()
    child_main(arguments.child, arguments.scale)
