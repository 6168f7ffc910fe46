"""Paginated JSON APIs over HTTP (httpx): Bearer token, bounded retries, Retry-After, incremental by a query parameter.

The API answers `GET <endpoint>?page=N&page_size=M[&<since_param>=<watermark>]` with
`{"total": …, "page": …, "page_size": …, "data": [ {…}, … ]}`. Paging stops at a short page or when
`total` records have been read. Values land as text like file drops (numbers and booleans as JSON,
nested values as JSON text); keys the landing schema does not know land in `_extra` as JSON, never lost.
The landing schema is the registry's `columns` if declared, else the keys of the extract's first page,
fetched by prepare(since) before the landing starts and used again as the first page of the extract.

Errors: 5xx answers and transport errors are retried with exponential backoff (bounded), 429 waits for
Retry-After (bounded), 401/403 and other 4xx fail at once. A failure is a SourceError naming the source and
the cause; the token is only ever in the Authorization header, never in a message or a log line.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pyarrow as pa

from connectors.base import SourceError, Watermark
from connectors.files import json_text, json_type, text_field

log = logging.getLogger(__name__)

LINEAGE = pa.schema([pa.field("_page", pa.int64()), pa.field("_error", pa.string()), pa.field("_extra", pa.string())])


@dataclass(frozen=True)
class HttpOptions:
    """How to page through an API (registry keys of the same names)."""

    endpoint: str = "/"
    page_size: int = 500
    page_param: str = "page"
    page_size_param: str = "page_size"
    first_page: int = 1
    since_param: str | None = None  # e.g. updated_since: sent with the last high watermark
    records_key: str = "data"
    total_key: str = "total"
    columns: tuple[str, ...] = ()  # declared landing columns; empty = learn them from a first page
    max_attempts: int = 5  # per request, for 5xx and transport errors
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    max_rate_limit_waits: int = 10  # per request, for 429
    max_retry_after_seconds: float = 120.0
    timeout_seconds: float = 30.0


class HttpConnector:
    """Reads one paginated JSON API, incrementally by a query parameter when the registry names one."""

    def __init__(
        self,
        source_id: str,
        base_url: str,
        primary_key: tuple[str, ...],
        replication_key: str | None = None,
        token: str | None = None,
        options: HttpOptions = HttpOptions(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source_id = source_id
        self.base_url = base_url
        self.primary_key = primary_key
        self.replication_key = replication_key
        self.options = options
        self.watermark = Watermark()
        self._token = token
        self._transport = transport
        self._sleep = sleep
        self._schema: pa.Schema | None = None
        self._since: str | None = None
        self._first: dict[str, Any] | None = None
        self.stats = {"pages": 0, "requests": 0, "retries": 0, "rate_limited": 0, "records": 0,
                      "skipped_not_newer": 0, "skipped_after_window": 0, "unexpected_keys": []}

    def __repr__(self) -> str:
        return f"HttpConnector({self.source_id!r}, {self.base_url!r})"  # never the token

    def prepare(self, since: Any | None = None) -> None:
        """Fetch the first page of the extract `since` describes, so the schema reflects what will land."""
        self._since = None if since is None else str(since)
        self._first, self._schema = None, None
        if not self.options.columns:
            with self._client() as client:
                self._first = self._get(client, self._params(self.options.first_page, self._since))

    def arrow_schema(self) -> pa.Schema:
        """The declared columns, else the keys of the extract's first page (as text), plus _page, _error and _extra."""
        if self._schema is None:
            if not self.options.columns and self._first is None:
                self.prepare(self._since)
            columns = list(self.options.columns)
            types: dict[str, set[str]] = {}
            for record in [] if columns else self._first[self.options.records_key]:
                if isinstance(record, dict):
                    columns += [k for k in record if k not in columns and k not in LINEAGE.names]
                    for key, value in record.items():
                        if json_type(value) is not None:
                            types.setdefault(key, set()).add(json_type(value))
            self._schema = pa.schema([text_field(c, types.get(c)) for c in columns] + list(LINEAGE))
        return self._schema

    def read_batches(self, since: Any | None = None, batch_rows: int = 50_000, until: Any | None = None) -> Iterator[pa.RecordBatch]:
        """Page through the records changed after `since` (and not after `until`, for a backfill); afterwards self.watermark holds the range read."""
        schema = self.arrow_schema()
        columns = [f.name for f in schema if f.name not in LINEAGE.names]
        options = self.options
        since_text = None if since is None else str(since)
        until_text = None if until is None else str(until)
        # The page fetched by prepare() is used once, and only for the same extract.
        first = self._first if since_text == self._since else None
        self._first = None
        high = since_text
        page, read, previous = options.first_page, 0, None
        pending: list[tuple[int, Any]] = []
        with self._client() as client:
            while True:
                if page == options.first_page and first is not None:
                    body = first
                else:
                    body = self._get(client, self._params(page, since_text))
                records = body[options.records_key]
                self.stats["pages"] += 1
                signature = json.dumps(records[:1] + records[-1:], sort_keys=True, default=str)
                if records and signature == previous:
                    raise SourceError(f"数据源 {self.source_id}: 翻页无效（第 {page} 页与上一页相同）pagination does not advance")
                previous = signature
                for record in records:
                    key = json_text(record.get(self.replication_key)) if self.replication_key and isinstance(record, dict) else None
                    # The API may treat the filter as >=: a record at the watermark was landed last time.
                    if since_text is not None and key is not None and key <= since_text:
                        self.stats["skipped_not_newer"] += 1
                        continue
                    if until_text is not None and key is not None and key > until_text:
                        self.stats["skipped_after_window"] += 1  # the API filters only from below
                        continue
                    if key is not None and (high is None or key > high):
                        high = key
                    pending.append((page, record))
                read += len(records)
                if len(pending) >= batch_rows:
                    yield self._batch(pending, columns, schema)
                    pending = []
                total = body.get(options.total_key)
                if isinstance(total, int) and read >= total:
                    break
                if len(records) < options.page_size:
                    if isinstance(total, int) and read < total:  # a short page before the end: records went missing
                        raise SourceError(
                            f"数据源 {self.source_id}: 分页不完整 incomplete page {page}: 已读 {read} 条，接口称共 {total} 条 "
                            f"read {read} of {total} records; 本次不落地 nothing is landed")
                    break
                page += 1
        if pending:
            yield self._batch(pending, columns, schema)
        self.stats["records"] = read
        self.watermark = Watermark(low=since_text, high=high)

    def _params(self, page: int, since: str | None) -> dict[str, Any]:
        """Query parameters of one page (the watermark only when the registry names the parameter)."""
        params: dict[str, Any] = {self.options.page_param: page, self.options.page_size_param: self.options.page_size}
        if self.options.since_param and since is not None:
            params[self.options.since_param] = since
        return params

    def details(self) -> dict[str, Any]:
        """Pages, requests, retries and unexpected keys of the extract (for the landing record)."""
        return dict(self.stats)

    def _batch(self, pending: list[tuple[int, Any]], columns: list[str], schema: pa.Schema) -> pa.RecordBatch:
        """Records as one batch of text columns; keys outside the schema go to _extra as JSON."""
        known = set(columns)
        values: dict[str, list[str | None]] = {c: [] for c in columns}
        pages, errors, extras = [], [], []
        unexpected: set[str] = set(self.stats["unexpected_keys"])
        for page, record in pending:
            pages.append(page)
            if not isinstance(record, dict):
                for column in columns:
                    values[column].append(None)
                errors.append(f"不是 JSON 对象 not a JSON object: {type(record).__name__}")
                extras.append(json.dumps(record, ensure_ascii=False))
                continue
            for column in columns:
                values[column].append(json_text(record.get(column)))
            extra = {k: v for k, v in record.items() if k not in known}
            unexpected.update(extra)
            errors.append(None)
            extras.append(json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else None)
        self.stats["unexpected_keys"] = sorted(unexpected)
        arrays = [pa.array(values[c], pa.string()) for c in columns]
        arrays += [pa.array(pages, pa.int64()), pa.array(errors, pa.string()), pa.array(extras, pa.string())]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _client(self) -> httpx.Client:
        """An httpx client for the API; the token travels only in the Authorization header."""
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=self.options.timeout_seconds,
                            transport=self._transport, follow_redirects=True)

    def _get(self, client: httpx.Client, params: dict[str, Any]) -> dict[str, Any]:
        """One page, retried on 5xx and transport errors (backoff) and on 429 (Retry-After), both bounded."""
        options, attempts, waits = self.options, 0, 0
        where = f"{options.endpoint} {options.page_param}={params.get(options.page_param)}"
        while True:
            attempts += 1
            self.stats["requests"] += 1
            try:
                response = client.get(options.endpoint, params=params)
            except httpx.TransportError as error:
                cause = f"网络错误 transport error {type(error).__name__}"
                self._retry_or_fail(attempts, cause, where)
                continue
            status = response.status_code
            if status == 429:
                waits += 1
                self.stats["rate_limited"] += 1
                if waits > options.max_rate_limit_waits:
                    raise SourceError(f"数据源 {self.source_id}: 接口持续限流 still rate limited (HTTP 429) after {waits - 1} waits at {where}")
                self._sleep(self._retry_after(response, waits))
                attempts -= 1  # waiting as told is not a failed attempt
                continue
            if status >= 500:
                self._retry_or_fail(attempts, f"服务端错误 server error HTTP {status}", where)
                continue
            if status in (401, 403):
                raise SourceError(f"数据源 {self.source_id}: 认证失败 authentication refused (HTTP {status}); "
                                  "请检查连接中的令牌 check the connection's token")
            if status >= 400:
                raise SourceError(f"数据源 {self.source_id}: 请求被拒绝 request refused (HTTP {status}) at {where}")
            return self._body(response, where)

    def _body(self, response: httpx.Response, where: str) -> dict[str, Any]:
        """The decoded page, checked for the records list."""
        try:
            body = response.json()
        except ValueError as error:
            raise SourceError(f"数据源 {self.source_id}: 响应不是 JSON response is not JSON at {where}") from error
        if not isinstance(body, dict) or not isinstance(body.get(self.options.records_key), list):
            key = self.options.records_key
            raise SourceError(f"数据源 {self.source_id}: 响应缺少 {key!r} 数组 response has no {key!r} list at {where}")
        return body

    def _retry_or_fail(self, attempts: int, cause: str, where: str) -> None:
        """Sleep before the next attempt, or raise once the attempts are used up."""
        if attempts >= self.options.max_attempts:
            raise SourceError(f"数据源 {self.source_id}: 重试 {attempts} 次后仍失败 failed after {attempts} attempts at {where}: {cause}")
        delay = min(self.options.max_backoff_seconds, self.options.backoff_seconds * 2 ** (attempts - 1))
        log.warning("数据源 %s: %s at %s; %.1f s 后重试 retrying", self.source_id, cause, where, delay)
        self.stats["retries"] += 1
        self._sleep(delay)

    def _retry_after(self, response: httpx.Response, waits: int) -> float:
        """Seconds to wait after a 429: Retry-After (seconds or HTTP date), else backoff; capped."""
        header = response.headers.get("Retry-After", "").strip()
        delay: float | None = None
        if header.isdigit():
            delay = float(header)
        elif header:
            try:
                when = email.utils.parsedate_to_datetime(header)
                delay = (when - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError):
                delay = None
        if delay is None:
            delay = self.options.backoff_seconds * 2 ** (waits - 1)
        return max(0.0, min(delay, self.options.max_retry_after_seconds))


def base_url(connection: dict[str, Any]) -> str:
    """The API's base URL from an Airflow http connection (schema is the URL scheme, as in Airflow's HttpHook)."""
    host = (connection.get("host") or "").rstrip("/")
    if not host:
        raise ValueError("http connection has no host")
    if "://" in host:
        return host
    scheme = connection.get("schema") or "http"
    port = connection.get("port")
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def http_connector(spec, connection: dict[str, Any]) -> HttpConnector:
    """The connector of a registered http source (spec.options: endpoint, page_size, since_param, columns, …)."""
    try:
        url = base_url(connection)
    except ValueError as error:
        raise SourceError(f"数据源 {spec.id}: 连接 {spec.connection} 未给出主机 {error}") from error
    known = {name for name in HttpOptions.__dataclass_fields__}
    given = {k: v for k, v in spec.options.items() if k in known}
    if "columns" in given:
        given["columns"] = tuple(given["columns"])
    try:
        options = HttpOptions(**given)
    except TypeError as error:
        raise SourceError(f"数据源 {spec.id}: 登记项参数错误 bad http options: {error}") from error
    return HttpConnector(spec.id, url, spec.primary_key, spec.replication_key, token=connection.get("password"), options=options)
