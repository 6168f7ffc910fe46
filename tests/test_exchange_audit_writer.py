"""The audit writer never blocks on one entry the database refuses: a placeholder marks the failure, the caller
gets AuditRefused (the API answers 503), and the entries around it are written and chained as usual."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from test_exchange_api import CASE, PERSON, hub  # noqa: F401  (fixture)

from catalog import access, audit
from catalog.audit import AuditEvent, AuditRefused, AuditWriter, verify
from hub import db
from hub.models import AuditEntry

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(hub_db_url: str, hub_settings) -> Iterator[sa.Engine]:
    """A migrated hub database with one consumer."""
    from hub.crypto import get_cipher
    from licences import keys

    get_cipher.cache_clear()
    keys._cache_clear()
    audit._keys.clear()
    access.reset_caches()
    db.upgrade(hub_db_url)
    engine = db.engine_for(hub_db_url)
    access.register_consumer(engine, "renshe", T0)
    yield engine
    audit.close_writers()
    audit._keys.clear()
    keys._cache_clear()
    get_cipher.cache_clear()
    db.dispose_engines()


def _refuse_nul_like_postgresql(monkeypatch: pytest.MonkeyPatch, engine: sa.Engine, marker: str = "\x00") -> None:
    """SQLite stores NUL characters; make it refuse them as PostgreSQL does (PostgreSQL refuses them itself)."""
    if engine.dialect.name != "sqlite" and marker == "\x00":
        return
    original = AuditWriter._write_in

    def refusing(self, connection, rows, subjects, last, key):
        for row in rows:
            if any(isinstance(v, str) and marker in v for v in row.values()):
                raise sa.exc.DataError("INSERT INTO audit_entry …", None, ValueError(f"refuses {marker!r}"))
        return original(self, connection, rows, subjects, last, key)

    monkeypatch.setattr(AuditWriter, "_write_in", refusing)


def _event(i: int, user: str = "u1", case: str | None = None) -> AuditEvent:
    return AuditEvent(consumer_code="renshe", user_id=user, operation="person_query", outcome="allowed",
                      at=T0 + timedelta(seconds=i), purpose_code="SHBZ", case_number=case or f"SB-{i}",
                      resource_code="RK.basic", subjects=[PERSON], fields=["name"])


def test_a_refused_entry_is_set_aside_and_the_chain_goes_on(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_nul_like_postgresql(monkeypatch, engine)
    writer = AuditWriter(engine, chain_id="poison-chain", retry_seconds=0.05)
    try:
        futures = [writer.append(_event(i, user="bad\x00user" if i == 3 else "u1")) for i in range(1, 7)]
        results = []
        for future in futures:
            try:
                results.append(future.result(10))
            except AuditRefused:
                results.append("refused")
        assert results == [1, 2, "refused", 4, 5, 6]
        assert writer.refused == 1
        # the writer keeps going after the refusal
        assert writer.log(_event(7), timeout=10) == 7
        writer.checkpoint()
    finally:
        writer.abort()
    report = verify(engine)
    assert report["ok"], report["problems"]
    table = AuditEntry.__table__
    with engine.connect() as connection:
        rows = {r.seq: r for r in connection.execute(sa.select(table).where(table.c.chain_id == "poison-chain"))}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7]
    placeholder = rows[3]
    assert placeholder.outcome == "error" and placeholder.operation.endswith(":refused")
    assert "拒绝" in placeholder.reason and "\x00" not in placeholder.user_id
    assert placeholder.subjects == rows[2].subjects  # the subject still learns that a call about them happened
    assert all(rows[s].outcome == "allowed" for s in (1, 2, 4, 5, 6, 7))


def test_log_async_of_a_refused_entry_raises_and_others_complete(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_nul_like_postgresql(monkeypatch, engine)
    writer = AuditWriter(engine, chain_id="poison-async", retry_seconds=0.05)

    async def calls() -> list[object]:
        tasks = [writer.log_async(_event(i, case="X\x00" if i % 5 == 0 else None), timeout=10) for i in range(1, 21)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        out = asyncio.run(calls())
    finally:
        writer.abort()
    refused = [i for i, r in enumerate(out, 1) if isinstance(r, AuditRefused)]
    assert refused == [5, 10, 15, 20]
    assert [r for r in out if not isinstance(r, BaseException)] == [i for i in range(1, 21) if i % 5]
    assert verify(engine)["ok"]


def test_api_answers_503_for_a_refused_entry_and_keeps_serving(hub: dict, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    engine, client = hub["engine"], hub["client"]
    _refuse_nul_like_postgresql(monkeypatch, engine, marker="POISON")
    headers = {"X-API-Key": hub["keys"]["minzheng"], **CASE}
    ok = client.post("/exchange/v1/persons/query", json={"resident_id": PERSON}, headers=headers)
    assert ok.status_code == 200
    bad = client.post("/exchange/v1/persons/query", json={"resident_id": PERSON},
                      headers={**headers, "X-Case-Number": "POISON-1"})
    assert bad.status_code == 503 and "data" not in bad.json()
    again = client.post("/exchange/v1/persons/query", json={"resident_id": PERSON}, headers=headers)
    assert again.status_code == 200
    audit.close_writers()
    assert verify(engine)["ok"]
    with engine.connect() as connection:
        outcomes = [r.outcome for r in connection.execute(sa.select(AuditEntry.outcome).order_by(AuditEntry.at))]
    assert outcomes[-3:] == ["allowed", "error", "allowed"]


def test_postgresql_batches_are_one_statement_and_concurrent_calls_are_gathered(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("one-statement batches and the gathering pause are the PostgreSQL path")
    batches: list[int] = []
    original = AuditWriter._write_one_statement

    def counting(self, rows, subjects, last):
        batches.append(len(rows))
        return original(self, rows, subjects, last)

    monkeypatch.setattr(AuditWriter, "_write_one_statement", counting)
    writer = AuditWriter(engine, chain_id="gather-chain", gather_seconds=0.3)
    try:
        assert writer.log(_event(1), timeout=10) == 1  # creates the chain: the transactional path
        burst = [writer.append(_event(i)) for i in range(2, 22)]  # calls arriving together
        assert [f.result(10) for f in burst] == list(range(2, 22))
        # after a batch of several, the next call waits for the ones in flight: one arriving 50 ms later joins it
        first = writer.append(_event(22))
        time.sleep(0.05)
        second = writer.append(_event(23))
        assert (first.result(10), second.result(10)) == (22, 23)
        writer.checkpoint()
    finally:
        writer.close()
    assert batches[-1] == 2 and sum(batches) == 22, batches
    assert verify(engine)["ok"]
    with engine.connect() as connection:
        stored = connection.execute(sa.select(AuditEntry.seq, AuditEntry.subjects, AuditEntry.at)
                                    .where(AuditEntry.chain_id == "gather-chain").order_by(AuditEntry.seq)).all()
    assert [s.seq for s in stored] == list(range(1, 24)) and stored[-1].at == _event(23).at
