"""File drops: departments put CSV, Excel or JSON files in a folder; the content of each file is landed exactly once.

- A source is a folder (an Airflow `fs` connection whose extra `path` holds it) plus a glob from the registry.
- Every value lands as text (the normalisers in schemas/ do the typing) with lineage columns `_file` (path
  relative to the folder) and `_row` (1-based position of the record in the file: data row after the header
  for CSV and Excel, line for JSON Lines, element for a JSON array). A row that cannot be parsed is kept with
  `_error` (why) and `_raw` (its text); it is never dropped.
- Every file is fingerprinted by SHA-256. Content already loaded or rejected is skipped; the fingerprints are
  recorded (connectors.state) only after the landing is published — collect() calls commit().
- Each file is parsed completely into a private spool (Parquet parts) before any of it is landed, so a file
  succeeds or fails as a whole. A file that fails (undecodable, invalid JSON, corrupt workbook, missing
  required header) is *copied* to <data_root>/rejected/<source_id>/ with a `.reason.txt` beside it, and the
  other files proceed. Copied, not moved: the drop folder belongs to the department (the hub may only read
  it); the recorded fingerprint stops the same content being tried again, a corrected file is new content.
- Memory stays flat: CSV through pyarrow's streaming reader, JSON Lines line by line, JSON arrays with an
  incremental parser, Excel in row chunks (calamine holds the sheet's cells natively, not as Python objects).
- Encoding: a BOM decides; otherwise strict UTF-8, then GB18030 (a superset of GBK), each over the whole file.
  Anything else is rejected with charset-normalizer's guess in the reason; a source can list more encodings.
- Snapshot mode (registry `mode: snapshot`): every file is the department's complete list, so only the newest
  new file (last in name order; date-stamp the names) that can be read lands, and older new files are recorded
  as superseded; connectors.snapshot then lands only its differences from the previous list. With
  `snapshot_files: all`, the new files of a run together form the list (a list split by region, say).
- Files must be dropped atomically (written under a temporary name, then renamed): names starting with
  '.' or '~$' and ending in .tmp/.part are ignored. A file that is written in place anyway is caught when its
  size or modification time changes while it is read, or (registry `settle_seconds`) when it changed less than
  that long ago: it is left for the next run (details.still_writing), neither landed nor recorded.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import time as epoch_seconds
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from connectors.base import SourceError, Watermark
from connectors.landing import Landing, file_sha256
from connectors.state import FileState

log = logging.getLogger(__name__)

LINEAGE = pa.schema(
    [pa.field("_file", pa.string()), pa.field("_row", pa.int64()), pa.field("_error", pa.string()), pa.field("_raw", pa.string())]
)
FORMATS = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xlsx",
           ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_ENCODINGS = ("utf-8", "gb18030")
SPOOL_ROWS = 50_000
SPOOL_ROW_GROUP = 16_384  # reading the spool decodes one row group at a time
READ_CHUNK = 1 << 20
CSV_BLOCK = 1 << 20  # pyarrow parses block by block: this bounds memory per CSV batch


class FileRejected(Exception):
    """A whole file cannot be landed; the message is the reason written beside its rejected copy."""


@dataclass(frozen=True)
class FileOptions:
    """How to read a source's files (registry keys: format, encodings, delimiter, sheet, required_columns)."""

    file_format: str | None = None  # csv | xlsx | json | jsonl; None = by file extension
    encodings: tuple[str, ...] = DEFAULT_ENCODINGS
    delimiter: str = ","
    sheet: str | int | None = None
    required_columns: tuple[str, ...] = ()
    # Snapshot mode: every file is the department's complete list, so of the new files only the newest (last in
    # name order) that can be read is landed; older new files are superseded (recorded, never read).
    latest_only: bool = False
    settle_seconds: float = 0.0  # a file changed less than this long ago may still be being written: wait


