"""The hub database: engines, sessions and migrations, for SQLite and PostgreSQL alike (chosen by URL only).

枢纽数据库：连接、会话与结构迁移。
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from hub.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "hub_alembic_version"  # not `alembic_version`: the hub may share a server with Airflow's own Alembic
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def resolve_url(url: str | None = None) -> sa.URL:
    """The URL to use (settings by default), with PostgreSQL pinned to psycopg 3."""
    parsed = make_url(url or get_settings().database_url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | sa.URL | None = None) -> str:
    """The URL as text with any password replaced by ***, for messages and logs."""
    parsed = resolve_url(url) if not isinstance(url, sa.URL) else url
    return parsed.render_as_string(hide_password=True)


def _sqlite_file(url: sa.URL) -> Path | None:
    """The database file of an SQLite URL, None for an in-memory database."""
    database = url.database or ""
    if database in {"", ":memory:"} or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


@contextmanager
def sqlite_writer_turn(engine: Engine, name: str) -> Iterator[None]:
    """Around a write transaction on an SQLite file: hold an exclusive flock on `<db>.<name>-lock` meanwhile.

    Processes writing the same database in turn (e.g. the sealing workers) then queue in the kernel and wake the
    moment the lock is released, instead of meeting SQLITE_BUSY and sleeping in SQLite's busy handler in 1…100 ms
    steps while their core idles. Elsewhere (PostgreSQL, in-memory SQLite, no fcntl) it does nothing."""
    path = _sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's busy handler alone
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    descriptor = os.open(f"{path.resolve()}.{name}-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _on_sqlite_connect(dbapi_connection, connection_record) -> None:
    """Per-connection SQLite settings: WAL, enforced foreign keys, wait instead of failing when locked."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # WAL lets readers (exchange API) work while a load writes; NORMAL sync is safe under WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _json_text(value: object) -> str:
    """JSON with Chinese kept readable (and 3 bytes a character instead of 6 for \\uXXXX escapes)."""
    return json.dumps(value, ensure_ascii=False)


def _create_engine(url: sa.URL) -> Engine:
    """A new engine for the URL with the backend's settings."""
    if url.get_backend_name() == "sqlite":
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, json_serializer=_json_text)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    options: dict = {"json_serializer": _json_text, "pool_pre_ping": True}  # pre-ping: survive server restarts
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = {"application_name": "hub"}  # visible in pg_stat_activity
    return sa.create_engine(url, **options)


def engine_for(url: str | None = None) -> Engine:
    """The process-wide engine of a database URL (default: settings.database_url), created on first use."""
    resolved = resolve_url(url)
    key = resolved.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(resolved)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection and forget the engines (tests, forked workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error, always closed."""
    # expire_on_commit=False: objects returned from the block stay readable after it closes.
    with Session(engine_for(url), expire_on_commit=False) as session, session.begin():
        yield session


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations (no alembic.ini needed in the cwd)."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", resolve_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    return config


def _run(url: str | None, action, *args, **kwargs) -> None:
    """Run an Alembic command on a connection of the hub engine (so SQLite gets its pragmas)."""
    config = alembic_config(url)
    with engine_for(url).connect() as connection:
        config.attributes["connection"] = connection
        action(config, *args, **kwargs)
        connection.commit()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the hub database up to `revision` (default: the newest)."""
    _run(url, command.upgrade, revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Migrate the hub database down to `revision` (default: empty)."""
    _run(url, command.downgrade, revision)


def check(url: str | None = None) -> None:
    """Raise alembic.util.AutogenerateDiffsDetected if the database (at head) differs from hub.models."""
    _run(url, command.check)


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at (None when never migrated)."""
    with engine_for(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _next_revision_id(script: ScriptDirectory) -> str:
    """The next four-digit revision id (0001, 0002, …), so file order is history order."""
    numbers = [int(m.group(1)) for rev in script.walk_revisions() if (m := re.match(r"(\d+)", rev.revision))]
    return f"{max(numbers, default=0) + 1:04d}"


def new_revision(message: str) -> Path:
    """Autogenerate a migration from hub.models against a scratch SQLite database at head; return its file."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        try:
            upgrade(url)
            config = alembic_config(url)
            rev_id = _next_revision_id(ScriptDirectory.from_config(config))
            with engine_for(url).connect() as connection:
                config.attributes["connection"] = connection
                script = command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine = _engines.pop(resolve_url(url).render_as_string(hide_password=False), None)
            if engine is not None:
                engine.dispose()
    return Path(script.path)
