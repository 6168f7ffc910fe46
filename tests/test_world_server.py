"""The court API of a world: token, pagination, incremental filter, rate limit, simulated faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from world import generate
from world.server import ENDPOINT, start, start_in_thread


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world (its court list has about 70 records)."""
    out = tmp_path_factory.mktemp("world") / "w"
    generate(out, scale=0.003, seed=4, workers=1)
    return out


@pytest.fixture(scope="module")
def token(world: Path) -> str:
    """The world's bearer token."""
    return json.loads((world / "world.json").read_text(encoding="utf-8"))["court_token"]


@pytest.fixture
def api(world: Path) -> Iterator[str]:
    """A server on a free port with a generous rate limit."""
    url, stop = start_in_thread(world, rate=1000, burst=1000)
    try:
        yield url
    finally:
        stop()


def _records(world: Path) -> list[dict]:
    """The court records as stored."""
    return [json.loads(line) for line in (world / "court" / "sxbzxr.jsonl").read_text(encoding="utf-8").splitlines()]


def test_requires_the_token(api: str) -> None:
    """401 without or with a wrong token."""
    assert httpx.get(api + ENDPOINT).status_code == 401
    answer = httpx.get(api + ENDPOINT, headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 401 and "error" in answer.json()
    assert httpx.get(api + "/health").status_code == 200


def test_pagination_covers_every_row_once(api: str, world: Path, token: str) -> None:
    """Paging with any size returns each record exactly once, oldest update first."""
    stored = _records(world)
    for size in (7, 50, 1000):
        seen, page = [], 1
        while True:
            body = httpx.get(api + ENDPOINT, params={"page": page, "page_size": size},
                             headers={"Authorization": f"Bearer {token}"}).json()
            assert body["total"] == len(stored) and body["page"] == page and body["page_size"] == size
            seen.extend(body["data"])
            if len(body["data"]) < size:
                break
            page += 1
        assert sorted(r["id"] for r in seen) == sorted(r["id"] for r in stored)
        assert len({r["id"] for r in seen}) == len(seen)
        stamps = [r["updatedAt"] for r in seen]
        assert stamps == sorted(stamps)
    assert seen == sorted(stored, key=lambda r: (r["updatedAt"], r["id"]))


def test_updated_since_filters(api: str, world: Path, token: str) -> None:
    """updated_since keeps records updated at or after the given time; bad values answer 400."""
    stored = _records(world)
    since = sorted(r["updatedAt"] for r in stored)[len(stored) // 2]
    body = httpx.get(api + ENDPOINT, params={"page": 1, "page_size": 1000, "updated_since": since},
                     headers={"Authorization": f"Bearer {token}"}).json()
    assert body["total"] == sum(r["updatedAt"] >= since for r in stored)
    assert all(r["updatedAt"] >= since for r in body["data"])
    bad = httpx.get(api + ENDPOINT, params={"updated_since": "yesterday"}, headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400
    assert httpx.get(api + ENDPOINT, params={"page_size": 0}, headers={"Authorization": f"Bearer {token}"}).status_code == 400


def test_rate_limit_answers_429_with_retry_after(world: Path, token: str) -> None:
    """Beyond the burst the API answers 429 and says how long to wait."""
    handle = start(world, rate=0.5, burst=3)
    try:
        statuses = []
        for _ in range(6):
            answer = httpx.get(handle.url + ENDPOINT, headers={"Authorization": f"Bearer {token}"})
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    finally:
        handle.stop()


def test_fault_mode_fails_first_attempts_only(world: Path, token: str) -> None:
    """Faulty pages answer 500 for their first request(s), then succeed: a retrying connector gets everything."""
    url, stop = start_in_thread(world, rate=1000, burst=1000, fault_rate=1.0)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        params = {"page": 2, "page_size": 10}
        assert httpx.get(url + ENDPOINT, params=params, headers=headers).status_code == 500
        assert httpx.get(url + ENDPOINT, params=params, headers=headers).status_code == 200
        assert httpx.get(url + ENDPOINT, params={"page": 3, "page_size": 10}, headers=headers).status_code == 500
    finally:
        stop()
    url, stop = start_in_thread(world, rate=1000, burst=1000, fault_rate=0.5, fault_attempts=2)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        first = [httpx.get(url + ENDPOINT, params={"page": p, "page_size": 5}, headers=headers).status_code
                 for p in range(1, 21)]
        assert 500 in first and 200 in first  # some pages fail, others do not
        failing = [p for p, status in zip(range(1, 21), first) if status == 500]
        again = [httpx.get(url + ENDPOINT, params={"page": p, "page_size": 5}, headers=headers).status_code for p in failing]
        assert set(again) == {500}
        third = [httpx.get(url + ENDPOINT, params={"page": p, "page_size": 5}, headers=headers).status_code for p in failing]
        assert set(third) == {200}
    finally:
        stop()
