"""Alembic environment of the hub database: the same migrations for SQLite and PostgreSQL, any URL.

Called by hub.db (which passes an open connection in `config.attributes["connection"]`) or by the
alembic CLI (`alembic -c hub/migrations/alembic.ini [-x url=...] upgrade head`).
"""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext

from hub import db
from hub.models import Base

config = context.config
target_metadata = Base.metadata

# Constant key of the PostgreSQL advisory lock that serialises concurrent upgrades (e.g. two workers starting).
MIGRATION_LOCK_KEY = 0x6875620001  # "hub" + 1


def _render_item(type_: str, obj, autogen_context: AutogenContext) -> str | bool:
    """Render the hub's TypeDecorators as their plain SQLAlchemy type, so migrations never import models."""
    if type_ == "type" and isinstance(obj, sa.types.TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def _options(dialect_name: str) -> dict:
    """Options shared by online, offline and autogenerate runs."""
    return {
        "target_metadata": target_metadata,
        "version_table": db.VERSION_TABLE,
        # SQLite cannot ALTER most things: batch mode copies the table; on PostgreSQL it emits plain ALTERs.
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
        "render_item": _render_item,
    }


def _url() -> str:
    """URL from `-x url=...`, else the configured sqlalchemy.url, else the hub settings."""
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url") or None


def _sqlite_foreign_keys(connection: sa.Connection, enabled: bool) -> None:
    """Toggle SQLite foreign-key enforcement, which batch mode's copy-and-rename would otherwise trip."""
    raw = connection.connection.driver_connection  # outside SQLAlchemy's transaction: the pragma is ignored inside one
    if not enabled:
        raw.execute("PRAGMA foreign_keys=OFF")
        return
    violations = raw.execute("PRAGMA foreign_key_check").fetchall()
    raw.execute("PRAGMA foreign_keys=ON")
    if violations:
        raise RuntimeError(f"迁移后外键不一致 foreign-key violations after migration: {violations[:5]}")


def _migrate(connection: sa.Connection) -> None:
    """Run the migrations on an open connection."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        _sqlite_foreign_keys(connection, enabled=False)
    context.configure(connection=connection, **_options(dialect))
    try:
        with context.begin_transaction():
            if dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
    finally:
        if dialect == "sqlite":
            _sqlite_foreign_keys(connection, enabled=True)


def run_offline() -> None:
    """Emit SQL to stdout (`alembic ... upgrade head --sql`)."""
    url = db.resolve_url(_url())
    context.configure(url=url, literal_binds=True, **_options(url.get_backend_name()))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the shared connection, or through the hub engine of the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)  # CLI use only
    with db.engine_for(_url()).connect() as connection:
        _migrate(connection)
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