@dataclass
class _Spool:
    """One file parsed into Parquet parts, with what was learnt about it."""

    folder: Path
    name: str
    sha256: str
    file_format: str
    encoding: str | None = None
    parts: list[Path] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    bad_rows: int = 0
    json_types: dict[str, set[str]] = field(default_factory=dict)  # JSON files: value types seen per column
    sheets: list[dict[str, Any]] = field(default_factory=list)  # Excel: which sheets gave which _row range
    _filled: set[str] = field(default_factory=set)

    def write(self, table: pa.Table) -> None:
        """Add a part (its columns join the file's columns in first-seen order)."""
        if table.num_rows == 0:
            return
        table = table.append_column("_file", pa.array([self.name] * table.num_rows, pa.string()))
        part = self.folder / f"{len(self.parts):05d}.parquet"
        pq.write_table(table, part, compression="lz4", row_group_size=SPOOL_ROW_GROUP)
        self.parts.append(part)
        self.rows += table.num_rows
        self.bad_rows += table.num_rows - table.column("_error").null_count
        for name in table.column_names:
            if name not in LINEAGE.names and name not in self.columns:
                self.columns.append(name)
            if name.startswith("_col") and table.column(name).null_count < table.num_rows:
                self._filled.add(name)

    def source_columns(self) -> list[str]:
        """The file's columns, without unnamed columns that hold nothing (trailing empty Excel/CSV columns)."""
        return [c for c in self.columns if not c.startswith("_col") or c in self._filled]

    def summary(self) -> dict[str, Any]:
        """What the landing says about this file."""
        summary = {"file": self.name, "sha256": self.sha256, "format": self.file_format, "encoding": self.encoding,
                   "rows": self.rows, "bad_rows": self.bad_rows}
        return summary | ({"sheets": self.sheets} if self.sheets else {})


