"""The open-data portal: Chinese pages to find, inspect and download releases, plus the CKAN-style API.

开放数据门户：检索、浏览、下载去标识化的开放数据发布版本（网页与 CKAN 兼容接口）。

Releases are read-only files under `<data_root>/opendata` (written by opendata.release, read through
opendata.store, with caches here because a portal reads the same few files on every request). Every file a client may fetch must be named in the release's manifest (plus the
manifest and its signature), so no URL can reach anything else on disk. Downloads are counted in the
hub database with one UPSERT per download, run after the response has been sent.

`create_portal(data_root, engine)` returns a FastAPI app; `portal_router(...)` and `PortalGuard` let a
larger app include the same routes and protections.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import threading
import time
import unicodedata
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse

from hub.asgi import replay
from opendata import store

log = logging.getLogger(__name__)

PREFIX = "/opendata"
HERE = Path(__file__).resolve().parent
# One path segment of a dataset id, a version or a file name: no dots first (so no `..`), no separators.
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
ALWAYS_SERVED = ("manifest.json", "manifest.sig")  # a manifest cannot list itself or its signature
BULK_NAME = "release.zip"
CHUNK = 64 * 1024
PAGE_SIZE = 20

MEDIA_TYPES: dict[str, str] = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".jsonld": "application/ld+json",
    ".sig": "application/octet-stream",
    ".zip": "application/zip",
}
FORMAT_LABELS: dict[str, str] = {".parquet": "PARQUET", ".csv": "CSV", ".json": "JSON", ".jsonld": "JSON-LD", ".sig": "SIG"}
FILE_TITLES: dict[str, str] = {
    "data.parquet": "数据（Parquet）",
    "data.csv": "数据（CSV，UTF-8 带 BOM，可用 Excel 打开）",
    "data.json": "数据（JSON）",
    "datapackage.json": "数据包描述（Frictionless Data Package）",
    "dcat.jsonld": "元数据（DCAT JSON-LD）",
    "manifest.json": "发布清单（文件、大小、SHA-256、来源）",
    "manifest.sig": "发布清单签名",
}
FACETS: tuple[tuple[str, str], ...] = (("provider", "提供方"), ("theme", "主题"), ("format", "格式"), ("frequency", "更新频率"))


# ------------------------------------------------------------------------------------------------
# Reading releases
# ------------------------------------------------------------------------------------------------


def safe_segment(text: str) -> bool:
    """True for a dataset id, version or file-name segment that cannot leave its folder."""
    return bool(SAFE_SEGMENT.match(text)) and ".." not in text


def safe_relative(name: str) -> bool:
    """True for a file name inside a release (`data.csv`, `diff/added.csv`): safe segments only."""
    return bool(name) and all(safe_segment(part) for part in name.split("/"))


def format_label(name: str) -> str:
    """CKAN-style format of a file name or a bare format (`data.csv` → CSV, `parquet` → PARQUET)."""
    suffix = Path(name).suffix.lower() or f".{name.lower().lstrip('.')}"
    return FORMAT_LABELS.get(suffix, suffix.lstrip(".").upper())


def media_type(name: str, declared: str | None = None) -> str:
    """The Content-Type of a release file (the manifest's own declaration wins, text gets UTF-8)."""
    value = declared or MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
    if value.startswith("text/") and "charset" not in value:
        value += "; charset=utf-8"
    return value


def human_size(size: int | None) -> str:
    """1536 → '1.5 KB'."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def normalise_text(text: str) -> str:
    """Search form of Chinese text: full-width to half-width (NFKC), traditional to simplified, case folded."""
    import zhconv

    return zhconv.convert(unicodedata.normalize("NFKC", text or ""), "zh-cn").casefold()


def _read_json(path: Path) -> Any:
    """A JSON file's content."""
    return json.loads(path.read_text(encoding="utf-8"))


class Releases:
    """Read-only view of `<data_root>/opendata`: the catalogue (re-read when it changes) and per-version manifests."""

    def __init__(self, data_root: Path | str) -> None:
        """Remember the folder; nothing is read until asked."""
        self.data_root = Path(data_root).resolve()
        self.root = store.opendata_dir(self.data_root)
        self._lock = threading.Lock()
        self._catalog: tuple[tuple[int, int], list[dict[str, Any]]] | None = None
        self._manifests: OrderedDict[tuple[str, str], tuple[tuple[int, int], dict[str, Any]]] = OrderedDict()
        self._previews: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        """(mtime_ns, size) of a file: the cache key that notices a rewrite."""
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset of catalog.json (empty when nothing has been released yet)."""
        path = self.root / "catalog.json"
        try:
            stamp = self._stamp(path)
        except FileNotFoundError:
            return []
        with self._lock:
            if self._catalog is None or self._catalog[0] != stamp:
                items = store.list_datasets(self.data_root)
                for item in items:
                    # Precomputed once per catalogue version: searching must not re-normalise every request.
                    item["_search"] = {
                        "title": normalise_text(item.get("title", "")),
                        "keywords": normalise_text(" ".join(item.get("keywords") or [])),
                        "description": normalise_text(item.get("description", "")),
                    }
                self._catalog = (stamp, [i for i in items if safe_segment(str(i.get("id", "")))])
            return self._catalog[1]

    def dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """One dataset of the catalogue, None if unknown (or not a safe id)."""
        if not safe_segment(dataset_id):
            return None
        return next((d for d in self.datasets() if d["id"] == dataset_id), None)

    def resolve_version(self, dataset_id: str, version: str = "latest") -> str | None:
        """The concrete version id ('latest' reads LATEST), None if the dataset or version is unknown."""
        if self.dataset(dataset_id) is None:
            return None
        try:
            return store.resolve_version(self.data_root, dataset_id, version)
        except (store.ReleaseNotFound, ValueError):
            return None

    def release_dir(self, dataset_id: str, version: str) -> Path:
        """Folder of one release (ids must have been checked)."""
        return self.root / dataset_id / version

    def manifest(self, dataset_id: str, version: str = "latest") -> dict[str, Any] | None:
        """The manifest of a release (cached while the file is unchanged), None if absent."""
        resolved = self.resolve_version(dataset_id, version)
        if resolved is None:
            return None
        path = self.release_dir(dataset_id, resolved) / "manifest.json"
        try:
            stamp = self._stamp(path)
        except FileNotFoundError:
            return None
        key = (dataset_id, resolved)
        with self._lock:
            cached = self._manifests.get(key)
            if cached and cached[0] == stamp:
                self._manifests.move_to_end(key)
                return cached[1]
        manifest = _read_json(path)
        manifest.setdefault("version", resolved)
        with self._lock:
            self._manifests[key] = (stamp, manifest)
            while len(self._manifests) > 512:
                self._manifests.popitem(last=False)
        return manifest

    def files(self, dataset_id: str, version: str) -> list[dict[str, Any]]:
        """The manifest's files that are safe to serve, each {name, bytes, sha256, media_type}."""
        manifest = self.manifest(dataset_id, version) or {}
        return [f for f in manifest.get("files") or [] if safe_relative(str(f.get("name", "")))]

    def file_entry(self, dataset_id: str, version: str, name: str) -> dict[str, Any] | None:
        """The manifest entry of a file, or a computed one for the manifest and its signature; None otherwise."""
        entry = next((f for f in self.files(dataset_id, version) if f["name"] == name), None)
        if entry is not None:
            return entry
        if name in ALWAYS_SERVED:
            path = self.release_dir(dataset_id, version) / name
            if path.is_file():
                return {"name": name, "bytes": path.stat().st_size, "sha256": _sha256_file(path), "media_type": None}
        return None

    def file_path(self, dataset_id: str, version: str, name: str) -> Path | None:
        """The path of a served file: listed in the manifest, present, and inside the release folder."""
        if self.file_entry(dataset_id, version, name) is None:
            return None
        try:
            path = store.file_path(self.data_root, dataset_id, version, name)
        except store.ReleaseNotFound:
            return None
        # Belt and braces: even a listed name must not resolve outside the release (e.g. through a symlink).
        base = self.release_dir(dataset_id, version).resolve()
        return path if path.is_relative_to(base) and path.is_file() else None

    def datapackage(self, dataset_id: str, version: str) -> dict[str, Any]:
        """datapackage.json of a release ({} if absent or unreadable)."""
        path = self.file_path(dataset_id, version, "datapackage.json")
        try:
            return _read_json(path) if path else {}
        except (OSError, ValueError):
            return {}

    def fields(self, dataset_id: str, version: str) -> list[dict[str, Any]]:
        """The data dictionary: schema fields of the first resource of the data package."""
        resources = self.datapackage(dataset_id, version).get("resources") or [{}]
        return list((resources[0].get("schema") or {}).get("fields") or [])

    def preview(self, dataset_id: str, version: str, rows: int = 20) -> dict[str, Any]:
        """The first rows of data.parquet as {columns, rows} (cached: releases never change)."""
        key = (dataset_id, version)
        with self._lock:
            if key in self._previews:
                return self._previews[key]
        path = self.file_path(dataset_id, version, "data.parquet")
        result: dict[str, Any] = {"columns": [], "rows": []}
        if path is not None:
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            result["columns"] = list(parquet.schema_arrow.names)
            batch = next(parquet.iter_batches(batch_size=rows), None)
            if batch is not None:
                result["rows"] = [[_cell(row[c]) for c in result["columns"]] for row in batch.to_pylist()[:rows]]
        with self._lock:
            self._previews[key] = result
            while len(self._previews) > 128:
                self._previews.popitem(last=False)
        return result

    def keys_path(self) -> Path | None:
        """keys.json with the public keys that verify manifest signatures."""
        path = self.root / "keys.json"
        return path if path.is_file() else None


def _cell(value: Any) -> str:
    """One preview cell as text."""
    if value is None:
        return ""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


_hash_cache: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: Path) -> str:
    """SHA-256 of a file not listed in the manifest (the manifest itself), cached by mtime and size."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


# ------------------------------------------------------------------------------------------------
# Search and facets (shared by the pages and package_search)
# ------------------------------------------------------------------------------------------------


def facet_values(item: dict[str, Any], facet: str) -> list[tuple[str, str]]:
    """The (value, label) pairs a dataset has for one facet."""
    if facet == "provider":
        return [(str(item.get("provider_code") or ""), str(item.get("provider_name") or item.get("provider_code") or ""))]
    if facet == "theme":
        return [(str(item["theme"]), str(item["theme"]))] if item.get("theme") else []
    if facet == "format":
        return [(format_label(f), format_label(f)) for f in item.get("formats") or []]
    if facet == "frequency":
        return [(str(item["update_frequency"]), str(item["update_frequency"]))] if item.get("update_frequency") else []
    if facet == "tags":
        return [(str(k), str(k)) for k in item.get("keywords") or []]
    if facet == "open_attribute":
        return [(str(item["open_attribute"]), str(item["open_attribute"]))] if item.get("open_attribute") else []
    return []


def text_score(item: dict[str, Any], query: str) -> float:
    """Relevance of a dataset to a query: every term must occur; title counts most, then keywords, then description."""
    terms = normalise_text(query).split()
    if not terms:
        return 1.0
    haystack = item["_search"]
    score = 0.0
    for term in terms:
        term_score = 3.0 * (term in haystack["title"]) + 2.0 * (term in haystack["keywords"]) + 1.0 * (term in haystack["description"])
        if term_score == 0:
            return 0.0
        score += term_score
    return score


def search(datasets: list[dict[str, Any]], query: str = "", filters: dict[str, list[str]] | None = None) -> list[tuple[float, dict[str, Any]]]:
    """Datasets matching the text and every facet filter (any of a facet's values), best first, then newest."""
    filters = {k: v for k, v in (filters or {}).items() if v}
    hits = []
    for item in datasets:
        score = text_score(item, query)
        if score <= 0:
            continue
        if all({v for v, _ in facet_values(item, facet)} & set(values) for facet, values in filters.items()):
            hits.append((score, item))
    hits.sort(key=lambda hit: latest_created(hit[1]), reverse=True)
    hits.sort(key=lambda hit: hit[0], reverse=True)  # stable: newest first within one score
    return hits


def latest_created(item: dict[str, Any]) -> str:
    """created_at of the dataset's latest version (ISO text, '' if unknown)."""
    versions = item.get("versions") or []
    latest = next((v for v in versions if v.get("version") == item.get("latest_version")), versions[-1] if versions else {})
    return str(latest.get("created_at") or "")


def facet_counts(items: list[dict[str, Any]], facet: str) -> list[dict[str, Any]]:
    """[{value, label, count}] of a facet over some datasets, most frequent first."""
    counts: dict[str, list[Any]] = {}
    for item in items:
        for value, label in dict.fromkeys(facet_values(item, facet)):
            if value:
                counts.setdefault(value, [label, 0])[1] += 1
    return [{"value": v, "label": lc[0], "count": lc[1]} for v, lc in sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0]))]


