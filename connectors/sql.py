"""Relational sources through SQLAlchemy: streamed in Arrow record batches, never a whole table in memory.

Two ways to read, one result:
- any database: a server-side cursor (stream_results) fetched in partitions and built into Arrow columns;
- PostgreSQL through psycopg: `COPY (SELECT …) TO STDOUT (FORMAT csv)` parsed by pyarrow's streaming CSV
  reader into the same landing types, with no Python work per row (several times faster, same memory).
  The session is pinned to ISO dates, UTC and exact float output for the COPY, so the text parses back
  to exactly the values the cursor path would give (timestamptz as UTC, like the cursor path).
Either way the batches are cut to `batch_rows` rows, and the replication key's high mark is taken per batch
with an Arrow max, so the watermark costs nothing per row.

Limits (SqlOptions; registry keys of the same names, connection extras override them): a source that accepts
the connection but never answers (a locked table, a runaway query) must not hold the task until Airflow's
execution_timeout. Every statement gets `query_timeout_seconds` on the server — PostgreSQL statement_timeout
(COPY included), MariaDB max_statement_time (MySQL: max_execution_time) with lock_wait_timeout for table locks —
and SQLite a progress-handler deadline that interrupts the statement, plus a busy timeout of the same length.
What it bounds differs by path: PostgreSQL's cursor path fetches in separate FETCH statements and SQLite's deadline
restarts with each partition fetched, so there it bounds the wait for each batch; the extract is one statement on
the COPY and MariaDB paths, so there it bounds the whole read (≈250,000 rows/s through COPY here: 300 s is far more
than a scheduled run reads; raise it per source for a huge first load).
A timeout or a connection lost mid-read raises SourceTimeout / TransientSourceError (retryable = True):
connectors.collect retries the extract (max_attempts, backoff_seconds), then fails clearly, landing nothing.
"""

from __future__ import annotations

import decimal
import io
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
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
SQLITE_PROGRESS_STEPS = 10_000  # SQLite VM steps between deadline checks (well under a millisecond of work)
MYSQL_TIMEOUT_CODES = {1969: "MariaDB max_statement_time", 3024: "MySQL max_execution_time", 1205: "lock_wait_timeout"}
MYSQL_LOST_CODES = {1317, 2006, 2013}  # query interrupted (KILL QUERY), server gone away, connection lost


@dataclass(frozen=True)
class SqlOptions:
    """Reading limits of one relational source (registry keys of the same names; connection extras override them)."""

    query_timeout_seconds: float = 300.0  # per statement (per fetched batch on the cursor paths of PostgreSQL and SQLite)
    connect_timeout_seconds: float = 30.0
    max_attempts: int = 2  # extract attempts per task try for a timeout or a dropped connection (connectors.collect)
    backoff_seconds: float = 10.0  # before the second attempt, doubling after


class TransientSourceError(SourceError):
    """A failure that another attempt may not meet (a dropped connection, a cancelled statement): retried."""

    retryable = True


class SourceTimeout(TransientSourceError):
    """A statement ran past the source's query timeout (a locked table, a runaway query): retried, then a clear failure."""


def sql_options(source_id: str, *layers: Mapping[str, Any]) -> SqlOptions:
    """SqlOptions from the registry entry's options, then the connection's extra (later layers win), checked."""
    names = {f.name: f.type for f in fields(SqlOptions)}
    given: dict[str, Any] = {}
    for layer in layers:
        given |= {k: v for k, v in layer.items() if k in names}
    try:
        options = SqlOptions(**{k: int(v) if names[k] in ("int", int) else float(v) for k, v in given.items()})
    except (TypeError, ValueError) as error:
        raise SourceError(f"数据源 {source_id}: 读取参数不是数字 reading limits must be numbers: {error}") from error
    if options.query_timeout_seconds <= 0 or options.connect_timeout_seconds <= 0 or options.max_attempts < 1 \
            or options.backoff_seconds < 0:
        raise SourceError(f"数据源 {source_id}: 读取参数超出范围 reading limits out of range: timeouts > 0, max_attempts ≥ 1, "
                          f"backoff_seconds ≥ 0 ({options})")
    return options


