"""`hub licence …`: keys, seal, verify (by id, export file, QR, offline JWKS), revoke, renew, present, remind."""

from __future__ import annotations

import json

from hub.cli import main
from test_licences_seal import COMPANY_ID, PERSON_LICENCE_ID, licence_db  # noqa: F401


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stdout+stderr of one command."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_licence_commands(licence_db, tmp_path, capsys) -> None:
    url = licence_db.url.render_as_string(hide_password=False)
    hub = ("licence", "--url", url)
    status, out = run(capsys, *hub, "seal")
    assert status == 0 and json.loads(out)["sealed"] == 2
    status, out = run(capsys, *hub, "verify", "--id", COMPANY_ID)
    assert status == 0 and json.loads(out)["status"] == "有效"

    jwks, export = tmp_path / "jwks.json", tmp_path / "licence.json"
    assert run(capsys, *hub, "keys", "jwks", "--out", str(jwks))[0] == 0
    assert run(capsys, *hub, "export", PERSON_LICENCE_ID, "--out", str(export))[0] == 0
    status, out = run(capsys, *hub, "verify", "--file", str(export), "--jwks", str(jwks), "--offline")
    assert status == 0, out
    qr = json.loads(export.read_text(encoding="utf-8"))["qr"]
    assert run(capsys, *hub, "verify", "--qr", qr)[0] == 0

    status, out = run(capsys, *hub, "keys", "list")
    assert status == 0 and len(out.splitlines()) == 2 and "private" not in out.replace("has_private", "")
    assert run(capsys, *hub, "keys", "rotate", "--department", json.loads(out.splitlines()[0])["department_code"])[0] == 0
    assert run(capsys, *hub, "verify", "--all")[0] == 0

    status, token = run(capsys, *hub, "present", COMPANY_ID, "--minutes", "3")
    assert status == 0 and token.startswith("HP1.")
    status, out = run(capsys, *hub, "check-presentation", token.strip())
    assert status == 0 and json.loads(out)["outcome"] == "valid"

    status, out = run(capsys, *hub, "revoke", COMPANY_ID, "--reason", "无证经营", "--actor", "执法人员")
    assert status == 0 and json.loads(out)["credit_record_id"]
    status, out = run(capsys, *hub, "verify", "--id", COMPANY_ID)
    assert status == 1 and "吊销" in json.loads(out)["reason"]
    status, out = run(capsys, *hub, "check-presentation", token.strip())
    assert status == 1 and json.loads(out)["outcome"] == "revoked"
    status, out = run(capsys, *hub, "revoke", COMPANY_ID, "--reason", "x", "--actor", "y")
    assert status == 1 and "已吊销" in out and "Traceback" not in out

    status, out = run(capsys, *hub, "renew", PERSON_LICENCE_ID, "--valid-from", "2026-12-01", "--actor", "窗口")
    assert status == 0 and json.loads(out)["new_licence_id"].endswith(".002." + json.loads(out)["new_licence_id"][-1])
    status, out = run(capsys, *hub, "remind", "--date", "2026-12-01", "--out", str(tmp_path / "outbox"))
    assert status == 0 and json.loads(out)["sent"] == 0