class FileConnector:
    """Reads the not-yet-loaded files of a drop folder that match a glob."""

    def __init__(
        self,
        source_id: str,
        folder: Path,
        pattern: str | tuple[str, ...],
        primary_key: tuple[str, ...],
        state: FileState,
        rejected_dir: Path,
        work_dir: Path,
        options: FileOptions = FileOptions(),
        replication_key: str | None = None,
    ) -> None:
        self.source_id = source_id
        self.folder = Path(folder)
        self.patterns = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        self.primary_key = primary_key
        self.replication_key = replication_key  # informative only: file drops are incremental by fingerprint
        self.state = state
        self.rejected_dir = rejected_dir
        self.work_dir = work_dir
        self.options = options
        self.watermark = Watermark()
        self.pending_fingerprints: dict[str, str] = {}  # sha256 -> file name, known once arrow_schema() ran
        self._spools: list[_Spool] | None = None
        self._spool_dir: Path | None = None
        self._rejected: list[dict[str, str]] = []
        self._duplicates: list[dict[str, str]] = []
        self._superseded: list[dict[str, str]] = []
        self._still_writing: list[dict[str, str]] = []
        self._already_known = 0

    def arrow_schema(self) -> pa.Schema:
        """Every column of the pending files (as text, in first-seen order) plus the lineage columns."""
        columns: list[str] = []
        types: dict[str, set[str]] = {}
        for spool in self._prepare():
            columns += [c for c in spool.source_columns() if c not in columns]
            for column, seen in spool.json_types.items():
                types.setdefault(column, set()).update(seen)
        return pa.schema([text_field(c, types.get(c)) for c in columns] + list(LINEAGE))

    def read_batches(self, since: Any | None = None, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Yield the pending files' rows (since is ignored: what is new is decided by fingerprint)."""
        schema = self.arrow_schema()
        try:
            for spool in self._spools or []:
                for part in spool.parts:
                    for batch in pq.ParquetFile(part).iter_batches(batch_size=batch_rows):
                        yield _conform(batch, schema)
        finally:
            self.close()
        self.watermark = Watermark()

    def snapshot_sent(self) -> bool:
        """In snapshot mode: True when at least one new file was read (the new files are the complete list)."""
        return bool(self._prepare())

    def details(self) -> dict[str, Any]:
        """Files landed (with encoding and counts), files rejected, duplicates and already-known files skipped."""
        return {
            "files": [spool.summary() for spool in self._spools or []],
            "rejected": list(self._rejected),
            "duplicates": list(self._duplicates),
            "already_known": self._already_known,  # loaded or rejected by an earlier run
            **({"superseded": list(self._superseded)} if self.options.latest_only else {}),
            **({"still_writing": list(self._still_writing)} if self._still_writing else {}),
        }

    def commit(self, landing: Landing) -> None:
        """Record the landed and rejected fingerprints (call only after the landing is published)."""
        entries = {
            f["sha256"]: {"status": "loaded", "file": f["file"], "run_id": landing.run_id, "at": landing.extracted_at}
            for f in landing.details.get("files", [])
        }
        for status, files in (("rejected", landing.details.get("rejected", [])), ("superseded", landing.details.get("superseded", []))):
            for entry in files:
                entries.setdefault(
                    entry["sha256"], {"status": status, "file": entry["file"], "run_id": landing.run_id, "at": landing.extracted_at}
                )
        self.state.record(entries)

    def close(self) -> None:
        """Remove the spool (idempotent)."""
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None

    def _prepare(self) -> list[_Spool]:
        """Fingerprint the matching files and spool every new one (once per connector)."""
        if self._spools is not None:
            return self._spools
        if not self.folder.is_dir():
            raise SourceError(f"数据源 {self.source_id}: 投放目录不存在 drop folder not found: {self.folder}")
        known = self.state.known()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._spool_dir = Path(tempfile.mkdtemp(prefix=f"{self.source_id}-", dir=self.work_dir))
        seen: dict[str, str] = {}
        spools: list[_Spool] = []
        candidates = self._candidates()
        for path in reversed(candidates) if self.options.latest_only else candidates:
            name = path.relative_to(self.folder).as_posix()
            before = path.stat()
            if epoch_seconds() - before.st_mtime < self.options.settle_seconds:
                self._wait_for(name, f"{self.options.settle_seconds:g} 秒内仍有改动 changed within settle_seconds")
                continue
            sha = file_sha256(path)
            if sha in known:
                self._already_known += 1
                continue
            if self.options.latest_only and spools:  # an older complete list than the one being landed
                self._superseded.append({"file": name, "sha256": sha, "by": spools[0].name})
                continue
            if sha in seen:  # the same content under another name: landing it twice would double the rows
                self._duplicates.append({"file": name, "sha256": sha, "same_as": seen[sha]})
                continue
            seen[sha] = name
            spool = _Spool(self._spool_dir / f"{len(seen):05d}", name, sha, self._format(path))
            spool.folder.mkdir()
            try:
                self._parse(path, spool)
            except FileRejected as error:
                shutil.rmtree(spool.folder, ignore_errors=True)
                self._reject(path, name, sha, str(error))
                continue
            except Exception as error:
                # Not a verdict on the file (it would be skipped forever): fail the run, so a fix re-reads it.
                self.close()
                raise SourceError(
                    f"数据源 {self.source_id}: 读取 {name} 时意外出错 unexpected error reading {name}: {type(error).__name__}: {error}"
                ) from error
            if _changed(before, path):  # written while read: the spool may hold half a file
                shutil.rmtree(spool.folder, ignore_errors=True)
                del seen[sha]
                self._wait_for(name, "读取期间文件仍在变化 the file changed while it was read")
                continue
            spools.append(spool)
            self.pending_fingerprints[sha] = name
        self._spools = spools
        return spools

    def _wait_for(self, name: str, reason: str) -> None:
        """Leave a file that is still being written for the next run (not landed, not rejected, not recorded)."""
        log.warning("数据源 %s: %s 仍在写入，下次再采 still being written, left for the next run: %s", self.source_id, name, reason)
        self._still_writing.append({"file": name, "reason": reason})

    def _candidates(self) -> list[Path]:
        """Files matching the glob, in name order, without hidden, temporary or partial uploads."""
        def ignored(path: Path) -> bool:
            return path.name.startswith((".", "~$")) or path.name.endswith((".tmp", ".part", ".reason.txt"))

        try:
            found = {p for pattern in self.patterns for p in self.folder.glob(pattern) if p.is_file() and not ignored(p)}
        except (OSError, ValueError) as error:
            raise SourceError(f"数据源 {self.source_id}: 无法列出投放文件 cannot list {self.patterns}: {error}") from error
        return sorted(found)

    def _format(self, path: Path) -> str:
        """The file's format: the registry's, else from its extension."""
        return self.options.file_format or FORMATS.get(path.suffix.lower(), "unknown")

    def _parse(self, path: Path, spool: _Spool) -> None:
        """Parse one file into its spool; raises FileRejected if the file as a whole is unusable."""
        readers = {"csv": self._parse_csv, "xlsx": self._parse_xlsx, "json": self._parse_json, "jsonl": self._parse_jsonl}
        if spool.file_format not in readers:
            raise FileRejected(f"不支持的文件格式 unsupported file format: {path.suffix or spool.file_format} (csv, xlsx, json, jsonl)")
        try:
            readers[spool.file_format](path, spool)
        except OSError as error:
            raise FileRejected(f"文件无法读取 cannot read file: {error.strerror or error}") from error
        missing = [c for c in self.options.required_columns if c not in spool.columns]
        if missing:
            raise FileRejected(f"缺少必需的表头 missing required columns: {', '.join(missing)}")

    def _parse_csv(self, path: Path, spool: _Spool) -> None:
        """CSV through pyarrow's streaming reader; rows with the wrong number of fields are kept with _error."""
        spool.encoding = detect_encoding(path, self.options.encodings)
        with open(path, encoding=spool.encoding, newline="") as handle:
            header = next(csv.reader(handle, delimiter=self.options.delimiter), None)
        if not header:
            raise FileRejected("空文件，没有表头 empty file: no header row")
        names = column_names(header)
        self._check_required(names)
        spool.columns = list(names)
        invalid: dict[int, str] = {}

        def keep_invalid(row: pacsv.InvalidRow) -> str:
            # number counts CSV records with the header as 1, so the record's own number is one less.
            invalid[(row.number or 0) - 1] = f"{row.text}\x00{row.actual_columns}"
            return "skip"

        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    encoding="utf8" if spool.encoding == "utf-8" else spool.encoding,
                    column_names=names, skip_rows=1, block_size=CSV_BLOCK, use_threads=False,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.options.delimiter, newlines_in_values=True, invalid_row_handler=keep_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=[""]
                ),
            )
            next_row, written_invalid = 1, set()
            for batch in reader:
                numbers, next_row = _valid_row_numbers(batch.num_rows, next_row, invalid)
                table = pa.Table.from_batches([batch]).append_column("_row", pa.array(numbers, pa.int64()))
                spool.write(_with_errors(table))
                spool.write(_invalid_csv_rows(invalid, written_invalid, len(names)))
            spool.write(_invalid_csv_rows(invalid, written_invalid, len(names)))
        except (pa.ArrowInvalid, UnicodeDecodeError) as error:
            if "straddl" in str(error):  # pyarrow's words for a record longer than one parse block
                raise FileRejected(f"CSV 无法解析：有一条记录超过 {CSV_BLOCK >> 20} MiB（超长单元格或引号未闭合）"
                                   f"cannot parse CSV: a record is longer than {CSV_BLOCK >> 20} MiB "
                                   "(an oversized cell or an unclosed quote)") from error
            raise FileRejected(f"CSV 无法解析 cannot parse CSV: {str(error).splitlines()[0][:300]}") from error

    def _parse_xlsx(self, path: Path, spool: _Spool) -> None:
        """The configured sheet, else every sheet with the first one's header (long tables go on over sheets)."""
        from python_calamine import CalamineError, CalamineWorkbook

        try:
            workbook = CalamineWorkbook.from_path(str(path))
            option = self.options.sheet
            sheets = (workbook.sheet_names if option is None
                      else [option] if isinstance(option, str) else [workbook.sheet_names[option]])
            names: list[str] | None = None
            next_row = 1
            for sheet_name in sheets:
                rows = workbook.get_sheet_by_name(sheet_name).iter_rows()
                header = next(rows, None)
                try:
                    sheet_columns = column_names([_cell_text(v) or "" for v in header]) if header else None
                except FileRejected:
                    if names is None:
                        raise
                    sheet_columns = None
                if names is None and sheet_columns is not None:
                    names = sheet_columns
                    self._check_required(names)
                    spool.columns = list(names)
                if sheet_columns is None or sheet_columns != names:
                    spool.sheets.append({"sheet": sheet_name, "ignored": "表头不同或为空 header differs or is empty"})
                    continue
                first = next_row
                next_row = _spool_sheet_rows(rows, names, spool, next_row)
                spool.sheets.append({"sheet": sheet_name, "first_row": first, "last_row": next_row - 1})
            if names is None:
                raise FileRejected("没有带表头的工作表 no sheet with a header row")
        except (CalamineError, ValueError, IndexError, KeyError) as error:
            raise FileRejected(f"Excel 文件无法读取（可能已损坏）cannot read workbook: {type(error).__name__}: {error}") from error

    def _parse_jsonl(self, path: Path, spool: _Spool) -> None:
        """One JSON object per line; a line that is not one is kept with _error and _raw."""
        spool.encoding = detect_encoding(path, self.options.encodings)
        chunk = _RecordChunk(spool)
        with open(path, encoding=spool.encoding, newline="") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError) as error:
                    chunk.bad(number, f"JSON 解析失败 invalid JSON: {error}", line.rstrip("\r\n"))
                    continue
                chunk.add(number, record, line.rstrip("\r\n"))
        chunk.flush()

    def _parse_json(self, path: Path, spool: _Spool) -> None:
        """A top-level JSON array of objects, parsed incrementally; invalid JSON rejects the whole file."""
        spool.encoding = detect_encoding(path, self.options.encodings)
        chunk = _RecordChunk(spool)
        with open(path, encoding=spool.encoding, newline="") as handle:
            try:
                for number, record in enumerate(iter_json_array(handle), start=1):
                    chunk.add(number, record, None)
            except ValueError as error:
                raise FileRejected(f"不是有效的 JSON 数组 not a valid JSON array: {error}") from error
        chunk.flush()

    def _check_required(self, names: list[str]) -> None:
        """Reject early when the header lacks a required column (saves parsing the whole file)."""
        missing = [c for c in self.options.required_columns if c not in names]
        if missing:
            raise FileRejected(f"缺少必需的表头 missing required columns: {', '.join(missing)}")

    def _reject(self, path: Path, name: str, sha: str, reason: str) -> None:
        """Copy a file that cannot be landed to the rejected area, with the reason beside it."""
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        copy = self.rejected_dir / f"{sha[:12]}_{path.name}"
        shutil.copy2(path, copy)
        copy.with_name(copy.name + ".reason.txt").write_text(
            f"数据源 source: {self.source_id}\n文件 file: {name}\nSHA-256: {sha}\n原因 reason: {reason}\n"
            "处理 what now: 原文件仍在投放目录；请更正后重新投放（内容变化即会重新采集）。\n"
            "The original stays in the drop folder; drop a corrected file (new content is collected again).\n",
            encoding="utf-8",
        )
        self._rejected.append({"file": name, "sha256": sha, "reason": reason, "copy": str(copy)})
        log.warning("数据源 %s: 文件已拒收 file rejected: %s — %s", self.source_id, name, reason)


