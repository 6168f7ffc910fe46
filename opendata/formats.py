"""Release files: data in Parquet, CSV (UTF-8 with BOM, formula-safe) and JSON; datapackage.json; dcat.jsonld.

发布文件格式。Nothing here needs frictionless or rdflib: the descriptors are plain JSON written by hand
(the tests validate them with those libraries).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MEDIA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonld": "application/ld+json",
    ".sig": "application/json",
}
FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_REGEX = r"^[=+\-@\t\r]"  # the same prefixes for Arrow's RE2
BATCH_ROWS = 50_000  # rows per piece when writing CSV and JSON
BOM = "\ufeff"
FREQUENCIES = {"每日": "daily", "每周": "weekly", "每月": "monthly", "每季度": "quarterly", "每半年": "semiannual",
               "每年": "annual", "实时": "continuous", "不定期": "irregular"}
LICENCES = {"CC-BY-4.0": ("https://creativecommons.org/licenses/by/4.0/", "知识共享署名 4.0 国际许可协议")}
DEFAULT_BASE_URL = "http://127.0.0.1:8000/opendata"


def base_url() -> str:
    """Public address under which <dataset>/<version>/<file> is served ($HUB_OPENDATA_BASE_URL)."""
    return os.environ.get("HUB_OPENDATA_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def media_type(name: str) -> str:
    """IANA media type of a release file by its suffix."""
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def sha256_file(path: Path) -> str:
    """SHA-256 hex of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_value(value: Any) -> Any:
    """A cell as JSON: dates ISO, NaN as null."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def _json_column(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as json.dumps takes them: dates as ISO text, NaN and infinities as null."""
    kind = column.type
    if pa.types.is_date(kind):
        return column.cast(pa.string()).to_pylist()
    if pa.types.is_floating(kind):
        bad = pc.or_(pc.is_nan(column), pc.is_inf(column))
        return pc.if_else(pc.fill_null(bad, False), pa.scalar(None, kind), column).to_pylist()
    if pa.types.is_temporal(kind):
        return [_json_value(v) for v in column.to_pylist()]
    return column.to_pylist()


def json_chunks(table: pa.Table, batch_rows: int = BATCH_ROWS) -> Iterator[bytes]:
    """The rows as one JSON array of objects (UTF-8, column order kept), in pieces of `batch_rows` rows.

    The concatenated pieces are byte for byte `json.dumps(records, ensure_ascii=False, separators=(",", ":"))`:
    each batch is dumped as an array and its brackets become the commas between batches.
    """
    names = table.column_names
    yield b"["
    first = True
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows)
        columns = [_json_column(part.column(n)) for n in names]
        records = [dict(zip(names, row)) for row in zip(*columns)]
        text = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
        yield ((b"" if first else b",") + text[1:-1].encode("utf-8"))
        first = False
    yield b"]"


def json_bytes(table: pa.Table) -> bytes:
    """The rows as a JSON array of objects (UTF-8, column order kept): data.json and the content hash."""
    return b"".join(json_chunks(table))


def neutralise(text: str) -> str:
    """A CSV cell a spreadsheet would run as a formula (= + - @, tab, CR) gets a leading apostrophe."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_cell(value: Any, is_string: bool) -> str:
    """A cell as CSV text: empty for null, ISO dates, true/false, formula-safe strings."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return neutralise(text) if is_string else text


def _csv_column(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """A column's cells as CSV text (what _csv_cell gives each value), computed on the whole column at once."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_REGEX), False)
        column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        return pc.fill_null(column, "").to_pylist()
    if pa.types.is_integer(kind) or pa.types.is_date(kind) or pa.types.is_boolean(kind):
        return pc.fill_null(column.cast(pa.string()), "").to_pylist()
    return [_csv_cell(v, False) for v in column.to_pylist()]


def csv_chunks(table: pa.Table, batch_rows: int = BATCH_ROWS) -> Iterator[bytes]:
    """The rows as CSV, UTF-8 with BOM (Excel opens Chinese correctly), header row first, in pieces of rows."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.column_names)
    yield (BOM + out.getvalue()).encode("utf-8")
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows)
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerows(zip(*(_csv_column(part.column(n)) for n in part.column_names)))
        yield out.getvalue().encode("utf-8")


def csv_bytes(table: pa.Table) -> bytes:
    """The rows as CSV, UTF-8 with BOM (Excel opens Chinese correctly), header row first."""
    return b"".join(csv_chunks(table))


