"""Hub database migrations and engines on SQLite and PostgreSQL (hub.db, hub/migrations)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub import db
from hub.cli import main
from hub.models import Base

TABLES = set(Base.metadata.tables)  # every table the models declare (quality tables included)


@pytest.fixture
def url(hub_db_url: str) -> Iterator[str]:
    """The backend's URL; pooled connections are closed before the database is dropped."""
    yield hub_db_url
    db.dispose_engines()


def _tables(url: str) -> set[str]:
    """Table names present in the database."""
    return set(sa.inspect(db.engine_for(url)).get_table_names())


def test_upgrade_check_downgrade(url: str) -> None:
    """Upgrade to head, find no difference from the models, downgrade to empty, upgrade again."""
    assert db.current_revision(url) is None
    db.upgrade(url)
    assert db.current_revision(url) == db.head_revision()
    assert _tables(url) == TABLES | {db.VERSION_TABLE}
    db.check(url)  # what `alembic check` does: raises if autogenerate would write anything
    with db.engine_for(url).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": db.VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, Base.metadata) == []
    db.upgrade(url)  # already at head: nothing to do
    db.downgrade(url, "base")
    assert db.current_revision(url) is None
    assert _tables(url) == {db.VERSION_TABLE}
    db.upgrade(url)
    assert _tables(url) == TABLES | {db.VERSION_TABLE}


def test_constraint_names_follow_convention(url: str) -> None:
    """Index, unique and primary-key names are the deterministic convention names on both backends."""
    db.upgrade(url)
    inspector = sa.inspect(db.engine_for(url))
    indexes = {ix["name"] for table in TABLES for ix in inspector.get_indexes(table)}
    assert {
        "ix_person_name_birth_date",
        "ix_legal_entity_legal_rep_person_id",
        "ix_licence_holder_person_id",
        "ix_credit_record_subject_person_id",
    } <= indexes
    uniques = {uq["name"] for uq in inspector.get_unique_constraints("source_run")}
    assert uniques == {"uq_source_run_source_id_run_id"}
    if db.engine_for(url).dialect.name == "postgresql":  # SQLite does not report primary-key names
        assert inspector.get_pk_constraint("person")["name"] == "pk_person"


def test_migrations_need_no_cwd_config(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgrading works from any folder: the Alembic config lives in the package."""
    monkeypatch.chdir(tmp_path)
    db.upgrade(url)
    assert db.current_revision(url) == db.head_revision()


def test_cli_upgrade_and_current_hide_password(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`hub db upgrade` and `hub db current` print the URL with the password replaced by ***."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        url = parsed.set(password="s3cret-pw").render_as_string(hide_password=False)  # trust auth ignores it
    assert main(["db", "current", "--url", url]) == 0
    assert "hub db upgrade" in capsys.readouterr().out
    assert main(["db", "upgrade", "--url", url]) == 0
    assert main(["db", "current", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out
    assert db.head_revision() in out and "up to date" in out
    if parsed.get_backend_name() == "postgresql":
        assert "***" in out


def test_cli_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable server is a clear error with exit status 1 and no password."""
    assert main(["db", "current", "--url", "postgresql://hub:topsecret@127.0.0.1:1/hub"]) == 1
    err = capsys.readouterr().err
    assert "topsecret" not in err and "***" in err and "Traceback" not in err
    db.dispose_engines()


def test_default_url_from_settings(hub_settings) -> None:
    """Without a URL the engine uses settings.database_url (SQLite under the data root), once per process."""
    engine = db.engine_for()
    assert engine is db.engine_for(hub_settings.database_url)
    assert engine.url.database == str(hub_settings.data_root / "hub.db")
    db.upgrade()
    assert (hub_settings.data_root / "hub.db").exists()
    db.dispose_engines()


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    """SQLite: parent folder created, WAL journal, foreign keys on, busy timeout set."""
    path = tmp_path / "deep" / "er" / "hub.db"
    engine = db.engine_for(f"sqlite:///{path}")
    with engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == db.SQLITE_BUSY_TIMEOUT_MS
    assert path.exists()
    db.dispose_engines()


def test_postgresql_uses_psycopg3() -> None:
    """A plain postgresql:// URL is pinned to psycopg 3; display hides the password."""
    assert db.resolve_url("postgresql://u:pw@h/d").drivername == "postgresql+psycopg"
    assert db.resolve_url("postgres://u:pw@h/d").drivername == "postgresql+psycopg"
    assert db.display_url("postgresql://u:pw@h/d") == "postgresql+psycopg://u:***@h/d"


def test_single_head_and_self_contained_revisions() -> None:
    """One head (parallel branches must be merged) and revisions never import the evolving models."""
    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        source = Path(revision.path).read_text(encoding="utf-8")
        assert "hub.models" not in source.replace("never import hub.models", "")
        assert re.fullmatch(r"\d{4}", revision.revision), "revision ids are four digits: 0001, 0002, …"


def test_new_revision_numbers_and_finds_nothing_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hub db revision` autogenerates the next numbered file; with models matching migrations it is empty."""
    copy = tmp_path / "migrations"
    shutil.copytree(db.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(db, "MIGRATIONS_DIR", copy)
    head = db.head_revision()  # the next file is numbered after the newest revision, whichever it is
    path = db.new_revision("nothing changed")
    assert path.parent == copy / "versions" and path.name == f"{int(head) + 1:04d}_nothing_changed.py"
    source = path.read_text(encoding="utf-8")
    assert f"down_revision: str | Sequence[str] | None = '{head}'" in source
    assert "op." not in source  # no operations: the models and the migrations agree
