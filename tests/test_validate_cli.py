"""`hub validate`: arguments, standard input, JSON lines, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli import main
from schemas import cli as validate_cli
from schemas.identifiers import licence_id

HUB = Path(sys.executable).with_name("hub")
LICENCE = licence_id("11100000000013338W011", "91350100M000100Y43", "ABC123")


def run_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str],
             stdin: bytes | None = None) -> tuple[int, list[dict], str]:
    """Run `hub` in-process; returns (exit status, parsed JSON lines, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    status = main(argv)
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_values_from_arguments(capsys, monkeypatch) -> None:
    status, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "resident-id", "11010519491231002X", "110105194912310021"])
    assert status == 0
    assert rows[0] == {"value": "11010519491231002X", "valid": True, "reason": None, "normalised": "11010519491231002X", "note": None}
    assert rows[1]["valid"] is False and rows[1]["reason"] == "校验位错误 check character mismatch: expected X, got 1"


def test_legacy_number_mentions_conversion(capsys, monkeypatch) -> None:
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "resident-id", "110105491231002"])
    assert rows[0]["valid"] is True and rows[0]["normalised"] == "11010519491231002X"
    assert "15位旧号码" in rows[0]["note"] and "11010519491231002X" in rows[0]["note"]


def test_each_kind(capsys, monkeypatch) -> None:
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "uscc", "91350100M000100Y43", "91350100M000100Y4Z"])
    assert [row["valid"] for row in rows] == [True, False] and "expected 3" in rows[1]["reason"]
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "licence-id", LICENCE, LICENCE[:-1] + "0"])
    assert [row["valid"] for row in rows] == [True, False] and "MOD 37,36" in rows[1]["reason"]


def test_standard_input_keeps_blank_lines_and_strips_line_endings(capsys, monkeypatch) -> None:
    data = "91350100M000100Y43\r\n\n  \n91110000600037341L".encode()  # CRLF, blank lines, no final newline
    status, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "uscc"], stdin=data)
    assert status == 0
    assert [row["value"] for row in rows] == ["91350100M000100Y43", "", "  ", "91110000600037341L"]
    assert [row["valid"] for row in rows] == [True, False, False, True]
    assert rows[1]["reason"] == rows[2]["reason"] == "空值 empty"
    assert rows[0]["note"] is None


def test_standard_input_in_small_chunks_loses_nothing(capsys, monkeypatch) -> None:
    monkeypatch.setattr(validate_cli, "CHUNK_LINES", 7)
    monkeypatch.setattr(validate_cli, "READ_BYTES", 13)  # lines split across reads
    values = [f"{'91350100M000100Y43' if i % 3 else 'bad'}{'' if i % 5 else ' '}" for i in range(100)]
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "uscc"], stdin=("\n".join(values) + "\n").encode())
    assert [row["value"] for row in rows] == values
    assert [row["valid"] for row in rows] == [bool(i % 3) for i in range(100)]


def test_values_needing_json_escapes_and_bad_utf8(capsys, monkeypatch) -> None:
    data = b'q"\\x\n\x01\xff\xfe\n\xe4\xb8\xad\n'
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "resident-id"], stdin=data)
    assert [row["value"] for row in rows] == ['q"\\x', "\x01\ufffd\ufffd", "中"]
    assert not any(row["valid"] for row in rows)


def test_today_and_region_rule_options(capsys, monkeypatch) -> None:
    future = "110105202601020025"
    from schemas.identifiers import resident_id_check_char

    future = future[:17] + resident_id_check_char(future[:17])
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "resident-id", "--today", "2026-01-01", future])
    assert rows[0]["reason"].startswith("出生日期晚于当前日期")
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "resident-id", "--today", "2026-01-02", future])
    assert rows[0]["valid"] is True
    fangshan_1980 = "11011119800101002" + resident_id_check_char("11011119800101002")
    _, rows, _ = run_main(capsys, monkeypatch, ["validate", "--kind", "resident-id", "--region-rule", "birth_year", fangshan_1980])
    assert rows[0]["valid"] is False


def test_summary_goes_to_stderr(capsys, monkeypatch) -> None:
    status, rows, err = run_main(capsys, monkeypatch, ["validate", "--kind", "uscc", "--summary", "91350100M000100Y43", "x"])
    assert status == 0 and len(rows) == 2 and "有效 valid 1" in err and "无效 invalid 1" in err


@pytest.mark.parametrize("argv", [["validate"], ["validate", "--kind", "passport", "x"], ["validate", "--kind", "resident-id", "--today", "2026-13-01", "x"]])
def test_unusable_arguments_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_real_process_reads_a_pipe() -> None:
    """The installed `hub` program end to end: stdin pipe, JSON lines, exit 0 despite invalid values."""
    data = "11010519491231002X\n\nnot-an-id\n110105491231002\n"
    proc = subprocess.run([str(HUB), "validate", "--kind", "resident-id"], input=data.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert [row["valid"] for row in rows] == [True, False, False, True]
    assert rows[1]["reason"] == "空值 empty"
    assert "空值" in proc.stdout.decode("utf-8")  # UTF-8 text, not \u escapes (ensure_ascii=False)


def test_real_process_bad_kind_exits_2_without_traceback() -> None:
    proc = subprocess.run([str(HUB), "validate", "--kind", "nope", "x"], capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr


def test_real_process_survives_a_closed_pipe(tmp_path: Path) -> None:
    """`hub validate … | head -1` must not print a traceback."""
    source = tmp_path / "values.txt"
    source.write_text("91350100M000100Y43\n" * 300_000)
    with source.open("rb") as stdin:
        proc = subprocess.Popen([str(HUB), "validate", "--kind", "uscc"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        proc.stdout.close()  # like `head -1` exiting
        _, err = proc.communicate(timeout=60)
    assert json.loads(first)["valid"] is True
    assert proc.returncode == 0 and b"Traceback" not in err
