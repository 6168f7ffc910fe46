"""`hub world generate | serve | audit` from the command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hub.cli import main


def test_generate_and_audit(tmp_path: Path, capsys) -> None:
    """generate writes a world and reports it; audit agrees with the manifest (exit 0)."""
    out = tmp_path / "w"
    assert main(["world", "generate", "--scale", "0.002", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "缺陷 defects" in printed
    description = json.loads((out / "world.json").read_text(encoding="utf-8"))
    assert description["scale"] == 0.002 and description["seed"] == 3
    assert main(["world", "audit", "--world", str(out)]) == 0
    assert "召回率 recall 1.0000" in capsys.readouterr().out


def test_generate_options(tmp_path: Path) -> None:
    """--defect-rate 0 and --reference-date reach the world."""
    out = tmp_path / "w"
    assert main(["world", "generate", "--scale", "0.002", "--out", str(out), "--defect-rate", "0",
                 "--reference-date", "2025-06-30", "--quiet"]) == 0
    description = json.loads((out / "world.json").read_text(encoding="utf-8"))
    assert description["manifest"]["entries"] == 0 and description["reference_date"] == "2025-06-30"


def test_errors_are_one_line(tmp_path: Path, capsys) -> None:
    """A foreign non-empty directory or a missing world is a clear error, exit 1."""
    (tmp_path / "keep.txt").write_text("x", encoding="utf-8")
    assert main(["world", "generate", "--scale", "0.002", "--out", str(tmp_path), "--quiet"]) == 1
    assert "错误 error" in capsys.readouterr().err
    assert main(["world", "audit", "--world", str(tmp_path / "nowhere")]) == 1
    assert main(["world", "generate", "--scale", "0", "--out", str(tmp_path / "z"), "--quiet"]) == 1


def _free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_prints_its_address(tmp_path: Path) -> None:
    """`hub world serve` prints the API address and answers there until stopped."""
    out = tmp_path / "w"
    assert main(["world", "generate", "--scale", "0.002", "--out", str(out), "--quiet"]) == 0
    token = json.loads((out / "world.json").read_text(encoding="utf-8"))["court_token"]
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "hub.cli", "world", "serve", "--world", str(out), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/api/v1/sxbzxr" in first
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/sxbzxr", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["total"] > 0
    finally:
        process.terminate()
        process.wait(timeout=10)
