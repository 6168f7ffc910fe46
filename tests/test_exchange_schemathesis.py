"""Property-based fuzzing of the exchange API from its own OpenAPI spec (schemathesis): never a server error."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from catalog import access
from catalog.audit import close_writers
from hub import db
from hub.crypto import get_cipher, new_keyring_document
from test_exchange_api import T0


@pytest.fixture
def exchange_app(tmp_path, hub_settings, monkeypatch):
    """The exchange app on a fresh SQLite database with one department and its key."""
    monkeypatch.setenv("HUB_KEYRING", json.dumps(new_keyring_document()))
    get_cipher.cache_clear()
    access.reset_caches()
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db.upgrade(url)
    engine = db.engine_for(url)
    access.register_consumer(engine, "renshe", T0)
    key = access.issue_key(engine, "renshe", T0)[1]
    from exchange.api import create_exchange_api

    yield create_exchange_api(engine), key
    close_writers()
    access.reset_caches()
    get_cipher.cache_clear()
    db.dispose_engines()


def test_no_server_errors_anywhere_in_the_spec(exchange_app) -> None:
    """Every operation with generated bodies, paths, queries and headers: status < 500 and a JSON error body."""
    app, key = exchange_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case) -> None:
            headers = dict(case.headers or {})
            headers.setdefault("X-API-Key", key)
            case.headers = headers
            response = case.call()
            if response.status_code >= 500:
                failures.append((op.label, response.status_code, response.text[:200]))

        check()
    assert not failures, failures[:5]