class _RecordChunk:
    """JSON records gathered into spool parts of SPOOL_ROWS rows."""

    def __init__(self, spool: _Spool) -> None:
        self.spool = spool
        self.records: list[dict[str, Any]] = []
        self.numbers: list[int] = []
        self.errors: list[str | None] = []
        self.raws: list[str | None] = []

    def add(self, number: int, record: Any, raw: str | None) -> None:
        """Add one parsed element; anything but an object is kept as a bad row."""
        if not isinstance(record, dict):
            self.bad(number, f"不是 JSON 对象 not a JSON object: {type(record).__name__}", raw or json.dumps(record, ensure_ascii=False))
            return
        clash = [k for k in record if k in LINEAGE.names]
        if clash:
            raise FileRejected(f"字段名与溯源列冲突 keys clash with lineage columns: {clash}")
        self._append(number, record, None, None)

    def bad(self, number: int, error: str, raw: str) -> None:
        """Keep a row that could not be parsed."""
        self._append(number, {}, error, raw)

    def _append(self, number: int, record: dict[str, Any], error: str | None, raw: str | None) -> None:
        self.records.append(record)
        self.numbers.append(number)
        self.errors.append(error)
        self.raws.append(raw)
        if len(self.records) >= SPOOL_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the gathered records as one part."""
        if not self.records:
            return
        keys: dict[str, None] = {}
        for record in self.records:
            keys.update(dict.fromkeys(record))
            for key, value in record.items():
                kind = json_type(value)
                if kind is not None:
                    self.spool.json_types.setdefault(key, set()).add(kind)
        columns = {k: pa.array([json_text(r.get(k)) for r in self.records], pa.string()) for k in keys}
        columns |= {"_row": pa.array(self.numbers, pa.int64()), "_error": pa.array(self.errors, pa.string()),
                    "_raw": pa.array(self.raws, pa.string())}
        self.spool.write(pa.table(columns))
        self.records, self.numbers, self.errors, self.raws = [], [], [], []


def _changed(before: Any, path: Path) -> bool:
    """True when a file's size or modification time differs from `before` (or it is gone)."""
    try:
        after = path.stat()
    except OSError:
        return True
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