def write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync a file (the release folder is renamed into place afterwards)."""
    write_chunks(path, [data])


def write_chunks(path: Path, chunks: Iterable[bytes]) -> str:
    """Write pieces to a file, fsync it, and return the SHA-256 hex of what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for chunk in chunks:
            digest.update(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return digest.hexdigest()


def write_table(table: pa.Table, folder: Path, stem: str, formats: Iterable[str] = ("parquet", "csv", "json")) -> list[str]:
    """Write one table as <stem>.parquet/.csv/.json in the folder; returns the relative names written."""
    names = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        if fmt == "parquet":
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd")
        elif fmt == "csv":
            write_chunks(path, csv_chunks(table))
        else:
            write_chunks(path, json_chunks(table))
        names.append(path.relative_to(folder).as_posix())
    return names


def table_schema(fields: list[Any], key: Iterable[str] = ()) -> dict[str, Any]:
    """Frictionless Table Schema of the output columns (Chinese titles)."""
    schema: dict[str, Any] = {"fields": [{"name": f.name, "type": f.type, "title": f.title,
                                          **({"description": f.description} if f.description else {})} for f in fields]}
    names = {f.name for f in fields}
    key = [k for k in key if k in names]
    if key:
        schema["primaryKey"] = key
    schema["missingValues"] = [""]
    return schema


def file_entry(folder: Path, name: str) -> dict[str, Any]:
    """Manifest entry of one file: name, bytes, sha256, media type."""
    path = folder / name
    return {"name": name, "bytes": path.stat().st_size, "sha256": sha256_file(path), "media_type": media_type(name)}


def datapackage(spec: Any, version: str, created: str, folder: Path, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """datapackage.json (Frictionless Data Package): the CSV files as tabular resources with schema, bytes and hash.

    `resources`: [{name, path, schema, title}] — the CSV files; Parquet and JSON twins are listed as alternates.
    """
    url, title = LICENCES.get(spec.licence, (None, spec.licence))
    out = []
    for r in resources:
        entry = file_entry(folder, r["path"])
        out.append({
            "name": r["name"], "path": r["path"], "title": r["title"], "profile": "tabular-data-resource",
            "format": "csv", "mediatype": "text/csv", "encoding": "utf-8-sig",
            "bytes": entry["bytes"], "hash": f"sha256:{entry['sha256']}", "schema": r["schema"],
            "dialect": {"delimiter": ",", "quoteChar": '"', "header": True},
        })
    return {
        "profile": "tabular-data-package",
        "name": spec.id, "id": f"{spec.id}/{version}", "title": spec.title, "description": spec.description,
        "version": version, "created": created, "keywords": list(spec.keywords),
        "licenses": [{"name": spec.licence, **({"path": url} if url else {}), "title": title}],
        "sources": [{"title": spec.provider_name}],
        "contributors": [{"title": spec.provider_name, "role": "publisher"}],
        "resources": out,
    }


def dcat(spec: Any, version: str, created: str, folder: Path, distributions: list[str],
         previous: str | None, rows: int) -> dict[str, Any]:
    """dcat.jsonld: a DCAT-AP dcat:Dataset with one dcat:Distribution per data file (URL, media type, size, SHA-256)."""
    base = base_url()
    dataset_iri = f"{base}/{spec.id}/{version}"
    frequency = FREQUENCIES.get(spec.update_frequency, "irregular")
    licence_url = LICENCES.get(spec.licence, (None,))[0]
    items = []
    for name in distributions:
        entry = file_entry(folder, name)
        items.append({
            "@id": f"{dataset_iri}/{name}#distribution",
            "@type": "dcat:Distribution",
            "dct:title": {"@value": name, "@language": "zh"},
            "dcat:downloadURL": {"@id": f"{dataset_iri}/{name}"},
            "dcat:accessURL": {"@id": f"{dataset_iri}/{name}"},
            "dcat:mediaType": {"@id": f"https://www.iana.org/assignments/media-types/{entry['media_type']}"},
            "dct:format": FORMATS.get(Path(name).suffix, Path(name).suffix.lstrip(".")),
            "dcat:byteSize": {"@value": str(entry["bytes"]), "@type": "xsd:nonNegativeInteger"},
            "spdx:checksum": {
                "@type": "spdx:Checksum",
                "spdx:algorithm": {"@id": "spdx:checksumAlgorithm_sha256"},
                "spdx:checksumValue": {"@value": entry["sha256"], "@type": "xsd:hexBinary"},
            },
            **({"dct:license": {"@id": licence_url}} if licence_url else {}),
        })
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/", "foaf": "http://xmlns.com/foaf/0.1/",
            "spdx": "http://spdx.org/rdf/terms#", "xsd": "http://www.w3.org/2001/XMLSchema#",
            "adms": "http://www.w3.org/ns/adms#", "owl": "http://www.w3.org/2002/07/owl#",
        },
        "@id": dataset_iri,
        "@type": "dcat:Dataset",
        "dct:identifier": f"{spec.id}/{version}",
        "dct:title": {"@value": spec.title, "@language": "zh"},
        "dct:description": {"@value": spec.description, "@language": "zh"},
        "dcat:keyword": [{"@value": k, "@language": "zh"} for k in spec.keywords],
        "dcat:theme": {"@value": spec.theme, "@language": "zh"},
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": {"@value": spec.provider_name, "@language": "zh"},
                          "dct:identifier": spec.provider_code},
        "dct:accrualPeriodicity": {"@id": f"http://purl.org/cld/freq/{frequency}"},
        "dct:accessRights": {"@value": spec.open_attribute, "@language": "zh"},
        "dct:issued": {"@value": created, "@type": "xsd:dateTime"},
        "dct:modified": {"@value": created, "@type": "xsd:dateTime"},
        "owl:versionInfo": version,
        "dcat:version": version,
        **({"dct:isVersionOf": {"@id": f"{base}/{spec.id}"}}),
        **({"dct:replaces": {"@id": f"{base}/{spec.id}/{previous}"}} if previous else {}),
        "dct:source": {"@value": spec.legal_basis, "@language": "zh"},
        "adms:identifier": spec.resource_code,
        "dct:extent": {"@value": f"{rows} 行", "@language": "zh"},
        "dcat:distribution": items,
    }


__all__ = ["BOM", "base_url", "csv_bytes", "csv_chunks", "json_chunks", "write_chunks", "datapackage", "dcat", "file_entry", "json_bytes", "media_type",
           "neutralise", "sha256_file", "table_schema", "write_bytes", "write_table"]