def sql_connector(spec: Any, url: sa.URL | str, extra: Mapping[str, Any]) -> "SqlConnector":
    """The connector of a registered sql source: limits from the registry entry, overridden by the connection's extra."""
    options = sql_options(spec.id, spec.options, extra)
    return SqlConnector(spec.id, url, spec.table or spec.id, spec.primary_key, spec.replication_key, options=options)


def source_engine(url: sa.URL | str, options: SqlOptions) -> sa.Engine:
    """An engine whose every connection carries the source's connect timeout and statement limit."""
    url = sa.make_url(url)
    backend, seconds = url.get_backend_name(), options.query_timeout_seconds
    if backend == "postgresql":
        # libpq options: the limit holds from the first statement (reflection included), with no SET to roll back.
        limit = f"-c statement_timeout={max(1, math.ceil(seconds * 1000))}"
        given = url.query.get("options")
        url = url.update_query_dict({"options": f"{given} {limit}" if given else limit})
        engine = sa.create_engine(url, connect_args={"connect_timeout": max(2, math.ceil(options.connect_timeout_seconds))})
    elif backend in ("mysql", "mariadb"):
        engine = sa.create_engine(url, connect_args={"connect_timeout": options.connect_timeout_seconds})
        sa.event.listen(engine, "connect", lambda dbapi, _record: _mysql_session_limits(dbapi, seconds))
    elif backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": seconds})  # busy timeout: a writer's lock waits as long
        sa.event.listen(engine, "connect", lambda dbapi, record: _sqlite_deadline(dbapi, record, seconds))
        sa.event.listen(engine, "before_cursor_execute", _start_sqlite_deadline)
    else:
        engine = sa.create_engine(url)
    return engine


def _mysql_session_limits(dbapi_connection: Any, seconds: float) -> None:
    """SET SESSION the statement limit and the table-lock wait (SHOW/SELECT waiting on another session's LOCK TABLES)."""
    lock_wait = max(1, math.ceil(seconds))
    server = str(dbapi_connection.get_server_info()) if hasattr(dbapi_connection, "get_server_info") else ""
    if "mariadb" in server.lower():
        statement = f"SET SESSION max_statement_time = {seconds:.3f}, lock_wait_timeout = {lock_wait}"
    else:  # MySQL has no max_statement_time; max_execution_time (ms) bounds SELECT, which is all a source read runs
        statement = f"SET SESSION max_execution_time = {max(1, math.ceil(seconds * 1000))}, lock_wait_timeout = {lock_wait}"
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


