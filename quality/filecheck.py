"""`hub quality check`: a library's row-level rules on a department's own file, loaded nowhere.

A steward checks a file before sending it (or after a ticket): CSV in any supported encoding, Excel, JSON or
JSON Lines, read by the same file reader the hub collects with. Headers may be the standard field names
(resident_id) or their Chinese labels (公民身份号码); values are normalised as the hub would normalise them
(full-width, blanks, traditional characters, dates written four ways). Rules that need other departments'
data (比对, 关联性) or the hub's history do not run here; the summary names them.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from quality.catalogue import Catalogue, Rule, load_catalogue
from quality.checks import CROSS_SOURCE_CHECKS
from quality.engine import QUARANTINE, evaluate
from quality.frame import RuleContext
from schemas.elements import Element, library_elements
from schemas.normalize import NORMALISERS, join_messages

FILE_SOURCE = "file"
LINEAGE = ("_file", "_row", "_error", "_raw")
NORMALISE_BY_TYPE = {"date": ("date",), "datetime": ("datetime",), "decimal": ("decimal",), "integer": ("halfwidth", "text"),
                     "boolean": ("halfwidth", "text"), "code": ("halfwidth", "text"), "string": ("halfwidth", "text", "simplified")}


class FileCheckError(ValueError):
    """A file that cannot be checked at all (missing, unreadable, no recognisable column)."""


@dataclass
class FileReport:
    """What checking one file found."""

    file: str
    rows: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # file header → standard field
    ignored: list[str] = field(default_factory=list)  # headers that are no field of the library
    findings: list[dict[str, Any]] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)
    rows_with_errors: int = 0
    bad_rows: int = 0  # rows the reader could not parse at all


def header_map(library: str, headers: list[str]) -> tuple[dict[str, str], list[str]]:
    """File header → standard field (by English name or Chinese label), and the headers that match nothing."""
    elements = library_elements(library)
    by_name = {e.name: e.name for e in elements}
    by_label: dict[str, str] = {}
    for element in elements:  # a label used in several groups (e.g. 列入日期) maps to its first element
        by_label.setdefault(element.label, element.name)
    mapping, ignored = {}, []
    for header in headers:
        key = header.strip()
        target = by_name.get(key) or by_name.get(key.lower()) or by_label.get(key)
        if target and target not in mapping.values():
            mapping[header] = target
        else:
            ignored.append(header)
    return mapping, ignored


def _element_of(library: str) -> dict[str, Element]:
    """Standard field → element."""
    return {e.name: e for e in library_elements(library)}


def standardise_file(table: pa.Table, library: str, mapping: dict[str, str], name: str) -> pa.Table:
    """The file's rows as standard fields, normalised by element type, with lineage (_source_key = row number)."""
    elements = _element_of(library)
    rows = table.num_rows
    columns: dict[str, pa.Array] = {}
    errors: list[pa.Array] = []
    for header, target in mapping.items():
        element = elements[target]
        steps = NORMALISE_BY_TYPE.get(element.type, ("halfwidth", "text"))
        if element.identifier:
            steps = ("halfwidth", "text", "upper")
        values = table.column(header).combine_chunks()
        for step in steps:
            values, step_errors = NORMALISERS[step](values)
            if step_errors.null_count < rows:
                errors.append(pc.binary_join_element_wise(f"{header}: ", step_errors, ""))
        columns[target] = values
    reader_errors = table.column("_error").combine_chunks() if "_error" in table.column_names else pa.nulls(rows, pa.string())
    errors.append(reader_errors)
    row_numbers = pc.cast(table.column("_row"), pa.string()) if "_row" in table.column_names else pa.array([str(i + 1) for i in range(rows)])
    columns["_source_id"] = pa.array([FILE_SOURCE] * rows, pa.string())
    columns["_run_id"] = pa.array([name] * rows, pa.string())
    columns["_source_key"] = row_numbers.combine_chunks() if isinstance(row_numbers, pa.ChunkedArray) else row_numbers
    columns["_errors"] = join_messages(errors, rows)
    return pa.table(columns)


def file_rules(catalogue: Catalogue, columns: set[str]) -> tuple[list[Rule], list[str]]:
    """Rules that can run on a lone file, and those that cannot (they need other sources or the hub's state)."""
    chosen, skipped = [], []
    for rule in catalogue.rules:
        if rule.sources is not None or rule.check == "freshness":
            continue  # source-specific agreements and source-level checks are not about an arbitrary file
        if not rule.applies_to(FILE_SOURCE, columns):
            continue
        if rule.check in CROSS_SOURCE_CHECKS:
            skipped.append(rule.id)
        else:
            chosen.append(rule)
    return chosen, skipped


