"""Relational sources through SQLAlchemy: streamed in Arrow record batches, never a whole table in memory.

Two ways to read, one result:
- any database: a server-side cursor (stream_results) fetched in partitions and built into Arrow columns;
- PostgreSQL through psycopg: `COPY (SELECT …) TO STDOUT (FORMAT csv)` parsed by pyarrow's streaming CSV
  reader into the same landing types, with no Python work per row (several times faster, same memory).
  The session is pinned to ISO dates, UTC and exact float output for the COPY, so the text parses back
  to exactly the values the cursor path would give (timestamptz as UTC, like the cursor path).
Either way the batches are cut to `batch_rows` rows, and the replication key's high mark is taken per batch
with an Arrow max, so the watermark costs nothing per row.
"""

from __future__ import annotations

import decimal
import io
import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from connectors.base import SourceError, Watermark, rebatch
from hub.faults import fault_point

COPY_BLOCK = 1 << 20  # bytes pyarrow parses at a time: bounds the memory of the COPY path
# Session settings of the COPY path: the text PostgreSQL writes must be the text Arrow parses exactly.
COPY_SETTINGS = {"DateStyle": "ISO, YMD", "TimeZone": "UTC", "extra_float_digits": "3", "bytea_output": "hex"}


def arrow_type(column_type: sa.types.TypeEngine) -> pa.DataType:
    """The Arrow type a landing stores a SQL column as (exact where the database is exact)."""
    if isinstance(column_type, sa.types.Boolean):
        return pa.bool_()
    if isinstance(column_type, sa.types.Integer):
        return pa.int64()
    if isinstance(column_type, sa.types.Numeric) and not isinstance(column_type, sa.types.Float):
        precision, scale = column_type.precision, column_type.scale
        if precision and scale is not None and precision <= 38:
            return pa.decimal128(precision, scale)
        return pa.string()  # unknown precision: keep the exact text rather than a lossy float
    if isinstance(column_type, sa.types.Float):
        return pa.float64()
    if isinstance(column_type, sa.types.DateTime):
        return pa.timestamp("us")
    if isinstance(column_type, sa.types.Date):
        return pa.date32()
    return pa.string()


