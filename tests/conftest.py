"""Shared fixtures: throw-away databases on the local PostgreSQL and MariaDB servers, isolated settings.

On a user's machine without those servers the tests that need them skip with a visible reason.
With CI=true they must run: an unreachable server fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("HUB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unreachable(kind: str, error: Exception) -> None:
    """Skip on a developer machine, fail in CI: CI must never skip the real-database tests silently."""
    message = f"{kind} at {kind == 'PostgreSQL' and PG_ADMIN_URL or MYSQL_ADMIN_URL} unreachable: {error}"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def _throwaway_database(admin_url: str, kind: str) -> Iterator[str]:
    """Create a fresh database on the server, yield its URL, drop it afterwards."""
    name = f"hubt_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as error:
        _unreachable(kind, error)
    url = sa.engine.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            if kind == "PostgreSQL":
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database that lives for one test."""
    yield from _throwaway_database(PG_ADMIN_URL, "PostgreSQL")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """URL of an empty MariaDB database that lives for one test."""
    yield from _throwaway_database(MYSQL_ADMIN_URL, "MariaDB")


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The hub database URL on each supported backend: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        yield from _throwaway_database(PG_ADMIN_URL, "PostgreSQL")


@pytest.fixture
def hub_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings pointing at a fresh data root under tmp_path (and no user settings file)."""
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("HUB_SETTINGS_FILE", str(tmp_path / "absent.toml"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def hub_engine(hub_settings, hub_db_url):
    """The engine of a migrated hub database on each backend (settings isolated)."""
    from hub.db import engine_for, upgrade

    upgrade(hub_db_url)
    yield engine_for(hub_db_url)


@pytest.fixture(scope="session")
def airflow_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An Airflow environment for this test process: its own data root, Airflow home and migrated metadata DB.

    Session-scoped because `airflow db migrate` costs seconds; each xdist worker gets its own folder.
    Returns the data root; tests that need a clean hub database point HUB_DATABASE_URL elsewhere.
    """
    import subprocess
    import sys

    from hub import airflow_env
    from hub.settings import Settings, get_settings

    root = tmp_path_factory.mktemp("airflow_session")
    saved = dict(os.environ)
    os.environ["HUB_DATA_ROOT"] = str(root / "data")
    os.environ["HUB_SETTINGS_FILE"] = str(root / "absent.toml")
    get_settings.cache_clear()
    environ = airflow_env.apply(Settings())
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        yield root / "data"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        assert environ  # keep the variable referenced for readers: these are what apply() set
