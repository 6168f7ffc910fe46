"""Bulk writers for the source systems: SQLite, PostgreSQL (COPY), MariaDB (multi-row INSERT), CSV, JSON Lines."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from world.text import joined_view, json_objects

# Column DDL of the relational sources (SQL type per dialect family; TIMESTAMP is DATETIME on MariaDB).
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "hjrk": (
        ("rkid", "INTEGER"), ("gmsfhm", "VARCHAR(18)"), ("xm", "VARCHAR(64)"), ("xb", "VARCHAR(4)"),
        ("mz", "VARCHAR(4)"), ("csrq", "VARCHAR(32)"), ("hjdz_xzqh", "VARCHAR(6)"), ("hjdz", "VARCHAR(255)"),
        ("lxdh", "VARCHAR(32)"), ("hyzk", "VARCHAR(4)"), ("swrq", "VARCHAR(32)"), ("gxsj", "TIMESTAMP"),
    ),
    "qydj": (
        ("qyid", "INTEGER"), ("tyshxydm", "VARCHAR(18)"), ("qymc", "VARCHAR(200)"), ("qylx", "VARCHAR(64)"),
        ("fddbr", "VARCHAR(64)"), ("fddbr_zjhm", "VARCHAR(18)"), ("zczb", "DECIMAL(18,4)"), ("clrq", "VARCHAR(32)"),
        ("djjg", "VARCHAR(100)"), ("djzt", "VARCHAR(16)"), ("zs", "VARCHAR(255)"), ("xzqh", "VARCHAR(6)"),
        ("jyfw", "VARCHAR(1000)"), ("gxsj", "TIMESTAMP"),
    ),
    "gtgsh": (
        ("gtid", "INTEGER"), ("tyshxydm", "VARCHAR(18)"), ("zhmc", "VARCHAR(200)"), ("jyz", "VARCHAR(64)"),
        ("jyz_zjhm", "VARCHAR(18)"), ("jycs", "VARCHAR(255)"), ("xzqh", "VARCHAR(6)"), ("zcrq", "VARCHAR(32)"),
        ("djzt", "VARCHAR(16)"), ("gxsj", "TIMESTAMP"),
    ),
}
TABLE_COMMENTS = {"hjrk": "户籍人口", "qydj": "企业登记", "gtgsh": "个体工商户"}


def _ddl(table: str, dialect: str, primary_key: bool = True) -> str:
    """CREATE TABLE for a source table in the dialect ('sqlite', 'postgresql', 'mysql')."""
    cols = []
    for i, (name, sql_type) in enumerate(TABLE_COLUMNS[table]):
        if dialect == "mysql" and sql_type == "TIMESTAMP":
            sql_type = "DATETIME"
        cols.append(f"{name} {sql_type}" + (" PRIMARY KEY" if i == 0 and primary_key else ""))
    suffix = f" DEFAULT CHARSET=utf8mb4 COMMENT='{TABLE_COMMENTS[table]}'" if dialect == "mysql" else ""
    return f"CREATE TABLE {table} ({', '.join(cols)}){suffix}"


def _python_columns(table: pa.Table) -> list[list[object]]:
    """Columns as Python lists (timestamps as 'YYYY-MM-DD HH:MM:SS' text, the SQLite convention)."""
    out = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.string())
        out.append(column.to_pylist())
    return out


def write_sqlite(path: Path, tables: dict[str, pa.Table]) -> None:
    """A fresh SQLite file with the tables (journal off: the file is rebuilt from scratch anyway)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-200000")
        for name, table in tables.items():
            connection.execute(_ddl(name, "sqlite"))
            marks = ", ".join("?" * table.num_columns)
            connection.executemany(f"INSERT INTO {name} VALUES ({marks})", zip(*_python_columns(table)))
        connection.commit()
    finally:
        connection.close()


