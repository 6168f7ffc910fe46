"""Bulk writes of the merge: COPY on PostgreSQL (psycopg 3), executemany elsewhere, inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

IN_CHUNK = 5_000  # keys per IN (...) list: under SQLite's variable limit, small enough for PostgreSQL's planner


def chunks(values: list[Any], size: int = IN_CHUNK) -> Iterable[list[Any]]:
    """Consecutive slices of at most size."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _copy_value(value: Any, column: sa.Column) -> Any:
    """A Python value as psycopg's COPY writer takes it (JSON columns as JSON text)."""
    if value is not None and isinstance(column.type, sa.JSON):
        return json.dumps(value, ensure_ascii=False)
    return value


def insert_rows(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows (all with the same keys); COPY … FROM STDIN on PostgreSQL through psycopg, executemany otherwise."""
    if not rows:
        return 0
    names = list(rows[0])
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        columns = [table.c[name] for name in names]
        quoted = ", ".join(connection.dialect.identifier_preparer.quote(name) for name in names)
        statement = f"COPY {connection.dialect.identifier_preparer.format_table(table)} ({quoted}) FROM STDIN"
        driver = connection.connection.driver_connection  # same connection, same transaction as the caller's
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([_copy_value(row[n], c) for n, c in zip(names, columns)])
        return len(rows)
    connection.execute(sa.insert(table), rows)
    return len(rows)


def delete_where_in(connection: sa.Connection, table: sa.Table, column: str, values: list[Any], *conditions: Any) -> int:
    """DELETE rows whose column is in values (and the extra conditions), chunked."""
    done = 0
    for part in chunks(values):
        done += connection.execute(sa.delete(table).where(table.c[column].in_(part), *conditions)).rowcount or 0
    return done


__all__ = ["IN_CHUNK", "chunks", "delete_where_in", "insert_rows"]
