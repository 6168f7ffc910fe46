"""Bulk reads and writes. Reads: a query's rows as the database driver returns them (`driver_rows`). Writes of the merge: COPY on PostgreSQL (psycopg 3), the driver's executemany on SQLite (values through the
columns' own bind processors, without SQLAlchemy's per-row statement machinery), SQLAlchemy executemany elsewhere;
always inside the caller's transaction.

A JSON column's value may come already serialised (`JsonText`, the engine's serialiser applied by the caller, e.g.
once for a lineage written to two tables); other values are serialised here as SQLAlchemy would.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

SQLITE_CACHE_KIB = 256 * 1024  # page cache of a SQLite connection writing a large batch (large_cache)
IN_CHUNK = 5_000  # keys per IN (...) list: under SQLite's variable limit, small enough for PostgreSQL's planner
DRIVER_BATCH = 50_000  # rows per fetch of driver_rows


@contextmanager
def _driver_cursor(connection: sa.Connection, query: sa.Select) -> Iterator[Any]:
    """A database cursor of its own that has executed the query (server-side on PostgreSQL: rows come as fetched).
    Its own, because a streamed SQLAlchemy result has already buffered its first rows away from the DBAPI cursor."""
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    driver = connection.connection.dbapi_connection
    cursor = driver.cursor(name=f"hub_rows_{uuid.uuid4().hex}") if connection.dialect.name == "postgresql" else driver.cursor()
    try:
        cursor.execute(sql)
        yield cursor
    finally:
        cursor.close()


def driver_rows(connection: sa.Connection, query: sa.Select, batch_rows: int = DRIVER_BATCH) -> Iterator[list[tuple[Any, ...]]]:
    """The query's rows as the database driver returns them, in batches: values are the driver's own (on SQLite a
    date is its ISO text). For reads of a whole library table, where SQLAlchemy's row objects and type processing
    cost as much as the database (population at scale 1: 7.9 → 4.1 s)."""
    with _driver_cursor(connection, query) as cursor:
        while part := cursor.fetchmany(batch_rows):
            yield part


def typed_columns(connection: sa.Connection, query: sa.Select, batch_rows: int = DRIVER_BATCH) -> Iterator[dict[str, list[Any]]]:
    """The query's rows in batches as {column: values}, each value as SQLAlchemy would return it (the column type's
    own result conversion, applied per column) but without building row objects."""
    dialect = connection.dialect
    names = list(query.selected_columns.keys())
    with _driver_cursor(connection, query) as cursor:
        convert = [column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                   for column, described in zip(query.selected_columns, cursor.description)]
        while part := cursor.fetchmany(batch_rows):
            yield {name: list(values) if to is None else [to(v) for v in values]
                   for name, values, to in zip(names, zip(*part), convert)}


class JsonText(str):
    """JSON text ready for a JSON column (json.dumps(value, ensure_ascii=False), the hub engines' serialiser)."""


def json_text(value: Any) -> JsonText:
    """A value serialised as the hub's engines serialise JSON columns (hub.db._json_text)."""
    return JsonText(json.dumps(value, ensure_ascii=False))


def chunks(values: list[Any], size: int = IN_CHUNK) -> Iterable[list[Any]]:
    """Consecutive slices of at most size."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _is_json(column: sa.Column) -> bool:
    """A JSON column, or one whose type decorates JSON (the libraries' lineage)."""
    kind = column.type.impl if isinstance(column.type, sa.TypeDecorator) else column.type
    return isinstance(kind, sa.JSON)


def _copy_value(value: Any, column: sa.Column, dialect: sa.Dialect) -> Any:
    """A Python value as psycopg's COPY writer takes it (JSON columns as JSON text, through a decorator's own binding)."""
    if value is None or isinstance(value, JsonText):
        return value
    if isinstance(column.type, sa.TypeDecorator):
        value = column.type.process_bind_param(value, dialect)
    return json.dumps(value, ensure_ascii=False)


def _sqlite_processor(column: sa.Column, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """The bind processor SQLAlchemy would apply to the column's values (None: values go as they are); times and
    days are memoised (a batch repeats its run time, and days repeat)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    if _is_json(column):
        return lambda value: value if isinstance(value, JsonText) else process(value)
    kind = column.type.impl if isinstance(column.type, sa.TypeDecorator) else column.type
    if isinstance(kind, (sa.DateTime, sa.Date)):
        done: dict[Any, Any] = {}

        def memoised(value: Any) -> Any:
            # the key tells a date from a datetime, and zones and folds apart (equal instants, other wall times)
            key = (value, value.tzinfo, value.fold) if type(value) is dt.datetime else (type(value), value)
            found = done.get(key, done)
            if found is done:
                found = done[key] = process(value)
            return found

        return memoised
    return process


def _sqlite_params(rows: list[dict[str, Any]], names: list[str], columns: list[sa.Column],
                   dialect: sa.Dialect) -> list[tuple[Any, ...]]:
    """The rows as parameter tuples for the SQLite driver, column by column through the bind processors.
    Binary values go as bytes (the processor would wrap them in a memoryview: the same BLOB)."""
    values = [[row[name] for row in rows] for name in names]
    for k, column in enumerate(columns):
        if isinstance(column.type, sa.LargeBinary) and all(v is None or type(v) is bytes for v in values[k]):
            continue
        process = _sqlite_processor(column, dialect)
        if process is not None:
            values[k] = [process(v) for v in values[k]]
    return list(zip(*values))


def insert_rows(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows (all with the same keys); COPY … FROM STDIN on PostgreSQL through psycopg, the driver's
    executemany on SQLite, SQLAlchemy's executemany otherwise."""
    if not rows:
        return 0
    names = list(rows[0])
    dialect = connection.dialect
    columns = [table.c[name] for name in names]
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
        statement = f"COPY {dialect.identifier_preparer.format_table(table)} ({quoted}) FROM STDIN"
        json_positions = [k for k, c in enumerate(columns) if _is_json(c)]
        driver = connection.connection.driver_connection  # same connection, same transaction as the caller's
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                values = [row[n] for n in names]
                for k in json_positions:
                    values[k] = _copy_value(values[k], columns[k], dialect)
                write(values)
        return len(rows)
    if dialect.name == "sqlite":
        quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
        statement = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({quoted}) "
                     f"VALUES ({', '.join('?' * len(names))})")
        connection.exec_driver_sql(statement, _sqlite_params(rows, names, columns, dialect))
        return len(rows)
    json_names = [c.name for c in columns if _is_json(c)]
    if json_names:
        rows = [{**row, **{n: json.loads(row[n]) for n in json_names if isinstance(row[n], JsonText)}} for row in rows]
    connection.execute(sa.insert(table), rows)
    return len(rows)


def update_where_id(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """UPDATE rows by primary key `id`: each row is {"id": …, column: value, …} (all with the same keys)."""
    if not rows:
        return 0
    names = [n for n in rows[0] if n != "id"]
    dialect = connection.dialect
    if dialect.name == "sqlite":
        quote = dialect.identifier_preparer.quote
        statement = (f"UPDATE {dialect.identifier_preparer.format_table(table)} SET "
                     f"{', '.join(f'{quote(n)} = ?' for n in names)} WHERE {quote('id')} = ?")
        connection.exec_driver_sql(statement, _sqlite_params(rows, [*names, "id"], [table.c[n] for n in [*names, "id"]], dialect))
        return len(rows)
    connection.execute(sa.update(table).where(table.c.id == sa.bindparam("b_id")).values(
        {name: sa.bindparam(f"b_{name}") for name in names}), [{f"b_{k}": v for k, v in row.items()} for row in rows])
    return len(rows)


@contextmanager
def large_cache(connection: sa.Connection) -> Iterator[None]:
    """SQLite: a page cache big enough for a batch's writes (the default 2 MB spills pages to the WAL long before
    the commit, and random index inserts — HMAC keys — miss it); the connection's own setting again afterwards
    (it goes back to the pool). Other databases: nothing to do."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    connection.commit()  # ends SQLAlchemy's autobegun transaction (a PRAGMA opens none in SQLite)
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")
        connection.commit()


def in_values(connection: sa.Connection, column: sa.Column, values: list[Any]) -> sa.ColumnElement[bool]:
    """`column IN values` as one parameter: `= ANY(array)` on PostgreSQL, `IN (SELECT value FROM json_each(json))`
    on SQLite (both use the column's index); an expanding IN list elsewhere. Thousands of bound parameters cost
    SQLAlchemy and PostgreSQL's planner far more than the lookups do.
    Values must be text or integers."""
    name = connection.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        kind = sa.Integer() if isinstance(column.type, sa.Integer) else sa.String()
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(kind)))
    if name == "sqlite":
        listed = sa.select(sa.column("value")).select_from(sa.func.json_each(sa.bindparam(None, json.dumps(list(values)))))
        return column.in_(listed.scalar_subquery())
    return column.in_(values)


def delete_where_in(connection: sa.Connection, table: sa.Table, column: str, values: list[Any], *conditions: Any) -> int:
    """DELETE rows whose column is in values (and the extra conditions), chunked."""
    done = 0
    for part in chunks(values):
        done += connection.execute(sa.delete(table).where(in_values(connection, table.c[column], part), *conditions)).rowcount or 0
    return done


__all__ = ["IN_CHUNK", "JsonText", "chunks", "delete_where_in", "driver_rows", "in_values", "typed_columns", "insert_rows", "json_text", "large_cache", "update_where_id"]