def _csv_bytes(table: pa.Table, quoting: str = "needed") -> pa.Buffer:
    """The table as UTF-8 CSV with a header (null = empty field, '' = quoted empty)."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style=quoting))
    return sink.getvalue()


def write_postgres(url: str, tables: dict[str, pa.Table]) -> None:
    """Recreate the tables in a PostgreSQL database and fill them with COPY."""
    import psycopg
    import sqlalchemy as sa

    conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            for name, table in tables.items():
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                # The key is added after the load: one index build beats a million index inserts.
                cursor.execute(_ddl(name, "postgresql", primary_key=False))
                cursor.execute(f"COMMENT ON TABLE {name} IS '{TABLE_COMMENTS[name]}'")
                columns = ", ".join(table.column_names)
                data = _csv_bytes(table)
                with cursor.copy(f"COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                    view = memoryview(data)
                    for start in range(0, len(view), 1 << 22):
                        copy.write(view[start:start + (1 << 22)])
                cursor.execute(f"ALTER TABLE {name} ADD PRIMARY KEY ({table.column_names[0]})")
        connection.commit()


def write_mysql(url: str, tables: dict[str, pa.Table], batch: int = 5000) -> None:
    """Recreate the tables in a MariaDB/MySQL database (utf8mb4): LOAD DATA LOCAL INFILE, else multi-row INSERTs."""
    import pymysql
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    connection = pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                                 password=u.password or "", database=u.database, charset="utf8mb4", local_infile=True)
    try:
        with connection.cursor() as cursor:
            for name, table in tables.items():
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                cursor.execute(_ddl(name, "mysql"))
                if not _load_data(cursor, name, table):
                    marks = ", ".join(["%s"] * table.num_columns)
                    sql = f"INSERT INTO {name} ({', '.join(table.column_names)}) VALUES ({marks})"
                    rows = list(zip(*_python_columns(table)))
                    for start in range(0, len(rows), batch):
                        cursor.executemany(sql, rows[start:start + batch])
        connection.commit()
    finally:
        connection.close()


def _load_data(cursor: object, name: str, table: pa.Table) -> bool:
    """Bulk-load through LOAD DATA LOCAL INFILE; False if the server refuses it (local_infile off)."""
    import pymysql

    # Every column as text with \N for NULL (MySQL's CSV has no other NULL marker).
    text = pa.table({c: pc.fill_null(pc.cast(table.column(c), pa.string()), "\\N") for c in table.column_names})
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as handle:
        handle.write(memoryview(_csv_bytes(text)))
        path = handle.name
    try:
        cursor.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {name} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' "
            f"LINES TERMINATED BY '\\n' IGNORE 1 LINES ({', '.join(table.column_names)})", (path,))
        return True
    except pymysql.err.MySQLError:
        return False
    finally:
        Path(path).unlink(missing_ok=True)


def write_csv(path: Path, table: pa.Table, encoding: str = "utf-8") -> None:
    """CSV in the given encoding ('utf-8', 'utf-8-sig', 'gbk', 'gb18030')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _csv_bytes(table)
    if encoding == "utf-8":
        path.write_bytes(memoryview(data))
        return
    text = data.to_pybytes().decode("utf-8")
    path.write_bytes(text.encode(encoding))


def jsonl_lines(table: pa.Table, raw: Sequence[str] = ()) -> pa.Array:
    """One JSON object text per row + newline; columns in `raw` already hold JSON text."""
    fields = []
    for name, column in zip(table.column_names, table.columns):
        column = column.combine_chunks()
        if name in raw:
            kind = "raw"
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            kind = "num"
        else:
            kind = "str"
            if not pa.types.is_string(column.type):
                column = pc.cast(column, pa.string())
        fields.append((name, column, kind))
    return pc.binary_join_element_wise(json_objects(fields), "\n", "")


def write_jsonl(path: Path, table: pa.Table, raw: Sequence[str] = ()) -> None:
    """JSON Lines (UTF-8, one object per line, keys in column order), written chunk by chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for batch in table.to_batches():
            handle.write(joined_view(jsonl_lines(pa.Table.from_batches([batch]), raw)))


def grouped(table: pa.Table, keys: np.ndarray) -> list[tuple[object, pa.Table]]:
    """(key, rows of the key in their original order) per distinct key, keys sorted.

    Each group is assembled from zero-copy slices of the runs of consecutive rows it owns, so a
    table already in group order (plus a few appended rows) is never copied.
    """
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    bounds = np.append(starts, len(order))
    out = []
    for i, key in enumerate(uniq.tolist()):
        members = order[bounds[i]:bounds[i + 1]]
        breaks = np.flatnonzero(np.diff(members) != 1) + 1
        runs = np.split(members, breaks)
        out.append((key, pa.concat_tables([table.slice(int(r[0]), len(r)) for r in runs])))
    return out
