"""The one small interface every connector implements: declared facts plus a way to read record batches.

Modelled on the Singer SDK's stream: a connector says what it is (name, primary key, replication key)
and yields Arrow record batches; landing, watermarks and lineage are handled once, outside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class Watermark:
    """The replication-key range an extract covered: (low, high], as ISO strings (None = unbounded)."""

    low: str | None = None
    high: str | None = None


class Connector(Protocol):
    """A departmental source adapter."""

    source_id: str
    primary_key: tuple[str, ...]
    replication_key: str | None
    watermark: Watermark  # the range the last read_batches() covered, set when it is exhausted

    def arrow_schema(self) -> pa.Schema:
        """The landing schema, known before reading so every batch and every run agree."""
        ...

    def read_batches(self, since: Any | None = None, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Yield record batches of rows whose replication key is greater than `since` (all rows if None)."""
        ...


# Optional methods a connector may add; collect() calls them when present:
#   prepare(since)   before arrow_schema(), for a schema that depends on what will be read (HTTP: the first page)
#   details() -> dict  after reading, kept in the landing metadata (files and encodings, pages, rejections)
#   commit(landing)  after the landing is published and recorded (file drops mark their fingerprints)
#   close()          always, at the end (removes temporary spools)
#   read_batches(since, batch_rows, until=…)  connectors that can backfill also take an upper bound: since < key <= until
#   snapshot_sent() -> bool  in snapshot mode, False when the run brought no new snapshot (a file drop without new files)
#   write_extras(folder)  files to publish with the landing (a snapshot's keys and hashes: the next run's baseline)


class SourceError(Exception):
    """A source could not be read; the message names the source and the cause, never its credentials."""


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of exactly `rows` (the last one shorter): even Parquet row groups downstream."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).combine_chunks().to_batches()[0]
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
