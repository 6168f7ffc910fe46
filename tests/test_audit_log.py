"""The exchange audit log on SQLite and PostgreSQL: hash chains, signed checkpoints, tamper detection, subject access."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from catalog import access, audit
from catalog.audit import AuditEvent, AuditWriter, subject_key, verify, who_looked_at
from catalog.usage import usage, usage_chart
from hub import db
from hub.models import AuditChain, AuditCheckpoint, AuditEntry, AuditSubject

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
PERSON = "420102199001020011"
COMPANY = "91420102MA4KXXXX1X"
ROOT = Path(__file__).resolve().parent.parent
_open: list[AuditWriter] = []


def _writer(engine: sa.Engine, chain_id: str, **options) -> AuditWriter:
    """A writer that the fixture stops after the test (its database is dropped then)."""
    writer = AuditWriter(engine, chain_id=chain_id, **options)
    _open.append(writer)
    return writer


@pytest.fixture
def engine(hub_db_url: str, hub_settings) -> Iterator[sa.Engine]:
    """A migrated hub database; key caches cleared so the audit key lives in this database."""
    from hub.crypto import get_cipher
    from licences import keys

    get_cipher.cache_clear()
    keys._cache_clear()
    audit._keys.clear()
    access.reset_caches()
    db.upgrade(hub_db_url)
    engine = db.engine_for(hub_db_url)
    access.register_consumer(engine, "renshe", T0)
    access.register_consumer(engine, "minzheng", T0)
    yield engine
    audit.close_writers()
    while _open:
        _open.pop().abort()
    audit._keys.clear()
    keys._cache_clear()
    get_cipher.cache_clear()
    db.dispose_engines()


def _event(i: int, *, consumer: str = "renshe", subject: str = PERSON, outcome: str = "allowed") -> AuditEvent:
    """A call at T0 + i seconds."""
    return AuditEvent(consumer_code=consumer, user_id=f"user{i % 3}", operation="person_profile", outcome=outcome,
                      at=T0 + timedelta(seconds=i), purpose_code="SHBZ", case_number=f"SB2026{i:06d}",
                      resource_code="RK.basic", subjects=[subject], fields=["name", "gender"],
                      reason=None if outcome == "allowed" else "未授权")


def _filled(engine: sa.Engine, n: int = 30, checkpoint_every: int = 10) -> AuditWriter:
    """A writer with n durable entries and checkpoints every `checkpoint_every`."""
    writer = _writer(engine, "test-chain", checkpoint_every=checkpoint_every)
    futures = [writer.append(_event(i)) for i in range(n)]
    assert [f.result(10) for f in futures] == list(range(1, n + 1))
    return writer


def _problems(engine: sa.Engine) -> list[str]:
    """The problems verify finds."""
    return [p["problem"] for p in verify(engine)["problems"]]


def test_entries_are_durable_when_log_returns_and_hold_no_clear_ids(engine: sa.Engine) -> None:
    """log() returns only after COMMIT; the row stores HMACs, never the ID number."""
    writer = _writer(engine, "durable")
    seq = writer.log(_event(0, subject=PERSON))
    with engine.connect() as connection:
        row = connection.execute(sa.select(AuditEntry).where(AuditEntry.chain_id == "durable", AuditEntry.seq == seq)).one()
        head = connection.execute(sa.select(AuditChain.head_seq).where(AuditChain.chain_id == "durable")).scalar_one()
    assert head == seq == 1
    assert row.subjects == [subject_key(PERSON)] and PERSON not in str(row._mapping)
    assert row.case_number == "SB2026000000" and row.fields == ["name", "gender"]
    writer.close()
    assert verify(engine)["ok"]


def test_verify_passes_and_checkpoints_are_signed(engine: sa.Engine) -> None:
    """A clean log verifies; checkpoints every 10 entries and at close carry valid Ed25519 signatures."""
    writer = _writer(engine, "one-by-one", checkpoint_every=10)
    for i in range(25):
        writer.log(_event(i))  # one call at a time: each batch is one entry, so checkpoints fall on 10 and 20
    writer.close()
    result = verify(engine)
    assert result["ok"] and result["entries"] == 25 and result["checkpoints"] == 3  # seq 10, 20, and 25 at close
    with engine.connect() as connection:
        assert connection.execute(sa.select(AuditCheckpoint.seq).order_by(AuditCheckpoint.seq)).scalars().all() == [10, 20, 25]


def test_edit_is_detected(engine: sa.Engine) -> None:
    """Changing any stored field of an entry breaks its hash."""
    _filled(engine).close()
    with engine.begin() as connection:
        connection.execute(sa.update(AuditEntry).where(AuditEntry.seq == 7).values(purpose_code="TJFX"))
    assert any("被修改" in p for p in _problems(engine))


def test_edit_with_recomputed_hashes_is_caught_by_the_checkpoint(engine: sa.Engine) -> None:
    """Rewriting an entry and re-chaining everything after it still contradicts the signed checkpoints."""
    _filled(engine).close()
    with engine.begin() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(AuditEntry).order_by(AuditEntry.seq))]
        rows[4]["user_id"] = "someone-else"
        prev = rows[3]["entry_hash"]
        for row in rows[4:]:
            row["prev_hash"] = prev
            row["entry_hash"] = prev = audit.entry_hash(prev, row)
            connection.execute(sa.update(AuditEntry).where(AuditEntry.chain_id == row["chain_id"], AuditEntry.seq == row["seq"])
                               .values(user_id=row["user_id"], prev_hash=row["prev_hash"], entry_hash=row["entry_hash"]))
        connection.execute(sa.update(AuditChain).values(head_hash=prev))
    problems = _problems(engine)
    assert problems and all("检查点" in p for p in problems)


def test_deleted_entry_is_detected(engine: sa.Engine) -> None:
    """Deleting an entry in the middle leaves a gap and a broken link."""
    _filled(engine).close()
    with engine.begin() as connection:
        connection.execute(sa.delete(AuditSubject).where(AuditSubject.seq == 12))
        connection.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 12))
    problems = _problems(engine)
    assert any("序号不连续" in p for p in problems) and any("前序哈希" in p for p in problems)


def test_deleted_tail_is_detected(engine: sa.Engine) -> None:
    """Deleting the newest entries contradicts the chain's durable head."""
    _filled(engine).close()
    with engine.begin() as connection:
        connection.execute(sa.delete(AuditSubject).where(AuditSubject.seq >= 29))
        connection.execute(sa.delete(AuditEntry).where(AuditEntry.seq >= 29))
    assert any("链尾条目被删除" in p for p in _problems(engine))


