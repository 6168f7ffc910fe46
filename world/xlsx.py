"""A minimal, deterministic, column-vectorised .xlsx writer (shared strings, real date cells).

XlsxWriter costs several microseconds per cell in Python; a million-row sheet needs the XML built
column-wise with arrow instead. The package holds exactly what Excel, openpyxl and calamine need.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world.text import cat, joined_view, num

MAX_ROWS_PER_SHEET = 1_000_000
EXCEL_EPOCH = np.datetime64("1899-12-30")
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
CREATED = "2026-01-01T00:00:00Z"

_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_REL_NS = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
STYLE_DATE = 1
STYLE_DATETIME = 2


def _escape(values: pa.Array) -> pa.Array:
    """XML text escaping (skipped when no value needs it, the usual case)."""
    data = np.frombuffer(joined_view(values), dtype=np.uint8)
    if not ((data == 38) | (data == 60) | (data == 62)).any():
        return values
    out = pc.replace_substring(values, "&", "&amp;")
    out = pc.replace_substring(out, "<", "&lt;")
    return pc.replace_substring(out, ">", "&gt;")


class _SharedStrings:
    """The shared-string table: every string cell refers to an entry by index."""

    def __init__(self) -> None:
        """An empty table."""
        self.parts: list[pa.Array] = []
        self.size = 0
        self.count = 0

    def cells(self, values: pa.Array) -> pa.Array:
        """<c t="s"> cells of a string column; empty <c/> for nulls."""
        encoded = pc.dictionary_encode(values).combine_chunks() if isinstance(values, pa.ChunkedArray) \
            else pc.dictionary_encode(values)
        dictionary = encoded.dictionary
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        offset = self.size
        self.parts.append(dictionary)
        self.size += len(dictionary)
        self.count += len(values) - values.null_count
        cell = cat('<c t="s"><v>', num(np.nan_to_num(indices, nan=0).astype(np.int64) + offset), "</v></c>")
        return pc.if_else(pc.is_null(values), "<c/>", pc.fill_null(cell, "<c/>")) if values.null_count else cell

    def xml(self) -> list[bytes | memoryview]:
        """sharedStrings.xml."""
        entries = [cat('<si><t xml:space="preserve">', _escape(part), "</t></si>") for part in self.parts if len(part)]
        head = (_HEAD + f'<sst {_NS} count="{self.count}" uniqueCount="{self.size}">').encode("utf-8")
        return [head, *(joined_view(e) for e in entries), b"</sst>"]


def _cells(values: pa.Array, strings: _SharedStrings) -> pa.Array:
    """The <c> element of each value (<c/> for nulls): strings shared, dates and times as styled numbers.

    Cells carry no r attribute: each row lists all its cells in column order, which Excel, openpyxl
    and calamine all accept, and it keeps a million-row sheet small.
    """
    t = values.type
    if pa.types.is_union(t):
        # Sparse union of alternatives (e.g. a date cell in some rows, a text cell in others).
        choices = [_cells(values.field(i), strings) for i in range(t.num_fields)]
        codes = pa.array(np.frombuffer(values.buffers()[1], dtype=np.int8, count=len(values), offset=values.offset))
        return pc.choose(codes, *choices)
    if pa.types.is_string(t):
        return strings.cells(values)
    if pa.types.is_date(t):
        serial = (values.to_numpy(zero_copy_only=False).astype("datetime64[D]") - EXCEL_EPOCH).astype(np.int64)
        cell = cat(f'<c s="{STYLE_DATE}"><v>', num(serial), "</v></c>")
    elif pa.types.is_timestamp(t):
        seconds = (values.to_numpy(zero_copy_only=False).astype("datetime64[s]") - EXCEL_EPOCH.astype("datetime64[s]"))
        serial = pc.cast(pa.array(seconds.astype(np.int64) / 86400.0), pa.string())
        cell = cat(f'<c s="{STYLE_DATETIME}"><v>', serial, "</v></c>")
    else:
        cell = cat("<c><v>", pc.cast(values, pa.string()), "</v></c>")
    return pc.if_else(pc.is_null(values), "<c/>", pc.fill_null(cell, "<c/>")) if values.null_count else cell


def _sheet_xml(header: Sequence[str], columns: Sequence[pa.Array], first_row: int, rows: int,
               strings: _SharedStrings) -> list[bytes | memoryview]:
    """One worksheet: a header row, then the column slices [first_row, first_row + rows)."""
    parts: list[object] = ["<row>"]
    for column in columns:
        parts.append(_cells(column.slice(first_row, rows), strings))
    parts.append("</row>")
    body = cat(*parts) if rows else pa.array([], pa.string())
    head_cells = "".join(f'<c t="inlineStr"><is><t>{name}</t></is></c>' for name in header)
    return [
        (_HEAD + f"<worksheet {_NS}><sheetData><row>{head_cells}</row>").encode("utf-8"),
        joined_view(body),
        b"</sheetData></worksheet>",
    ]


def _styles() -> str:
    """Styles with a date and a date-time number format."""
    return (_HEAD + f'<styleSheet {_NS}><numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
            '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
            '<fonts count="1"><font><sz val="11"/><name val="宋体"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
            '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')


def write_xlsx(path: Path, table: pa.Table, sheet_name: str, title: str = "") -> list[str]:
    """Write the table (one or more sheets of at most MAX_ROWS_PER_SHEET rows); returns the sheet names."""
    columns = [c.combine_chunks() for c in table.columns]
    n = table.num_rows
    count = max(1, -(-n // MAX_ROWS_PER_SHEET))
    names = [sheet_name if count == 1 else f"{sheet_name}{i + 1}" for i in range(count)]
    files: list[tuple[str, list[bytes | memoryview]]] = []
    strings = _SharedStrings()
    for i in range(count):
        first = i * MAX_ROWS_PER_SHEET
        rows = min(MAX_ROWS_PER_SHEET, n - first)
        files.append((f"xl/worksheets/sheet{i + 1}.xml", _sheet_xml(table.column_names, columns, first, rows, strings)))
    files.append(("xl/sharedStrings.xml", strings.xml()))
    sheets = "".join(f'<sheet name="{name}" sheetId="{i + 1}" r:id="rId{i + 1}"/>' for i, name in enumerate(names))
    rels = "".join(
        f'<Relationship Id="rId{i + 1}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
        f'Target="worksheets/sheet{i + 1}.xml"/>' for i in range(count))
    rels += (f'<Relationship Id="rId{count + 1}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
             'Target="styles.xml"/>'
             f'<Relationship Id="rId{count + 2}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
             'Target="sharedStrings.xml"/>')
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>' for i in range(count))
    package = [
        ("[Content_Types].xml", _HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
         '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
         '<Default Extension="xml" ContentType="application/xml"/>'
         '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
         '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
         '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
         '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
         + overrides + "</Types>"),
        ("_rels/.rels", _HEAD + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
         '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
         "</Relationships>"),
        ("docProps/core.xml", _HEAD + '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
         'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
         'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
         f"<dc:title>{title}</dc:title><dc:creator>湖北省人力资源和社会保障厅</dc:creator>"
         f'<dcterms:created xsi:type="dcterms:W3CDTF">{CREATED}</dcterms:created></cp:coreProperties>'),
        ("xl/workbook.xml", _HEAD + f"<workbook {_NS} {_REL_NS}><sheets>{sheets}</sheets></workbook>"),
        ("xl/_rels/workbook.xml.rels", _HEAD + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         + rels + "</Relationships>"),
        ("xl/styles.xml", _styles()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, content in [*package[:5], *files, package[5]]:
            chunks = [content.encode("utf-8")] if isinstance(content, str) else content
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info._compresslevel = 1  # ZipFile.open(info, "w") ignores the archive's level (CPython 3.11)
            info.external_attr = 0o644 << 16
            size = sum(len(c) for c in chunks)
            with archive.open(info, "w", force_zip64=size > 1_500_000_000) as handle:
                for chunk in chunks:
                    handle.write(chunk)
    return names