# ------------------------------------------------------------------------------------------------
# Download counts
# ------------------------------------------------------------------------------------------------

_downloads = sa.table(
    "opendata_download",
    sa.column("dataset_id", sa.String),
    sa.column("version", sa.String),
    sa.column("file_name", sa.String),
    sa.column("downloads", sa.BigInteger),
    sa.column("last_at", sa.DateTime(timezone=True)),
)


class DownloadCounter:
    """Download counts per (dataset, version, file) in the hub database's opendata_download table."""

    def __init__(self, engine: sa.Engine | None) -> None:
        """Counting is off when there is no engine (tests of pages alone)."""
        self.engine = engine

    def _upsert(self) -> Any:
        """INSERT … ON CONFLICT DO UPDATE downloads = downloads + 1 in the engine's dialect."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(_downloads)
        return statement.on_conflict_do_update(
            index_elements=["dataset_id", "version", "file_name"],
            set_={"downloads": _downloads.c.downloads + 1, "last_at": statement.excluded.last_at},
        )

    def hit(self, dataset_id: str, version: str, file_name: str) -> None:
        """Count one download (one statement); a database error is logged, never shown to the downloader."""
        if self.engine is None:
            return
        row = {"dataset_id": dataset_id, "version": version, "file_name": file_name, "downloads": 1,
               "last_at": dt.datetime.now(dt.timezone.utc)}
        try:
            with self.engine.begin() as connection:
                connection.execute(self._upsert(), row)
        except sa.exc.SQLAlchemyError:
            log.exception("下载计数失败 could not count a download of %s/%s/%s", dataset_id, version, file_name)

    def counts(self, dataset_id: str | None = None) -> dict[tuple[str, str, str], int]:
        """{(dataset, version, file): downloads}, for one dataset or all."""
        if self.engine is None:
            return {}
        query = sa.select(_downloads.c.dataset_id, _downloads.c.version, _downloads.c.file_name, _downloads.c.downloads)
        if dataset_id is not None:
            query = query.where(_downloads.c.dataset_id == dataset_id)
        try:
            with self.engine.connect() as connection:
                return {(d, v, f): int(n) for d, v, f, n in connection.execute(query)}
        except sa.exc.SQLAlchemyError:
            log.exception("读取下载计数失败 could not read download counts")
            return {}

    def totals(self) -> dict[str, int]:
        """Downloads per dataset (all versions and files)."""
        totals: dict[str, int] = {}
        for (dataset_id, _, _), count in self.counts().items():
            totals[dataset_id] = totals.get(dataset_id, 0) + count
        return totals


# ------------------------------------------------------------------------------------------------
# Rate limit, security headers, request size: one ASGI middleware
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalConfig:
    """Protections of the portal; the defaults suit one public server."""

    rate: float = 10.0  # tokens added per second per anonymous client IP
    burst: int = 60  # bucket size: a page with its stylesheet and a few downloads fit easily
    max_clients: int = 50_000  # remembered buckets; full (idle) buckets are forgotten first
    max_body_bytes: int = 64 * 1024  # CKAN action calls are small JSON documents
    max_url_bytes: int = 4096
    trust_forwarded_for: bool = False  # only behind a reverse proxy that sets X-Forwarded-For
    trusted_tokens: frozenset[str] = frozenset()  # Bearer tokens of known (non-anonymous) clients: not limited
    site_title: str = "政务开放数据门户"


SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


@dataclass
class TokenBuckets:
    """Per-client token buckets (monotonic clock) under one lock: a dict lookup and a few floats per request."""

    rate: float
    burst: int
    max_clients: int = 50_000
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # client → (tokens, stamp)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, client: str) -> float:
        """0 if the client may go on now, else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, stamp = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                self._prune(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate > 0 else 60.0

    def _prune(self, now: float) -> None:
        """Forget refilled buckets when too many clients are remembered (a refilled bucket equals a new one)."""
        if len(self._buckets) <= self.max_clients:
            return
        refill = self.burst / self.rate if self.rate > 0 else math.inf
        for key in [k for k, (_, stamp) in self._buckets.items() if now - stamp >= refill]:
            del self._buckets[key]
        while len(self._buckets) > self.max_clients:  # all busy: drop the oldest entries
            del self._buckets[next(iter(self._buckets))]


class PortalGuard:
    """ASGI middleware: URL and body size limits, per-IP rate limit for anonymous clients, security headers."""

    def __init__(self, app: Any, config: PortalConfig = PortalConfig()) -> None:
        """Wrap an ASGI app."""
        self.app = app
        self.config = config
        self.buckets = TokenBuckets(config.rate, config.burst, config.max_clients)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """Check the request, then pass it on with the headers added to the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        is_api = path.startswith("/api/")
        url_bytes = len(scope.get("raw_path") or path.encode()) + len(scope.get("query_string") or b"")
        if url_bytes > self.config.max_url_bytes:
            await _plain(send, 414, "请求地址过长", is_api)
            return
        if not path.startswith(f"{PREFIX}/static/") and not self._known_client(headers):
            wait = self.buckets.take(self._client_ip(scope, headers))
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _plain(send, 429, f"请求过于频繁，请 {retry} 秒后再试。", is_api, [(b"retry-after", str(retry).encode())])
                return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.config.max_body_bytes):
            await _plain(send, 413, f"请求体过大（上限 {self.config.max_body_bytes} 字节）", is_api)
            return
        if scope.get("method") in {"POST", "PUT", "PATCH"}:
            body = await self._read_body(receive)
            if body is None:
                await _plain(send, 413, f"请求体过大（上限 {self.config.max_body_bytes} 字节）", is_api)
                return
            receive = replay(body)
        await self.app(scope, receive, _with_headers(send, is_api))

    def _known_client(self, headers: dict[str, str]) -> bool:
        """True for a Bearer token of a trusted client (those are not rate limited)."""
        auth = headers.get("authorization", "")
        if not self.config.trusted_tokens or not auth.lower().startswith("bearer "):
            return False
        token = auth[7:].strip()
        return any(hmac.compare_digest(token, known) for known in self.config.trusted_tokens)

    def _client_ip(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        """The client's IP: the socket peer, or the proxy's last X-Forwarded-For hop when trusted."""
        if self.config.trust_forwarded_for and headers.get("x-forwarded-for"):
            return headers["x-forwarded-for"].split(",")[-1].strip()
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def _read_body(self, receive: Callable) -> bytes | None:
        """The whole request body, None as soon as it exceeds the limit (chunked bodies too)."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(parts)


def _with_headers(send: Callable, is_api: bool) -> Callable:
    """A send callable that adds the security headers (and open CORS for the read-only API)."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [h for h in SECURITY_HEADERS if h[0] not in present]
            if is_api:
                extra.append((b"access-control-allow-origin", b"*"))
            message["headers"] = list(message.get("headers", [])) + extra
        await send(message)

    return wrapped


async def _plain(send: Callable, status: int, message: str, is_api: bool, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer directly from the middleware: CKAN's error envelope for the API, a short Chinese text otherwise."""
    if is_api:
        kinds = {413: "Request Entity Too Large", 414: "URI Too Long", 429: "Rate Limit Error"}
        body = json.dumps({"help": None, "success": False, "error": {"__type": kinds.get(status, "Error"), "message": message}},
                          ensure_ascii=False).encode()
        content_type = b"application/json"
    else:
        body = message.encode()
        content_type = b"text/plain; charset=utf-8"
    all_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())] + (headers or [])
    await _with_headers(send, is_api)({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------------
# Downloads
# ------------------------------------------------------------------------------------------------


def content_disposition(filename: str, fallback: str) -> str:
    """attachment with an ASCII fallback and the UTF-8 name (RFC 6266 / RFC 5987)."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", fallback)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download_name(item: dict[str, Any], version: str, name: str) -> tuple[str, str]:
    """(UTF-8 name, ASCII fallback) of a downloaded file: title, version and the file's own name."""
    flat = name.replace("/", "_")
    title = re.sub(r'[\\/:*?"<>|\s]+', "_", str(item.get("title") or item["id"]))
    return f"{title}_{version}_{flat}", f"{item['id']}_{version}_{flat}"


def _etag_matches(request: Request, etag: str) -> bool:
    """True when If-None-Match names this ETag (or *)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def file_response(request: Request, path: Path, entry: dict[str, Any], filename: tuple[str, str],
                  on_download: Callable[[], None] | None) -> Response:
    """A file with Content-Type, Content-Length, ETag (its SHA-256) and Content-Disposition; counted when sent whole."""
    etag = f'"{entry["sha256"]}"'
    headers = {"etag": etag, "content-disposition": content_disposition(*filename),
               "cache-control": "public, max-age=31536000, immutable"}  # a release's files never change
    if _etag_matches(request, etag):
        return Response(status_code=304, headers={"etag": etag, "cache-control": headers["cache-control"]})
    whole = request.method == "GET" and "range" not in request.headers
    background = BackgroundTask(on_download) if on_download and whole else None
    return FileResponse(path, media_type=media_type(entry["name"], entry.get("media_type")), headers=headers,
                        background=background, stat_result=path.stat())


class _Pipe:
    """A write-only file object whose bytes the zip generator collects and yields."""

    def __init__(self) -> None:
        """Empty buffer."""
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        """Collect bytes."""
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush."""

    def take(self) -> bytes:
        """The bytes written since the last call."""
        data, self.parts = b"".join(self.parts), []
        return data


def stream_zip(files: list[tuple[str, Path]]) -> Iterator[bytes]:
    """A zip archive of the files produced piece by piece (never whole in memory, no temporary file)."""
    pipe = _Pipe()
    # ZipFile on a stream without tell() writes data descriptors after each entry, so it never seeks back.
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for arcname, path in files:
            with path.open("rb") as source, archive.open(arcname, mode="w", force_zip64=path.stat().st_size > 2**31) as target:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    target.write(chunk)
                    if (data := pipe.take()):
                        yield data
            if (data := pipe.take()):
                yield data
    if (data := pipe.take()):
        yield data


# ------------------------------------------------------------------------------------------------
# Pages and routes
# ------------------------------------------------------------------------------------------------


def _templates() -> Environment:
    """The Jinja2 environment of the portal's pages (autoescaped)."""
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    environment.filters["size"] = human_size
    environment.filters["q"] = lambda text: quote(str(text), safe="")
    environment.globals["prefix"] = PREFIX
    return environment


def _not_found(message: str = "未找到该数据集或文件") -> HTTPException:
    """404 with a Chinese message."""
    return HTTPException(status_code=404, detail=message)


def portal_router(releases: Releases, counter: DownloadCounter, config: PortalConfig = PortalConfig()) -> APIRouter:
    """Routes of the pages, downloads and keys.json (the CKAN API is opendata.ckan.ckan_router)."""
    router = APIRouter()
    templates = _templates()

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render a template into a Chinese page."""
        return HTMLResponse(templates.get_template(name).render(site_title=config.site_title, **context), status_code=status)

    @router.get(f"{PREFIX}/static/portal.css", include_in_schema=False)
    def stylesheet() -> FileResponse:
        """The stylesheet (a file, because the CSP forbids inline styles)."""
        return FileResponse(HERE / "static" / "portal.css", media_type="text/css; charset=utf-8",
                            headers={"cache-control": "public, max-age=3600"})

    @router.get(PREFIX, include_in_schema=False)
    def home_redirect() -> RedirectResponse:
        """/opendata → /opendata/."""
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @router.get(f"{PREFIX}/", response_class=HTMLResponse, summary="开放数据目录：检索与分面浏览")
    def home(request: Request, q: str = "", page_no: int = 1) -> HTMLResponse:
        """Browse and search the datasets, with facet counts."""
        filters = {facet: [v for v in request.query_params.getlist(facet) if v] for facet, _ in FACETS}
        hits = [item for _, item in search(releases.datasets(), q, filters)]
        totals = counter.totals()
        facets = []
        for facet, label in FACETS:
            # Counts under every other active filter, so picking a value shows what it would leave.
            others = {k: v for k, v in filters.items() if k != facet}
            base = [item for _, item in search(releases.datasets(), q, others)]
            values = facet_counts(base, facet)
            for value in values:
                value["active"] = value["value"] in filters[facet]
                value["href"] = _toggle_url(q, filters, facet, value["value"])
            facets.append({"name": facet, "label": label, "choices": values})
        page_no = max(1, page_no)
        pages = max(1, math.ceil(len(hits) / PAGE_SIZE))
        shown = hits[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
        return page("index.html", q=q, facets=facets, datasets=shown, total=len(hits), totals=totals,
                    page_no=page_no, pages=pages, filters=filters, latest_created=latest_created,
                    page_url=lambda n: f"{PREFIX}/?" + urlencode([("q", q)] + [(k, v) for k, vs in filters.items() for v in vs] + [("page_no", n)]))

    @router.get(f"{PREFIX}/datasets/{{dataset_id}}", response_class=HTMLResponse, summary="数据集详情")
    def dataset_page(dataset_id: str, version: str = "latest") -> HTMLResponse:
        """One dataset: metadata, data dictionary, preview, versions, files, diffs, download counts."""
        item = releases.dataset(dataset_id)
        resolved = releases.resolve_version(dataset_id, version) if item else None
        if item is None or resolved is None:
            raise _not_found()
        manifest = releases.manifest(dataset_id, resolved) or {}
        files = releases.files(dataset_id, resolved)
        counts = counter.counts(dataset_id)
        base = f"{PREFIX}/datasets/{quote(dataset_id)}/{quote(resolved)}"
        rows = [dict(f, title=FILE_TITLES.get(f["name"], f["name"]), format=format_label(f["name"]),
                     href=f"{base}/files/{quote(f['name'])}", downloads=counts.get((dataset_id, resolved, f["name"]), 0))
                for f in files]
        return page("dataset.html", item=item, version=resolved, manifest=manifest,
                    data_files=[r for r in rows if not r["name"].startswith("diff/")],
                    diff_files=[r for r in rows if r["name"].startswith("diff/")],
                    fields=releases.fields(dataset_id, resolved), preview=releases.preview(dataset_id, resolved),
                    versions=list(reversed(item.get("versions") or [])), base=base,
                    bulk_downloads=counts.get((dataset_id, resolved, BULK_NAME), 0),
                    total_downloads=sum(n for (d, _, _), n in counts.items() if d == dataset_id),
                    latest=releases.resolve_version(dataset_id))

    @router.api_route(f"{PREFIX}/datasets/{{dataset_id}}/{{version}}/files/{{name:path}}", methods=["GET", "HEAD"],
                      summary="下载发布文件（ETag 为 SHA-256）")
    def download(dataset_id: str, version: str, name: str, request: Request) -> Response:
        """One file of a release; 'latest' redirects to the pinned version so links can be kept."""
        item = releases.dataset(dataset_id)
        resolved = releases.resolve_version(dataset_id, version) if item else None
        if item is None or resolved is None or not safe_relative(name):
            raise _not_found()
        if version == "latest":
            return RedirectResponse(f"{PREFIX}/datasets/{quote(dataset_id)}/{quote(resolved)}/files/{quote(name)}", status_code=307)
        path = releases.file_path(dataset_id, resolved, name)
        entry = releases.file_entry(dataset_id, resolved, name)
        if path is None or entry is None:
            raise _not_found()
        return file_response(request, path, entry, download_name(item, resolved, name),
                             lambda: counter.hit(dataset_id, resolved, name))

    @router.get(f"{PREFIX}/datasets/{{dataset_id}}/{{version}}/{BULK_NAME}", summary="整版打包下载（zip，流式）")
    def bulk(dataset_id: str, version: str) -> Response:
        """Every file of a release with its manifest and signature, zipped while it is sent."""
        item = releases.dataset(dataset_id)
        resolved = releases.resolve_version(dataset_id, version) if item else None
        if item is None or resolved is None:
            raise _not_found()
        if version == "latest":
            return RedirectResponse(f"{PREFIX}/datasets/{quote(dataset_id)}/{quote(resolved)}/{BULK_NAME}", status_code=307)
        names = [f["name"] for f in releases.files(dataset_id, resolved)] + list(ALWAYS_SERVED)
        folder = f"{dataset_id}-{resolved}"
        members = [(f"{folder}/{n}", p) for n in names if (p := releases.file_path(dataset_id, resolved, n))]
        title = re.sub(r'[\\/:*?"<>|\s]+', "_", str(item.get("title") or dataset_id))
        headers = {"content-disposition": content_disposition(f"{title}_{resolved}.zip", f"{folder}.zip")}
        return StreamingResponse(stream_zip(members), media_type="application/zip", headers=headers,
                                 background=BackgroundTask(counter.hit, dataset_id, resolved, BULK_NAME))

    @router.get(f"{PREFIX}/keys.json", summary="验证发布签名的公钥")
    def keys(request: Request) -> Response:
        """The public keys that verify manifest signatures."""
        path = releases.keys_path()
        if path is None:
            raise _not_found("尚未发布公钥")
        entry = {"name": "keys.json", "sha256": _sha256_file(path), "media_type": "application/json"}
        response = file_response(request, path, entry, ("keys.json", "keys.json"), None)
        response.headers["content-disposition"] = "inline"
        response.headers["cache-control"] = "public, max-age=300"  # keys rotate: do not pin them for a year
        return response

    return router


def _toggle_url(q: str, filters: dict[str, list[str]], facet: str, value: str) -> str:
    """The browse URL with one facet value switched on or off (back to page one)."""
    params = [("q", q)] if q else []
    for name, values in filters.items():
        chosen = [v for v in values if v != value] if name == facet and value in values else list(values)
        if name == facet and value not in values:
            chosen.append(value)
        params += [(name, v) for v in chosen]
    return f"{PREFIX}/?{urlencode(params)}"


def create_portal(data_root: Path | str, engine: sa.Engine | None, config: PortalConfig = PortalConfig()) -> FastAPI:
    """The portal as one app: pages, downloads, keys.json and the CKAN Action API, behind PortalGuard."""
    from opendata.ckan import ckan_router

    releases = Releases(data_root)
    counter = DownloadCounter(engine)
    app = FastAPI(title=config.site_title, description="政务开放数据：检索、浏览、下载、校验；兼容 CKAN Action API。",
                  docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    app.state.releases = releases
    app.state.counter = counter
    app.include_router(portal_router(releases, counter, config))
    app.include_router(ckan_router(releases, counter, config))
    templates = _templates()

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        """The site root shows the catalogue."""
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """Chinese error pages for people, CKAN-shaped JSON under /api/."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"help": None, "success": False, "error": {"__type": "Not Found Error" if error.status_code == 404 else "Error",
                                                                          "message": str(error.detail)}},
                                status_code=error.status_code, headers=getattr(error, "headers", None))
        detail = error.detail if error.status_code != 404 or error.detail != "Not Found" else "页面不存在"
        body = templates.get_template("error.html").render(site_title=config.site_title, status=error.status_code, message=detail)
        return HTMLResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    app.add_middleware(PortalGuard, config=config)
    return app