def test_inserted_entry_is_detected(engine: sa.Engine) -> None:
    """An entry slipped in (appended past the head, or into an unregistered chain) is caught."""
    _filled(engine).close()
    with engine.begin() as connection:
        last = dict(connection.execute(sa.select(AuditEntry).where(AuditEntry.seq == 30)).one()._mapping)
        forged = {**last, "seq": 31, "prev_hash": last["entry_hash"], "user_id": "forger"}
        forged["entry_hash"] = audit.entry_hash(forged["prev_hash"], forged)
        connection.execute(sa.insert(AuditEntry).values(**forged))
    assert any("链头" in p for p in _problems(engine))
    with engine.begin() as connection:
        connection.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 31))
        connection.execute(sa.insert(AuditChain).values(chain_id="ghost", writer="x", created_at=T0, head_seq=0,
                                                        head_hash=audit.GENESIS))
        connection.execute(sa.insert(AuditEntry).values(**{**last, "chain_id": "ghost", "seq": 1}))
    assert any("前序哈希" in p or "链头" in p for p in _problems(engine))


def test_tampered_checkpoint_signature_is_detected(engine: sa.Engine) -> None:
    """A checkpoint whose signed fields were changed no longer verifies."""
    _filled(engine).close()
    with engine.begin() as connection:
        first = connection.execute(sa.select(sa.func.min(AuditCheckpoint.id))).scalar_one()
        connection.execute(sa.update(AuditCheckpoint).where(AuditCheckpoint.id == first).values(at=T0 - timedelta(days=1)))
    assert any("签名无效" in p for p in _problems(engine))


def test_subject_index_tampering_is_detected(engine: sa.Engine) -> None:
    """Removing a subject from the index (to hide a look-up from the data subject) is caught."""
    _filled(engine).close()
    with engine.begin() as connection:
        connection.execute(sa.delete(AuditSubject).where(AuditSubject.seq == 3))
    assert any("主体索引" in p for p in _problems(engine))