def file_connector(spec, connection: dict[str, Any], data_root: Path) -> FileConnector:
    """The connector of a registered file source (options: glob or globs, format, encodings, delimiter, sheet, required_columns)."""
    extra = connection.get("extra") or {}
    folder = extra.get("path") or connection.get("host")
    if not folder:
        raise SourceError(f"数据源 {spec.id}: 连接 {spec.connection} 未给出目录 fs connection has no extra.path")
    options = spec.options
    pattern = options.get("glob")
    if not pattern or not isinstance(pattern, (str, list)):
        raise SourceError(f"数据源 {spec.id}: 登记项缺少 glob registry entry needs a glob or a list of globs (e.g. '*.csv')")
    encodings = options.get("encodings") or ([options["encoding"]] if options.get("encoding") else DEFAULT_ENCODINGS)
    required = options.get("required_columns")
    snapshot_files = options.get("snapshot_files", "latest")
    if snapshot_files not in ("latest", "all"):
        raise SourceError(f"数据源 {spec.id}: snapshot_files 只能是 latest 或 all must be latest or all, not {snapshot_files!r}")
    file_options = FileOptions(
        file_format=options.get("format"),
        encodings=tuple(encodings),
        delimiter=str(options.get("delimiter", ",")),
        sheet=options.get("sheet"),
        required_columns=tuple(spec.primary_key if required is None else required),
        latest_only=spec.mode == "snapshot" and snapshot_files == "latest",
        settle_seconds=float(options.get("settle_seconds", 0)),
    )
    return FileConnector(
        spec.id,
        Path(folder),
        pattern if isinstance(pattern, str) else tuple(pattern),
        spec.primary_key,
        state=FileState(data_root / "state" / f"{spec.id}.files.json", spec.id),
        rejected_dir=data_root / "rejected" / spec.id,
        work_dir=data_root / "tmp",
        options=file_options,
        replication_key=spec.replication_key,
    )