class _SqliteDeadline:
    """SQLite's progress handler: interrupts the running statement once it has run past its deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = math.inf

    def start(self) -> None:
        """A statement (or the next partition of its result) starts: its deadline is `seconds` from now."""
        self.until = time.monotonic() + self.seconds

    def __call__(self) -> int:
        """Non-zero aborts the statement with sqlite3.OperationalError('interrupted')."""
        return int(time.monotonic() > self.until)


def _sqlite_deadline(dbapi_connection: Any, record: Any, seconds: float) -> None:
    """Install the deadline on a new SQLite connection (kept in the pool record for before_cursor_execute)."""
    deadline = _SqliteDeadline(seconds)
    record.info["hub_deadline"] = deadline
    dbapi_connection.set_progress_handler(deadline, SQLITE_PROGRESS_STEPS)


def _start_sqlite_deadline(connection: sa.Connection, *_: Any) -> None:
    """before_cursor_execute: start the statement's deadline."""
    deadline = connection.info.get("hub_deadline")
    if deadline is not None:
        deadline.start()


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
        options: SqlOptions = SqlOptions(),
    ) -> None:
        self.source_id = source_id
        self.table_name = table
        self.primary_key = primary_key
        self.replication_key = replication_key
        self.options = options
        self._engine = source_engine(url, options)
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
                self._raise_if_timeout(error, "读取表结构 reading the table definition")
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
            self._raise_if_timeout(error, "读取数据 reading rows")
            failure = TransientSourceError if _transient(error, self._engine.dialect.loaded_dbapi) else SourceError
            raise failure(f"数据源 {self.source_id} 读取失败 read failed: {_cause(error)}") from error
        except pa.ArrowInvalid as error:
            raise SourceError(f"数据源 {self.source_id} 值无法转换 cannot convert a value: {str(error).splitlines()[0][:200]}") from error
        finally:
            self._engine.dispose()
        self.watermark = Watermark(
            low=None if since is None else _key_text(since), high=None if high is None else _key_text(high)
        )

    @property
    def extract_retry(self) -> tuple[int, float]:
        """(attempts, first backoff in seconds) connectors.collect gives an extract that fails with a retryable error."""
        return self.options.max_attempts, self.options.backoff_seconds

    def _raise_if_timeout(self, error: BaseException, doing: str) -> None:
        """Raise SourceTimeout when `error` is the source's statement limit (or lock wait) running out."""
        limit = _timeout_limit(error)
        if limit is None:
            return
        seconds = f"{self.options.query_timeout_seconds:g}"
        raise SourceTimeout(
            f"数据源 {self.source_id}: 查询超时 query timed out（{doing}）: 超过 {seconds} 秒未完成 not finished within {seconds} s "
            f"({limit}, query_timeout_seconds = {seconds})；源表可能被锁或查询过慢 the source table may be locked or the query slow；"
            f"可重试，将再次尝试 retryable, it will be retried: {_cause(error)}"
        ) from error

    def _copy_available(self) -> bool:
        """True when the source is PostgreSQL read through psycopg 3 (the COPY path)."""
        return self.use_copy and self._engine.dialect.name == "postgresql" and self._engine.dialect.driver == "psycopg"

    def _cursor_batches(self, query: sa.Select, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Any database: a server-side cursor fetched in partitions, built column by column."""
        # Text columns of a text SQL type come back as str: Arrow can take them as they are (no per-value Python).
        plain = [isinstance(c.type, sa.types.String) or not pa.types.is_string(f.type) for c, f in zip(query.selected_columns, schema)]
        with self._engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
            deadline = connection.info.get("hub_deadline")  # SQLite: the limit bounds each partition, not the whole read
            for rows in result.partitions(batch_rows):
                columns = list(zip(*rows))
                yield pa.RecordBatch.from_arrays(
                    [_arrow_column(col, f.type, direct) for col, f, direct in zip(columns, schema, plain)], schema=schema
                )
                if deadline is not None:
                    deadline.start()

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


def _timeout_limit(error: BaseException) -> str | None:
    """Which limit a driver error reports running out (None: not a timeout)."""
    original = getattr(error, "orig", None) or error
    text = str(original)
    if getattr(original, "sqlstate", None) == "57014" and "statement timeout" in text:
        return "PostgreSQL statement_timeout"
    code = original.args[0] if original.args and isinstance(original.args[0], int) else None
    if code in MYSQL_TIMEOUT_CODES:
        return MYSQL_TIMEOUT_CODES[code]
    if isinstance(original, sqlite3.OperationalError):
        if text == "interrupted":
            return "SQLite 进度处理器截止 progress-handler deadline"
        if "database is locked" in text:
            return "SQLite busy timeout"
    return None


def _transient(error: BaseException, dbapi: Any) -> bool:
    """True for a failure another attempt may not meet: a lost connection, a cancelled statement, a locked file."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, sqlite3.Error):
        return isinstance(original, sqlite3.OperationalError) and any(
            word in str(original) for word in ("locked", "interrupted", "disk I/O"))
    code = original.args[0] if original.args and isinstance(original.args[0], int) else None
    if code is not None and getattr(dbapi, "__name__", "") in ("pymysql", "MySQLdb"):
        return code in MYSQL_LOST_CODES
    # psycopg: connection failures, AdminShutdown (a terminated backend), QueryCanceled are OperationalError.
    operational = getattr(dbapi, "OperationalError", None)
    return operational is not None and isinstance(original, operational)


def _cause(error: BaseException) -> str:
    """The driver's message without the URL or parameters (which could hold credentials or personal data)."""
    original = getattr(error, "orig", None) or error
    return f"{type(original).__name__}: {str(original).splitlines()[0][:200]}"