def test_who_looked_at_a_subject(engine: sa.Engine) -> None:
    """Subject access: by ID number (or its HMAC): which department, who, when, why, which case — nobody else's calls."""
    writer = _writer(engine, "who")
    writer.log(_event(1, consumer="renshe", subject=PERSON))
    writer.log(_event(2, consumer="minzheng", subject=PERSON, outcome="refused"))
    writer.log(_event(3, consumer="minzheng", subject=COMPANY))
    rows = who_looked_at(engine, PERSON)
    assert [(r["consumer_name"], r["outcome"]) for r in rows] == [("省民政厅", "refused"), ("省人力资源和社会保障厅", "allowed")]
    assert rows[1]["purpose"] == "社会保障经办" and rows[1]["case_number"] == "SB2026000001"
    assert rows[1]["resource_name"] == "人口基本信息" and rows[1]["at"] == T0 + timedelta(seconds=1)
    assert who_looked_at(engine, subject_key(PERSON)) == rows
    assert len(who_looked_at(engine, COMPANY.lower())) == 1


def test_two_processes_write_valid_chains(engine: sa.Engine, hub_db_url: str) -> None:
    """Two writer processes at once: each gets its own chain, every entry lands, verify passes."""
    script = (
        "import sys, datetime as dt\n"
        "from hub import db\n"
        "from catalog import audit\n"
        "engine = db.engine_for(sys.argv[1])\n"
        "w = audit.writer_for(engine)\n"
        "t = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)\n"
        "fs = [w.append(audit.AuditEvent('renshe', 'u', 'op', 'allowed', t, 'SHBZ', None, 'RK.basic', ['420102199001020011'], ['name']))"
        " for i in range(400)]\n"
        "[f.result(60) for f in fs]\n"
        "audit.close_writers()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, hub_db_url], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    result = verify(engine)
    assert result["ok"], result["problems"][:3]
    assert result["chains"] == 2 and result["entries"] == 800 and result["checkpoints"] >= 2
    assert len(who_looked_at(engine, PERSON, limit=5000)) == 800


def test_unavailable_database_means_no_answer(engine: sa.Engine, tmp_path: Path) -> None:
    """When the entry cannot be written, log() raises AuditUnavailable instead of returning."""
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every write fails
    writer = AuditWriter(broken, chain_id="broken", retry_seconds=0.05)
    with pytest.raises(audit.AuditUnavailable):
        writer.log(_event(0), timeout=0.5)
    writer.abort()
    assert not writer._thread.is_alive()
    broken.dispose()


def test_checkpoint_all_signs_every_head(engine: sa.Engine) -> None:
    """The periodic job signs heads of chains whose writer stopped without a checkpoint."""
    writer = _filled(engine, 5, checkpoint_every=1000)
    writer.flush()
    assert audit.checkpoint_all(engine, T0) == 1
    assert audit.checkpoint_all(engine, T0) == 0  # already pinned
    assert verify(engine)["checkpoints"] == 1


def test_usage_statistics_and_chart(engine: sa.Engine) -> None:
    """共享使用率 from the audit log: calls per resource and department, refusals counted apart; an SVG chart."""
    writer = _writer(engine, "usage")
    for i in range(6):
        writer.log(_event(i, consumer="renshe"))
    writer.log(_event(7, consumer="minzheng", outcome="refused"))
    result = usage(engine, T0, T0 + timedelta(days=1))
    basic = result["by_resource"][0]
    assert basic["resource_code"] == "RK.basic" and basic["calls"] == 7 and basic["refused"] == 1 and basic["consumers"] == 2
    renshe = next(r for r in result["by_consumer"] if r["consumer_code"] == "renshe")
    assert renshe["calls"] == 6 and renshe["resources_used"] == 1 and 0 < renshe["usage_rate"] < 100
    svg = usage_chart(result["by_resource"], "共享资源调用次数")
    assert svg.startswith("<svg") and "人口基本信息" in svg and "7次" in svg


def test_cli_verify_and_who(engine: sa.Engine, hub_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """hub audit verify exits 1 on tampering; hub audit who lists the look-ups."""
    from hub.cli import main

    _filled(engine, 12).close()
    assert main(["audit", "--url", hub_db_url, "verify"]) == 0
    assert main(["audit", "--url", hub_db_url, "who", PERSON]) == 0
    assert "省人力资源和社会保障厅" in capsys.readouterr().out
    with engine.begin() as connection:
        connection.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(outcome="refused"))
    assert main(["audit", "--url", hub_db_url, "verify"]) == 1
