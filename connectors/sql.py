"""Relational sources through SQLAlchemy: streamed in Arrow record batches, never a whole table in memory."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from connectors.base import SourceError, Watermark


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
    ) -> None:
        self.source_id = source_id
        self.table_name = table
        self.primary_key = primary_key
        self.replication_key = replication_key
        self._engine = sa.create_engine(url)
        self._table: sa.Table | None = None
        self.watermark = Watermark()

    def table(self) -> sa.Table:
        """The reflected source table (reflected once)."""
        if self._table is None:
            try:
                self._table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self._engine)
            except sa.exc.NoSuchTableError as error:
                raise SourceError(f"数据源 {self.source_id}: 表 {self.table_name} 不存在 table not found") from error
            except sa.exc.SQLAlchemyError as error:
                raise SourceError(f"数据源 {self.source_id} 无法连接 cannot connect: {_cause(error)}") from error
        return self._table

    def arrow_schema(self) -> pa.Schema:
        """The landing schema, fixed from the table definition so every batch agrees."""
        return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in self.table().columns])

    def read_batches(self, since: Any | None = None, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Stream rows with replication key > since; afterwards self.watermark holds the range read."""
        table, schema = self.table(), self.arrow_schema()
        query = sa.select(table)
        key = table.c[self.replication_key] if self.replication_key else None
        if key is not None and since is not None:
            query = query.where(key > _as_key_value(since, key.type))
        high = since
        key_index = schema.get_field_index(self.replication_key) if key is not None else -1
        try:
            with self._engine.connect() as connection:
                result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
                for rows in result.partitions(batch_rows):
                    columns = list(zip(*rows))
                    batch = pa.RecordBatch.from_arrays(
                        [pa.array(_clean(col, f.type), type=f.type) for col, f in zip(columns, schema)], schema=schema
                    )
                    if key_index >= 0:
                        batch_high = max((v for v in columns[key_index] if v is not None), default=None)
                        if batch_high is not None and (high is None or _key_text(batch_high) > _key_text(high)):
                            high = batch_high
                    yield batch
        except sa.exc.SQLAlchemyError as error:
            raise SourceError(f"数据源 {self.source_id} 读取失败 read failed: {_cause(error)}") from error
        finally:
            self._engine.dispose()
        self.watermark = Watermark(
            low=None if since is None else _key_text(since), high=None if high is None else _key_text(high)
        )


def _clean(values: tuple, arrow: pa.DataType) -> list:
    """Values Arrow accepts for the landing type (drivers return str for some DECIMAL/DATE columns)."""
    if pa.types.is_string(arrow):
        return [v if v is None or isinstance(v, str) else str(v) for v in values]
    if pa.types.is_decimal(arrow):
        return [v if v is None or isinstance(v, decimal.Decimal) else decimal.Decimal(str(v)) for v in values]
    return list(values)


def _key_text(value: Any) -> str:
    """A replication-key value as sortable text (ISO for dates, zero-padded for numbers)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, int):
        return f"{value:020d}"
    return str(value)


def _as_key_value(text: Any, key_type: sa.types.TypeEngine) -> Any:
    """Turn a stored watermark back into a value comparable with the key column."""
    if not isinstance(text, str):
        return text
    if isinstance(key_type, sa.types.DateTime):
        return datetime.fromisoformat(text)
    if isinstance(key_type, sa.types.Date):
        return date.fromisoformat(text)
    if isinstance(key_type, sa.types.Integer):
        return int(text)
    return text


def _cause(error: BaseException) -> str:
    """The driver's message without the URL or parameters (which could hold credentials or personal data)."""
    original = getattr(error, "orig", None) or error
    return f"{type(original).__name__}: {str(original).splitlines()[0][:200]}"