def read_file(path: Path) -> tuple[pa.Table, str | None]:
    """A file read as text columns with _row lineage (the hub's own file reader); (table, rejection reason)."""
    from connectors.files import FileConnector, FileOptions
    from connectors.state import FileState

    with tempfile.TemporaryDirectory(prefix="hub-quality-check-") as work:
        # The reader takes a folder and a glob: a link under a plain name keeps names like 'a[1].csv', '*.csv' or
        # '.hidden.csv' from matching other files, or none.
        folder = Path(work) / "in"
        folder.mkdir()
        (folder / f"file{path.suffix.lower()}").symlink_to(path.resolve())
        connector = FileConnector(FILE_SOURCE, folder, f"file{path.suffix.lower()}", (), FileState(Path(work) / "state.json", FILE_SOURCE),
                                  Path(work) / "rejected", Path(work) / "tmp", FileOptions())
        try:
            schema = connector.arrow_schema()
            batches = list(connector.read_batches())
            rejected = connector.details()["rejected"]
        finally:
            connector.close()
    if rejected:
        return pa.table({}), rejected[0].get("reason", "无法读取 unreadable")
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table(), None


def check_file(path: Path, library: str, reference_date: dt.date) -> FileReport:
    """Run the library's row-level rules on one file."""
    report = FileReport(file=str(path))
    if not path.is_file():
        raise FileCheckError(f"文件不存在 file not found: {path}")
    table, rejected = read_file(path)
    if rejected:
        raise FileCheckError(f"{path.name}: 无法读取 cannot read: {rejected}")
    headers = [c for c in table.column_names if c not in LINEAGE]
    mapping, report.ignored = header_map(library, headers)
    if not mapping:
        raise FileCheckError(f"{path.name}: 没有可识别的列 no column is a standard field or label of {library}: {headers[:10]}")
    report.columns = mapping
    report.rows = table.num_rows
    if "_error" in table.column_names:
        report.bad_rows = table.num_rows - table.column("_error").null_count
    standard = standardise_file(table, library, mapping, path.name)
    catalogue = load_catalogue(library)
    rules, report.skipped_rules = file_rules(catalogue, set(standard.column_names))
    context = RuleContext(FILE_SOURCE, path.name, reference_date, catalogue)
    evaluation = evaluate(standard, context, rules)
    back = {v: k for k, v in mapping.items()}
    findings = evaluation.findings
    for row in findings.to_pylist():
        report.findings.append({"file": path.name, "row": int(row["source_key"]) if row["source_key"].isdigit() else row["source_key"],
                                "field": row["field"], "column": back.get(row["field"], row["field"]), "rule": row["rule_id"],
                                "severity": row["severity"], "message": row["message"]})
    report.findings.sort(key=lambda f: (f["row"] if isinstance(f["row"], int) else 0, f["rule"]))
    report.rows_with_errors = int((evaluation.verdict == QUARANTINE).sum())
    return report


def summary(reports: list[FileReport], library: str, failures: dict[str, str]) -> dict[str, Any]:
    """The closing summary line of `hub quality check`."""
    findings = [f for r in reports for f in r.findings]
    by_rule: dict[str, int] = {}
    for finding in findings:
        by_rule[finding["rule"]] = by_rule.get(finding["rule"], 0) + 1
    return {"summary": {
        "library": library, "files": len(reports) + len(failures), "unreadable_files": failures,
        "rows": sum(r.rows for r in reports), "rows_with_errors": sum(r.rows_with_errors for r in reports),
        "findings": len(findings), "errors": sum(f["severity"] == "error" for f in findings),
        "warnings": sum(f["severity"] == "warning" for f in findings), "by_rule": dict(sorted(by_rule.items())),
        "columns": {r.file: r.columns for r in reports}, "ignored_columns": {r.file: r.ignored for r in reports if r.ignored},
        "not_checked_here": sorted({s for r in reports for s in r.skipped_rules}),
    }}


def iter_lines(paths: list[Path], library: str, reference_date: dt.date) -> Iterator[dict[str, Any]]:
    """Every finding of every file, then the summary (an unreadable file yields an error line, not a traceback)."""
    reports, failures = [], {}
    for path in paths:
        try:
            report = check_file(path, library, reference_date)
        except FileCheckError as error:
            failures[str(path)] = str(error)
            yield {"file": str(path), "error": str(error)}
            continue
        reports.append(report)
        yield from report.findings
    yield summary(reports, library, failures)
