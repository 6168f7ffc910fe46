"""The HTTP JSON API connector against a small threaded API on 127.0.0.1: paging, auth, retries, 429, incremental."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pytest

from connectors.base import SourceError
from connectors.http import HttpConnector, HttpOptions, base_url

TOKEN = "s3cret-court-token"
ENDPOINT = "/api/v1/sxbzxr"


class FakeApi:
    """A paginated JSON API like the court's: Bearer token, page/page_size, updated_since, fault modes."""

    def __init__(self, token: str = TOKEN, key: str = "updated_at") -> None:
        self.token, self.key = token, key
        self.records: list[dict] = []
        self.fault: str | None = None  # "500": always fail; "429": rate limit the next `limited` requests
        self.limited = 0
        self.retry_after = "0"
        self.requests: list[dict] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                status, body, headers = api.answer(self.path, self.headers.get("Authorization"))
                payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict, dict]:
        """Status, JSON body and headers for one request."""
        url = urlparse(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append(query)
        if authorization != f"Bearer {self.token}":
            return 401, {"error": "unauthorized"}, {}
        if self.fault == "500":
            return 500, {"error": "internal"}, {}
        if self.fault == "429" and self.limited > 0:
            self.limited -= 1
            return 429, {"error": "slow down"}, {"Retry-After": self.retry_after}
        if url.path != ENDPOINT:
            return 404, {"error": "not found"}, {}
        page, size = int(query.get("page", 1)), int(query.get("page_size", 20))
        since = query.get("updated_since")
        rows = sorted((r for r in self.records if since is None or str(r.get(self.key)) > since),
                      key=lambda r: (str(r.get(self.key)), str(r.get("id"))))
        return 200, {"total": len(rows), "page": page, "page_size": size, "data": rows[(page - 1) * size : page * size]}, {}

    def __enter__(self) -> "FakeApi":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def court_records(start: int, count: int, day: int = 1) -> list[dict]:
    """Dishonest-debtor records with ids start.. and one update day."""
    return [
        {"id": f"A{i:05d}", "被执行人姓名": f"被执行人{i}", "执行法院": "武汉市中级人民法院", "标的金额": i * 100,
         "已履行": i % 2 == 0, "updated_at": f"2026-01-{day:02d}T08:00:{i % 60:02d}"}
        for i in range(start, start + count)
    ]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as server:
        yield server


def _connector(api: FakeApi, sleeps: list[float] | None = None, token: str | None = TOKEN, **options) -> HttpConnector:
    defaults = {"endpoint": ENDPOINT, "page_size": 7, "since_param": "updated_since", "backoff_seconds": 0.5, "max_attempts": 3}
    return HttpConnector("t_court", api.url, ("id",), "updated_at", token=token, options=HttpOptions(**(defaults | options)),
                         sleep=(sleeps.append if sleeps is not None else lambda s: None))


def _read(connector: HttpConnector, since=None, batch_rows: int = 50_000) -> pa.Table:
    return pa.Table.from_batches(list(connector.read_batches(since=since, batch_rows=batch_rows)), schema=connector.arrow_schema())


def test_pages_until_short_page_and_lands_text(api: FakeApi) -> None:
    api.records = court_records(1, 30)
    connector = _connector(api)
    table = _read(connector, batch_rows=10)
    assert table.num_rows == 30 and sorted(table.column("id").to_pylist()) == [f"A{i:05d}" for i in range(1, 31)]
    assert table.column("标的金额")[0].as_py() == "100" and table.column("已履行")[1].as_py() == "true"
    assert table.column("_page").to_pylist()[-1] == 5  # 30 rows / 7 per page: 5 pages, the last one short
    assert connector.watermark.high == "2026-01-01T08:00:30" and connector.watermark.low is None
    data_pages = api.requests  # the page that gave the schema is not fetched twice
    assert [r["page"] for r in data_pages] == ["1", "2", "3", "4", "5"]


def test_stops_when_total_is_reached(api: FakeApi) -> None:
    api.records = court_records(1, 14)  # two full pages: `total` says there is no third
    connector = _connector(api)
    assert _read(connector).num_rows == 14
    assert [r["page"] for r in api.requests] == ["1", "2"]


def test_incremental_read_sends_the_watermark_and_gets_only_new_records(api: FakeApi) -> None:
    api.records = court_records(1, 10, day=1)
    first = _connector(api)
    _read(first)
    api.records += court_records(11, 5, day=2)
    second = _connector(api)
    table = _read(second, since=first.watermark.high)
    assert sorted(table.column("id").to_pylist()) == [f"A{i:05d}" for i in range(11, 16)]
    assert api.requests[-1]["updated_since"] == first.watermark.high
    assert second.watermark.low == first.watermark.high and second.watermark.high.startswith("2026-01-02")


def test_inclusive_server_filter_does_not_land_the_boundary_record_twice(api: FakeApi) -> None:
    api.records = court_records(1, 3, day=1)
    since = api.records[-1]["updated_at"]
    original = api.answer
    api.answer = lambda path, auth: original(path.replace("updated_since=", "updated_since=0"), auth)  # server ignores it
    table = _read(_connector(api), since=since)
    assert table.num_rows == 0


def test_unknown_keys_land_in_extra(api: FakeApi) -> None:
    api.records = court_records(1, 3)
    connector = _connector(api, columns=("id", "被执行人姓名"))
    table = _read(connector)
    extra = json.loads(table.column("_extra")[0].as_py())
    assert extra["执行法院"] == "武汉市中级人民法院" and "updated_at" in connector.details()["unexpected_keys"]


def test_missing_or_wrong_token_fails_clearly_without_the_token(api: FakeApi) -> None:
    api.records = court_records(1, 3)
    with pytest.raises(SourceError, match="t_court.*401") as failure:
        _connector(api, token="wrong-" + TOKEN).arrow_schema()
    assert TOKEN not in str(failure.value)
    with pytest.raises(SourceError, match="401"):
        _connector(api, token=None).arrow_schema()


def test_server_errors_are_retried_with_backoff_then_fail_clearly(api: FakeApi) -> None:
    api.records = court_records(1, 3)
    api.fault = "500"
    sleeps: list[float] = []
    connector = _connector(api, sleeps=sleeps, max_attempts=4)
    with pytest.raises(SourceError) as failure:
        connector.arrow_schema()
    message = str(failure.value)
    assert "t_court" in message and "HTTP 500" in message and "4" in message and TOKEN not in message
    assert sleeps == [0.5, 1.0, 2.0] and len(api.requests) == 4


def test_a_transient_server_error_is_survived(api: FakeApi) -> None:
    api.records = court_records(1, 10)
    original, calls = api.answer, []

    def flaky(path, auth):
        calls.append(path)
        return (503, {}, {}) if len(calls) == 2 else original(path, auth)

    api.answer = flaky
    connector = _connector(api)
    assert _read(connector).num_rows == 10 and connector.stats["retries"] == 1


def test_rate_limit_waits_for_retry_after(api: FakeApi) -> None:
    api.records = court_records(1, 5)
    api.fault, api.limited, api.retry_after = "429", 2, "7"
    sleeps: list[float] = []
    connector = _connector(api, sleeps=sleeps, max_attempts=1)  # 429s are not failed attempts
    assert _read(connector).num_rows == 5
    assert sleeps == [7.0, 7.0] and connector.stats["rate_limited"] == 2


def test_endless_rate_limit_fails_clearly(api: FakeApi) -> None:
    api.fault, api.limited = "429", 100
    with pytest.raises(SourceError, match="429"):
        _connector(api, max_rate_limit_waits=3).arrow_schema()


def test_unreachable_api_is_retried_then_named() -> None:
    connector = HttpConnector("t_gone", "http://127.0.0.1:1", ("id",), options=HttpOptions(endpoint=ENDPOINT, max_attempts=2),
                              token=TOKEN, sleep=lambda s: None)
    with pytest.raises(SourceError, match="t_gone.*ConnectError") as failure:
        connector.arrow_schema()
    assert TOKEN not in str(failure.value) and TOKEN not in repr(connector)


def test_a_response_that_is_not_the_expected_json_is_named(api: FakeApi) -> None:
    api.answer = lambda path, auth: (200, {"rows": []}, {})
    with pytest.raises(SourceError, match="'data'"):
        _connector(api).arrow_schema()


def test_pagination_that_does_not_advance_is_stopped(api: FakeApi) -> None:
    api.records = court_records(1, 7)
    original = api.answer
    api.answer = lambda path, auth: (lambda s, b, h: (s, b | {"total": None}, h))(*original(path.replace("page=2", "page=1"), auth))
    with pytest.raises(SourceError, match="pagination"):
        _read(_connector(api))


def test_base_url_follows_airflow_http_connections() -> None:
    assert base_url({"host": "127.0.0.1", "port": 8080, "schema": "http"}) == "http://127.0.0.1:8080"
    assert base_url({"host": "api.court.example", "schema": "https"}) == "https://api.court.example"
    assert base_url({"host": "http://10.0.0.1:9000/"}) == "http://10.0.0.1:9000"


def test_world_connections_give_the_court_api_a_token_and_the_served_port(tmp_path) -> None:
    from hub.pipeline import world_connections
    from world.config import WorldConfig

    (tmp_path / "world.json").write_text(json.dumps({"seed": 7, "sources": [
        {"id": "court_sxbzxr", "kind": "http", "location": ENDPOINT}]}), encoding="utf-8")
    assert world_connections(tmp_path) == {}  # no API served: no connection (hub run skips the source)
    connection = json.loads(world_connections(tmp_path, "http://127.0.0.1:8123")["court_sxbzxr"])
    assert connection == {"conn_type": "http", "host": "127.0.0.1", "port": 8123, "schema": "http",
                          "password": WorldConfig(seed=7).token}


def test_world_api_serves_while_the_pipeline_runs(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from hub.pipeline import world_api
    from world import server

    events = []
    handle = SimpleNamespace(url="http://127.0.0.1:9999", stop=lambda: events.append("stopped"))
    monkeypatch.setattr(server, "start_in_thread", lambda world_dir: events.append(("started", world_dir)) or handle)
    with world_api(tmp_path, progress=events.append) as url:
        assert url == "http://127.0.0.1:9999"
    assert events[0] == ("started", tmp_path) and events[-1] == "stopped"