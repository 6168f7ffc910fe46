"""The exchange's hot-path shortcuts keep their answers: the freshness figures (scanned again only when the library
changed or the rescan period passed), the PostgreSQL prepared primary-key read (same row as the cursor path), and the
benchmark's latency-curve argument."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from benchmarks import exchange_lookup
from connectors.registry import sources_for
from exchange import subjects
from hub import db
from hub.models import Person, SourceRun

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(hub_db_url: str, hub_settings) -> Iterator[sa.Engine]:
    """A migrated hub database with three golden persons (updated at T0)."""
    from hub.crypto import get_cipher

    get_cipher.cache_clear()
    db.upgrade(hub_db_url)
    engine = db.engine_for(hub_db_url)
    exchange_lookup.build_population(engine, 3)  # rows as the merge writes them, updated_at = exchange_lookup.AT
    yield engine
    get_cipher.cache_clear()
    db.dispose_engines()


def _scans(engine: sa.Engine) -> list[str]:
    """A live list of the max(updated_at) statements run on the engine (the full scans freshness avoids)."""
    seen: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def spy(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "max(" in statement.lower() and "updated_at" in statement.lower():
            seen.append(statement)

    return seen


def _settle_tokens(reader: subjects.Reader) -> None:
    """PostgreSQL's statistics reach pg_stat_user_tables a moment after a commit: wait until they stop moving."""
    if reader.engine.dialect.name != "postgresql":
        return
    names = ["person", "legal_entity", "licence", "credit_record"]
    before = reader._run(lambda c: reader._tokens(c, names))
    for _ in range(40):
        time.sleep(0.25)
        now = reader._run(lambda c: reader._tokens(c, names))
        if now == before:
            return
        before = now


def _newest(engine: sa.Engine, at: datetime) -> None:
    """Make one person newer (as a merge or a steward's correction would)."""
    table = Person.__table__
    with engine.begin() as connection:
        first = connection.execute(sa.select(table.c.person_id).limit(1)).scalar_one()
        connection.execute(table.update().where(table.c.person_id == first).values(updated_at=at))
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_stat_force_next_flush()"))


def test_freshness_is_not_rescanned_while_nothing_changed(engine: sa.Engine) -> None:
    reader = subjects.Reader(engine)
    scans = _scans(engine)
    first = reader._read_freshness()
    assert first["population"]["data_as_of"] == exchange_lookup.AT.isoformat()
    assert len(scans) == 4  # one per library
    _settle_tokens(reader)
    scans.clear()
    assert reader._read_freshness() == first
    assert scans == []  # same run figures, same change tokens: the scans are skipped


def test_freshness_rescans_after_a_successful_run(engine: sa.Engine) -> None:
    reader = subjects.Reader(engine)
    reader._read_freshness()
    _settle_tokens(reader)
    later = T0 + timedelta(hours=1)
    _newest(engine, later)
    source = sources_for("population", merged_only=True)[0].id
    with engine.begin() as connection:
        connection.execute(sa.insert(SourceRun.__table__).values(
            source_id=source, run_id="r-later", status="loaded", started_at=later, finished_at=later))
    fresh = reader._read_freshness()
    assert fresh["population"] == {"data_as_of": later.isoformat(), "last_successful_run": later.isoformat()}


def test_freshness_rescans_after_the_rescan_period(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = subjects.Reader(engine)
    reader._read_freshness()
    _settle_tokens(reader)
    later = T0 + timedelta(hours=2)
    with engine.begin() as connection:  # no run, no statistics flush: a change the tokens may not show yet
        table = Person.__table__
        first = connection.execute(sa.select(table.c.person_id).limit(1)).scalar_one()
        connection.execute(table.update().where(table.c.person_id == first).values(updated_at=later))
    monkeypatch.setattr(subjects, "FRESHNESS_RESCAN_SECONDS", 0.0)
    assert reader._read_freshness()["population"]["data_as_of"] == later.isoformat()


def test_postgresql_statistics_reveal_a_change_without_a_run(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("change tokens come from PostgreSQL's statistics; SQLite relies on runs and the rescan period")
    reader = subjects.Reader(engine)
    reader._read_freshness()
    _settle_tokens(reader)
    later = T0 + timedelta(hours=3)
    _newest(engine, later)
    deadline = time.monotonic() + 10
    while reader._read_freshness()["population"]["data_as_of"] != later.isoformat():
        assert time.monotonic() < deadline, "the statistics never showed the update"
        time.sleep(0.2)


def test_primary_key_read_is_the_same_on_every_path(engine: sa.Engine) -> None:
    """The first lookup goes through the DBAPI cursor (and learns the result processors); on PostgreSQL the later
    ones go through a prepared statement: the rows must be identical, and a missing key is None on both."""
    with engine.connect() as connection:
        keys = list(connection.execute(sa.select(Person.__table__.c.person_id)).scalars())
    reader = subjects.Reader(engine)
    first = [reader.person(k) for k in keys]
    again = [reader.person(k) for k in keys]
    assert first == again and all(row is not None and row["person_id"] == k for row, k in zip(first, keys))
    assert reader.person("0" * 64) is None
    assert {"birth_date", "id_number_enc", "updated_at"} <= first[0].keys()
    assert "lineage" not in first[0]
    if engine.dialect.name == "postgresql":
        assert any(b"hub_reader_person" in raw.info.get("hub_reader_prepared", ()) for raw in reader._raw)
    reader.close()


def test_prepared_read_survives_a_session_that_lost_its_statement(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("prepared statements are the PostgreSQL path")
    with engine.connect() as connection:
        key = connection.execute(sa.select(Person.__table__.c.person_id).limit(1)).scalar_one()
    reader = subjects.Reader(engine)
    expected = reader.person(key)
    assert reader.person(key) == expected
    reader._raw[-1].driver_connection.execute("DEALLOCATE ALL")  # e.g. a pooler or an administrator reset the session
    assert reader.person(key) == expected  # prepared again on the same connection
    assert reader.person("0" * 64) is None
    reader.close()


@pytest.mark.parametrize(("text", "points"), [("64", (64,)), ("16,32,64", (16, 32, 64)), ("1", (1,))])
def test_connections_argument_accepts_a_count_or_a_curve(text: str, points: tuple[int, ...]) -> None:
    assert exchange_lookup.parse_connections(text) == points


@pytest.mark.parametrize("text", ["", "a", "16,,64", "0", "64,32", "16,16", "20000", "-4"])
def test_connections_argument_refuses_bad_curves(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        exchange_lookup.parse_connections(text)