class SqlConnector:
    """Reads one table of a relational database, incrementally by its replication key."""

    def __init__(
        self,
        source_id: str,
        url: sa.URL | str,
        table: str,
        primary_key: tuple[str, ...],
        replication_key: str | None = None,
        use_copy: bool = True,
    ) -> None:
        self.source_id = source_id
        self.table_name = table
        self.primary_key = primary_key
        self.replication_key = replication_key
        self._engine = sa.create_engine(url)
        self._table: sa.Table | None = None
        self.use_copy = use_copy  # False forces the portable cursor path (tests compare the two)
        self.watermark = Watermark()

    def __repr__(self) -> str:
        return f"SqlConnector({self.source_id!r}, {self.table_name!r})"  # never the URL: it may hold a password

    def table(self) -> sa.Table:
        """The reflected source table (reflected once)."""
        if self._table is None:
            try:
                self._table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self._engine)
            except sa.exc.NoSuchTableError as error:
                raise SourceError(f"数据源 {self.source_id}: 表 {self.table_name} 不存在 table not found") from error
            except sa.exc.SQLAlchemyError as error:
                raise SourceError(f"数据源 {self.source_id} 无法连接 cannot connect: {_cause(error)}") from error
            finally:
                self._engine.dispose()  # a task process should not keep idle connections to a department's database
        return self._table

    def arrow_schema(self) -> pa.Schema:
        """The landing schema, fixed from the table definition so every batch agrees."""
        return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in self.table().columns])

    def read_batches(self, since: Any | None = None, batch_rows: int = 50_000, until: Any | None = None) -> Iterator[pa.RecordBatch]:
        """Stream rows with since < replication key <= until (each bound optional); afterwards self.watermark holds the range read."""
        table, schema = self.table(), self.arrow_schema()
        query = sa.select(table)
        key = table.c[self.replication_key] if self.replication_key else None
        try:
            if key is not None and since is not None:
                query = query.where(key > _as_key_value(since, key.type))
            if key is not None and until is not None:
                query = query.where(key <= _as_key_value(until, key.type))
        except ValueError as error:
            raise SourceError(f"数据源 {self.source_id}: {error}") from error
        high = since
        key_index = schema.get_field_index(self.replication_key) if key is not None else -1
        reader = self._copy_batches if self._copy_available() else self._cursor_batches
        try:
            for batch in rebatch(reader(query, schema, batch_rows), batch_rows):
                if key_index >= 0:
                    batch_high = pc.max(batch.column(key_index)).as_py()
                    if batch_high is not None and (high is None or _key_text(batch_high) > _key_text(high)):
                        high = batch_high
                yield batch
                fault_point("extract.sql_batch")  # a crash mid-stream: nothing may be published
        except (sa.exc.SQLAlchemyError, self._engine.dialect.loaded_dbapi.Error) as error:  # the COPY path meets driver errors raw
            raise SourceError(f"数据源 {self.source_id} 读取失败 read failed: {_cause(error)}") from error
        except pa.ArrowInvalid as error:
            raise SourceError(f"数据源 {self.source_id} 值无法转换 cannot convert a value: {str(error).splitlines()[0][:200]}") from error
        finally:
            self._engine.dispose()
        self.watermark = Watermark(
            low=None if since is None else _key_text(since), high=None if high is None else _key_text(high)
        )

    def _copy_available(self) -> bool:
        """True when the source is PostgreSQL read through psycopg 3 (the COPY path)."""
        return self.use_copy and self._engine.dialect.name == "postgresql" and self._engine.dialect.driver == "psycopg"

    def _cursor_batches(self, query: sa.Select, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Any database: a server-side cursor fetched in partitions, built column by column."""
        # Text columns of a text SQL type come back as str: Arrow can take them as they are (no per-value Python).
        plain = [isinstance(c.type, sa.types.String) or not pa.types.is_string(f.type) for c, f in zip(query.selected_columns, schema)]
        with self._engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
            for rows in result.partitions(batch_rows):
                columns = list(zip(*rows))
                yield pa.RecordBatch.from_arrays(
                    [_arrow_column(col, f.type, direct) for col, f, direct in zip(columns, schema, plain)], schema=schema
                )

    def _copy_batches(self, query: sa.Select, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """PostgreSQL: COPY (query) TO STDOUT as CSV, parsed by pyarrow block by block."""
        columns = [
            sa.func.timezone("UTC", c).label(c.name) if isinstance(c.type, sa.types.DateTime) and c.type.timezone else c
            for c in query.selected_columns
        ]
        compiled = query.with_only_columns(*columns).compile(dialect=self._engine.dialect)
        statement = f"COPY ({compiled}) TO STDOUT (FORMAT csv)"
        with self._engine.connect() as connection, connection.begin():
            for name, value in COPY_SETTINGS.items():  # SET LOCAL: gone with the transaction
                connection.exec_driver_sql(f"SET LOCAL {name} = '{value}'")
            driver = connection.connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(statement, compiled.params) as copy:
                stream = _CopyStream(copy)
                if not stream.has_data():  # no rows: pyarrow refuses an empty CSV, and there is nothing to parse
                    return
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(column_names=schema.names, block_size=COPY_BLOCK),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(
                        column_types={f.name: f.type for f in schema}, null_values=[""], strings_can_be_null=True,
                        quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"],
                    ),
                )
                for batch in reader:
                    yield batch


class _CopyStream(io.RawIOBase):
    """The data of a COPY TO STDOUT as a readable byte stream (PostgreSQL sends one message per row)."""

    def __init__(self, copy: Any) -> None:
        self._copy = copy
        self._pending = bytearray()
        self._done = False

    def readable(self) -> bool:
        """A read-only stream."""
        return True

    def has_data(self) -> bool:
        """True when the COPY sends at least one row (reads it ahead)."""
        if not self._pending and not self._done:
            data = self._copy.read()
            if data:
                self._pending += data
            else:
                self._done = True
        return bool(self._pending)

    def readinto(self, target: Any) -> int:
        """Fill target with the next bytes of the COPY data (0 at the end)."""
        while len(self._pending) < len(target) and not self._done:
            data = self._copy.read()
            if data:
                self._pending += data
            else:
                self._done = True
        size = min(len(target), len(self._pending))
        target[:size] = self._pending[:size]
        del self._pending[:size]
        return size


def _arrow_column(values: tuple, arrow: pa.DataType, direct: bool) -> pa.Array:
    """One column of fetched values as an Arrow array: directly when the driver's types fit, else cleaned first."""
    if direct:
        try:
            return pa.array(values, type=arrow)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass  # e.g. a driver that returns str for a DECIMAL or DATE column
    return pa.array(_clean(values, arrow), type=arrow)


def _clean(values: tuple, arrow: pa.DataType) -> list:
    """Values Arrow accepts for the landing type (drivers return str for some DECIMAL/DATE columns)."""
    if pa.types.is_string(arrow):
        return [v if v is None or isinstance(v, str) else _text(v) for v in values]
    if pa.types.is_decimal(arrow):
        return [v if v is None or isinstance(v, decimal.Decimal) else decimal.Decimal(str(v)) for v in values]
    return list(values)


def _text(value: Any) -> str:
    """A non-text value of a text landing column as the database would write it (JSON as JSON, not Python's repr)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")  # 0.00000001, not 1E-8
    return str(value)


def _key_text(value: Any) -> str:
    """A replication-key value as sortable text (ISO for dates, zero-padded for numbers)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, int):
        return f"{value:020d}"
    return str(value)


def _as_key_value(text: Any, key_type: sa.types.TypeEngine) -> Any:
    """Turn a stored watermark (or a backfill bound) back into a value comparable with the key column."""
    if not isinstance(text, str):
        return text
    try:
        if isinstance(key_type, sa.types.DateTime):
            return datetime.fromisoformat(text)
        if isinstance(key_type, sa.types.Date):
            return date.fromisoformat(text[:10])
        if isinstance(key_type, sa.types.Integer):
            return int(text)
    except ValueError as error:
        raise ValueError(f"增量键取值 {text!r} 与列类型 {key_type} 不符 is not a valid value of the replication key") from error
    return text


def _cause(error: BaseException) -> str:
    """The driver's message without the URL or parameters (which could hold credentials or personal data)."""
    original = getattr(error, "orig", None) or error
    return f"{type(original).__name__}: {str(original).splitlines()[0][:200]}"