def detect_encoding(path: Path, candidates: tuple[str, ...] = DEFAULT_ENCODINGS) -> str:
    """The encoding a text file decodes with: its BOM, else the first candidate that decodes the whole file strictly."""
    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    # UTF-32's little-endian BOM begins with UTF-16's, so it is looked for first.
    boms = (((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "utf-32"), ((codecs.BOM_UTF8,), "utf-8-sig"),
            ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf-16"))
    for marks, encoding in boms:
        if head.startswith(marks):
            problem = _decode_problem(path, encoding)  # a BOM in front of other bytes (e.g. GBK) is not that encoding
            if problem is not None:
                raise FileRejected(f"文件带 {encoding} 的 BOM，但内容不是 {encoding} the file has a {encoding} BOM but does not "
                                   f"decode as {encoding} ({problem}){_charset_hint(head)}")
            return encoding
    if b"\x00" in head:  # valid UTF-8 but not text: binary, or UTF-16 without a BOM
        raise FileRejected(f"含 NUL 字节，不是文本文件 contains NUL bytes, not a text file{_charset_hint(head)}")
    failures = []
    for encoding in candidates:
        problem = _decode_problem(path, encoding)
        if problem is None:
            return encoding
        failures.append(f"{encoding}: {problem}")
    raise FileRejected(f"无法识别的文件编码 cannot decode file ({'; '.join(failures)}){_charset_hint(head)}")


def _decode_problem(path: Path, encoding: str) -> str | None:
    """Where strict decoding of the whole file fails (None if it does not), reading 1 MiB at a time."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        return "未知编码 unknown encoding"
    offset = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(READ_CHUNK)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                return f"第 {offset + max(error.start, 0)} 字节附近 near byte {offset + max(error.start, 0)}: {error.reason}"
            if not block:
                return None
            offset += len(block)


def _charset_hint(sample: bytes) -> str:
    """charset-normalizer's guess, to put in a rejection reason (never used to decode: a guess is not reliable)."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(sample[: 256 * 1024]).best()
    except Exception:  # a hint is optional; never let it hide the real reason
        return ""
    if best is None:
        return ""
    return f"；charset-normalizer 推测为 likely {best.encoding}（确认后可在登记簿 encodings 中加入 add it to the entry's encodings）"


def column_names(header: list[str]) -> list[str]:
    """Header cells as column names: trimmed, BOM removed, blanks named _col<N>; duplicates reject the file."""
    names = []
    for index, raw in enumerate(header, start=1):
        name = (raw or "").replace("\ufeff", "").strip()
        names.append(name or f"_col{index}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FileRejected(f"表头重复 duplicate header names: {', '.join(duplicates)}")
    clash = [n for n in names if n in LINEAGE.names]
    if clash:
        raise FileRejected(f"表头与溯源列冲突 header clashes with lineage columns: {', '.join(clash)}")
    return names


def iter_json_array(handle: TextIO, chunk_chars: int = READ_CHUNK) -> Iterator[Any]:
    """Elements of a top-level JSON array, parsed incrementally (memory bounded by the largest element)."""
    cursor = _Cursor(handle, chunk_chars)
    if cursor.peek() != "[":
        raise ValueError("顶层不是数组 top level is not an array")
    cursor.position += 1
    if cursor.peek() == "]":
        cursor.position += 1
    else:
        while True:
            yield cursor.value()
            char = cursor.peek()
            cursor.position += 1
            if char == "]":
                break
            if char != ",":
                raise ValueError(f"第 {cursor.offset()} 个字符处应为 , 或 ] expected ',' or ']' at character {cursor.offset()}")
    if cursor.peek() != "":
        raise ValueError(f"数组之后还有内容 content after the array at character {cursor.offset()}")


class _Cursor:
    """A read position over a text stream, buffering only what the current JSON value needs."""

    def __init__(self, handle: TextIO, chunk_chars: int) -> None:
        self.handle, self.chunk_chars = handle, chunk_chars
        self.buffer, self.position, self.consumed, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def offset(self) -> int:
        """Characters from the start of the file to the cursor."""
        return self.consumed + self.position

    def more(self) -> bool:
        """Read another chunk (dropping what was consumed); False at the end of the file."""
        chunk = self.handle.read(self.chunk_chars)
        self.consumed += self.position
        self.buffer, self.position = self.buffer[self.position :] + chunk, 0
        self.eof = not chunk
        return bool(chunk)

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file)."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position] in " \t\r\n\ufeff":
                self.position += 1
            if self.position < len(self.buffer) or not self.more():
                return self.buffer[self.position : self.position + 1]

    def value(self) -> Any:
        """Decode the JSON value at the cursor, reading more until it is complete."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
                if end < len(self.buffer) or self.eof or not self.more():  # a number at the buffer's end may go on
                    self.position = end
                    return value
            except json.JSONDecodeError as error:
                if self.eof or not self.more():
                    raise ValueError(f"{error.msg}，第 {self.consumed + error.pos} 个字符 at character {self.consumed + error.pos}") from None
            except RecursionError:
                raise ValueError(f"嵌套过深 nested too deeply at character {self.offset()}") from None


def json_type(value: Any) -> str | None:
    """The JSON type of a value (None for null), kept so a column retyped at the source can be noticed."""
    if value is None:
        return None
    for python, name in ((bool, "boolean"), ((int, float), "number"), (str, "string"), (dict, "object"), (list, "array")):
        if isinstance(value, python):
            return name
    return type(value).__name__


def text_field(name: str, json_types: set[str] | None = None) -> pa.Field:
    """A text landing column; for JSON sources its metadata says which JSON type the values had (or 'mixed')."""
    if not json_types:
        return pa.field(name, pa.string())
    kind = next(iter(json_types)) if len(json_types) == 1 else "mixed"
    return pa.field(name, pa.string(), metadata={"source_type": kind})


def json_text(value: Any) -> str | None:
    """A JSON value as landing text: strings as they are, numbers and booleans as JSON, objects and arrays as JSON text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _cell_text(value: Any) -> str | None:
    """An Excel cell as landing text: dates as ISO, whole numbers without '.0', empty cells as null."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, datetime):
        # Excel keeps milliseconds as a binary fraction: round to the second it displays.
        return (value + timedelta(microseconds=500_000)).replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def _spool_sheet_rows(rows: Iterator[list[Any]], names: list[str], spool: _Spool, next_row: int) -> int:
    """Spool a sheet's data rows in chunks, numbering them from next_row; returns the number after the last."""
    chunk: list[list[str | None]] = []
    numbers: list[int] = []
    for number, cells in enumerate(rows, start=next_row):
        next_row = number + 1
        values = [_cell_text(v) for v in cells]
        if all(v is None for v in values):
            continue  # a blank row carries nothing; its number still counts so _row matches the sheet
        chunk.append(values[: len(names)] + [None] * (len(names) - len(values)))
        numbers.append(number)
        if len(chunk) >= SPOOL_ROWS:
            spool.write(_rows_table(names, chunk, numbers))
            chunk, numbers = [], []
    spool.write(_rows_table(names, chunk, numbers))
    return next_row


def _rows_table(names: list[str], rows: list[list[str | None]], numbers: list[int]) -> pa.Table:
    """Rows of text cells as a table with _row, _error and _raw."""
    columns = list(zip(*rows)) if rows else [() for _ in names]
    table = pa.table({n: pa.array(list(c), pa.string()) for n, c in zip(names, columns)})
    return _with_errors(table.append_column("_row", pa.array(numbers, pa.int64())))


def _with_errors(table: pa.Table) -> pa.Table:
    """Add empty _error and _raw columns (rows that parsed)."""
    empty = pa.nulls(table.num_rows, pa.string())
    return table.append_column("_error", empty).append_column("_raw", empty)


def _valid_row_numbers(count: int, next_row: int, invalid: dict[int, str]) -> tuple[np.ndarray, int]:
    """Record numbers of the next `count` parsed rows, skipping the numbers of rows set aside as invalid."""
    taken = np.fromiter((n for n in invalid if n >= next_row), dtype=np.int64)
    candidates = np.arange(next_row, next_row + count + len(taken), dtype=np.int64)
    numbers = candidates[~np.isin(candidates, taken)][:count]
    return numbers, int(numbers[-1]) + 1 if count else next_row


def _invalid_csv_rows(invalid: dict[int, str], written: set[int], expected: int) -> pa.Table:
    """Invalid CSV rows not yet written, as rows with _error and _raw (data columns left empty)."""
    numbers = sorted(set(invalid) - written)
    written.update(numbers)
    texts, errors = [], []
    for number in numbers:
        text, actual = invalid[number].rsplit("\x00", 1)
        texts.append(text)
        errors.append(f"字段数 {actual}，应为 {expected} wrong number of fields: {actual}, expected {expected}")
    return pa.table({"_row": pa.array(numbers, pa.int64()), "_error": pa.array(errors, pa.string()), "_raw": pa.array(texts, pa.string())})


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A spooled batch with exactly the landing's columns (missing ones empty)."""
    arrays = []
    for target in schema:
        index = batch.schema.get_field_index(target.name)
        arrays.append(pc.cast(batch.column(index), target.type) if index >= 0 else pa.nulls(batch.num_rows, target.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
