"""The deferred merge (claims of every pending run first, each touched subject recomputed once) gives the library the
per-run merge gives, with one version per subject instead of one per source run; a recompute cut short and run again
gives what an uninterrupted one gives. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
import sqlalchemy as sa

import libraries.merge as merge
from hub.crypto import DecryptionError, get_cipher
from hub.lineage import expand
from hub.models import Base
from libraries.spec import Claims
from schemas.identifiers import resident_id_check_char

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
SOURCES = ("gongan_hjrk", "minzheng_hydj", "renshe_sbcb")
SUBJECTS = 80
TABLES = ("library_claim", "golden_version", "person", "quality_conflict", "merge_pending")


def rid(sequence: int) -> str:
    body = f"42010219900{sequence:03d}011"[:17]
    return body + resident_id_check_char(body)


@pytest.fixture
def engine(hub_engine):
    return hub_engine


def source_runs() -> list[tuple[str, dt.datetime, Claims]]:
    """Three sources' first runs about overlapping subjects (disagreeing on some fields), one day apart."""
    cipher = get_cipher()
    rng = random.Random(11)
    runs = []
    for step, source in enumerate(SOURCES):
        claims = Claims()
        for n, i in enumerate(sorted(rng.sample(range(SUBJECTS), 60))):
            fields = {"id_number": rid(i), "name": rng.choice(["张伟", "李娜", None]), "phone": rng.choice(["13800000000", None]),
                      "address": rng.choice(["武汉市江岸区一路1号", "武汉市江岸区二路2号"]),
                      "marital_status": rng.choice(["10", "20"]), "birth_date": dt.date(1990, 1, 2)}
            valid = T0 + dt.timedelta(hours=rng.randrange(-30, 30)) if rng.random() < 0.8 else None
            claims.add(cipher.index_hash(rid(i)), fields, valid, n, source_key=f"{source}-{i}")
        runs.append((source, T0 + dt.timedelta(days=step), claims))
    return runs


def load(engine, *, defer: bool) -> None:
    for source, at, claims in source_runs():
        merge.merge_claims(engine, "population", claims, source_id=source, run_id=f"{source}-1", extracted_at=at,
                           ruleset_version="rs1", defer=defer)
    if defer:
        merge.recompute_pending(engine, "population")


def rows(engine, name: str) -> list[dict]:
    """A table's rows without row ids, encrypted values decrypted."""
    cipher = get_cipher()
    with engine.connect() as connection:
        return [{k: cipher.decrypt(bytes(v)) if isinstance(v, (bytes, memoryview)) else v
                 for k, v in row._mapping.items() if k != "id"}
                for row in connection.execute(sa.select(Base.metadata.tables[name]))]


def library(engine) -> dict[str, list[str]]:
    """What a reader of the library sees: current rows, each subject's current version, open conflicts, claims —
    without the bookkeeping of which run wrote them (the per-run merge writes a subject up to three times)."""
    bookkeeping = {"run_id", "updated_at", "source_id", "recorded_at", "version", "first_run_id", "last_run_id"}

    def plain(row: dict, keep: set[str] = frozenset()) -> str:
        return json.dumps({k: v for k, v in row.items() if k not in bookkeeping or k in keep}, sort_keys=True, default=str,
                          ensure_ascii=False)

    return {"person": sorted(plain(r) for r in rows(engine, "person")),
            # a version whose winning claims give no valid time is valid from its record time: the latest run that
            # touched it in the deferred merge, the run that made that version in the per-run merge
            "current": sorted(plain({**r, "valid_from": r["valid_from"] if sourced(r) else "record time"})
                              for r in rows(engine, "golden_version") if r["superseded_at"] is None),
            "conflicts": sorted(plain(r, {"source_id"}) for r in rows(engine, "quality_conflict") if r["status"] == "open"),
            "claims": sorted(plain(r, {"source_id"}) for r in rows(engine, "library_claim"))}


def sourced(version: dict) -> bool:
    """Whether a version's valid time comes from its sources (else it is its record time)."""
    return any(line.get("valid_from") for line in expand(version["lineage"]).values())


def wipe(engine) -> None:
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):  # children before parents (foreign keys)
            if table.name in TABLES or table.name.startswith("quality_"):
                connection.execute(sa.delete(table))


def test_deferred_merge_gives_the_per_run_library_with_one_version_per_subject(engine) -> None:
    load(engine, defer=False)
    per_run = library(engine)
    per_run_versions = len(rows(engine, "golden_version"))
    wipe(engine)
    load(engine, defer=True)
    deferred = library(engine)
    assert deferred == per_run
    persons = len(deferred["person"])
    assert persons > 70 and deferred["conflicts"], "the scenario must overlap and disagree"
    assert len(rows(engine, "golden_version")) == persons < per_run_versions
    assert rows(engine, "merge_pending") == []
    # each subject is recorded as of the latest run that touched it
    latest = {r["entity_key"]: r for r in rows(engine, "golden_version")}
    person = {r["person_id"]: r for r in rows(engine, "person")}
    claims_by_key: dict[str, list[dict]] = {}
    for claim in rows(engine, "library_claim"):
        claims_by_key.setdefault(claim["entity_key"], []).append(claim)
    for key, version in latest.items():
        last = max(claims_by_key[key], key=lambda c: c["extracted_at"])
        assert (version["run_id"], version["recorded_at"]) == (last["run_id"], last["extracted_at"])
        assert (person[key]["source_id"], person[key]["run_id"]) == (last["source_id"], last["run_id"])


def test_a_recompute_cut_short_finishes_on_the_next_call(engine, monkeypatch) -> None:
    load(engine, defer=True)
    clean = {name: sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in rows(engine, name))
             for name in TABLES}
    wipe(engine)
    monkeypatch.setattr(merge, "BATCH_KEYS", 7)  # batches that cut a subject's pending rows (one per source) apart
    recompute, calls = merge.recompute, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:
            raise RuntimeError("crash")
        return recompute(*args, **kwargs)

    monkeypatch.setattr(merge, "recompute", failing)
    for source, at, claims in source_runs():
        merge.merge_claims(engine, "population", claims, source_id=source, run_id=f"{source}-1", extracted_at=at,
                           ruleset_version="rs1", defer=True)
    assert merge.pending_runs_of(engine, "population") == {s: {f"{s}-1"} for s in SOURCES}
    with pytest.raises(RuntimeError, match="crash"):
        merge.recompute_pending(engine, "population")
    left = len(rows(engine, "merge_pending"))
    assert 0 < left < sum(len(c) for _, _, c in source_runs()), "the batches before the crash are done, the rest wait"
    counts = merge.recompute_pending(engine, "population")
    assert counts["keys_touched"] > 0 and rows(engine, "merge_pending") == []
    after = {name: sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in rows(engine, name))
             for name in TABLES}
    assert after == clean


def test_recompute_workers_give_the_library_one_process_gives(engine, monkeypatch) -> None:
    """Plans made in spawned worker processes (reading the claims, survivorship, encryption) and written here in key
    order, a batch a transaction, give the rows one process gives."""
    get_cipher.cache_clear()  # the key ring of this test's data root, which the workers read too
    load(engine, defer=True)  # 180 pending rows: under PARALLEL_FROM, so one process
    alone = {name: sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in rows(engine, name))
             for name in TABLES}
    wipe(engine)
    monkeypatch.setattr(merge, "BATCH_KEYS", 7)  # 12 batches, each cutting subjects' pending rows apart
    monkeypatch.setattr(merge, "PARALLEL_FROM", 0)
    written, in_workers = [], merge._written_from_workers
    monkeypatch.setattr(merge, "_written_from_workers", lambda *a: (written.append(1), (yield from in_workers(*a)))[1])
    for source, at, claims in source_runs():
        merge.merge_claims(engine, "population", claims, source_id=source, run_id=f"{source}-1", extracted_at=at,
                           ruleset_version="rs1", defer=True)
    counts = merge.recompute_pending(engine, "population", workers=2)
    assert written == [1] and counts["keys_touched"] == len(rows(engine, "person")) > 0
    together = {name: sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in rows(engine, name))
                for name in TABLES}
    assert together == alone


def test_a_failing_worker_leaves_its_batch_pending(engine, monkeypatch) -> None:
    """A plan that fails in a worker stops the recompute with its error; the batches written before it are cleared,
    the rest stay pending for the next call."""
    get_cipher.cache_clear()
    monkeypatch.setattr(merge, "BATCH_KEYS", 7)
    monkeypatch.setattr(merge, "PARALLEL_FROM", 0)
    for source, at, claims in source_runs():
        merge.merge_claims(engine, "population", claims, source_id=source, run_id=f"{source}-1", extracted_at=at,
                           ruleset_version="rs1", defer=True)
    pending = len(rows(engine, "merge_pending"))
    with engine.begin() as connection:  # the last subject's claims: no worker can decrypt them
        connection.execute(sa.text("UPDATE library_claim SET payload_enc = :junk WHERE entity_key = "
                                   "(SELECT max(entity_key) FROM merge_pending)"), {"junk": b"not a ciphertext"})
    with pytest.raises(DecryptionError):
        merge.recompute_pending(engine, "population", workers=2)
    assert 0 < len(rows(engine, "merge_pending")) < pending


@pytest.mark.parametrize(("library", "runs", "waiting", "expected"), [
    # population, three sources: every run deferred, one recompute at the end
    ("population", ["gongan_hjrk/a", "minzheng_hydj/b", "renshe_sbcb/c"], {},
     ["load gongan_hjrk/a deferred", "load minzheng_hydj/b deferred", "load renshe_sbcb/c deferred", "recompute"]),
    # a second run of a deferred source: the first one's subjects are recomputed before it is stored
    ("population", ["gongan_hjrk/a", "renshe_sbcb/c", "gongan_hjrk/d"], {},
     ["load gongan_hjrk/a deferred", "load renshe_sbcb/c deferred", "recompute", "load gongan_hjrk/d deferred", "recompute"]),
    # one source only: nothing to share, each run merged on its own
    ("population", ["gongan_hjrk/a", "gongan_hjrk/d"], {}, ["load gongan_hjrk/a", "load gongan_hjrk/d", "recompute"]),
    # licences: one source per subject, never deferred
    ("licence", ["licence_scjg/a", "licence_zrzy/b"], {}, ["load licence_scjg/a", "load licence_zrzy/b", "recompute"]),
    # the rerun of a load cut short after 公安's run: deferred as the uninterrupted load was
    ("population", ["renshe_sbcb/c"], {"gongan_hjrk": {"a"}}, ["load renshe_sbcb/c deferred", "recompute"]),
    # runs large enough for the recompute's worker processes: deferred whatever the library
    ("licence", ["licence_scjg/a=80000", "licence_zrzy/b=30000"], {},
     ["load licence_scjg/a deferred", "load licence_zrzy/b deferred", "recompute"]),
    ("population", ["gongan_hjrk/a=60000", "gongan_hjrk/d=60000"], {},
     ["load gongan_hjrk/a deferred", "recompute", "load gongan_hjrk/d deferred", "recompute"]),
])
def test_load_pending_defers_where_sources_share_subjects_or_runs_are_large(monkeypatch, library, runs, waiting,
                                                                              expected) -> None:
    """The merge DAG's load plan, with the stores and recomputes recorded instead of run (runs: source/run=rows,
    100 rows if not said; two recompute workers)."""
    from types import SimpleNamespace

    import libraries.load as load

    done: list[str] = []
    pending = [SimpleNamespace(source_id=r.split("/")[0], run_id=r.split("/")[1].split("=")[0],
                               rows_extracted=int(r.split("=")[1]) if "=" in r else 100) for r in runs]
    monkeypatch.setattr(load, "recompute_workers", lambda engine: 2)
    monkeypatch.setattr("quality.stage.check_pending", lambda *args, **kwargs: {})
    monkeypatch.setattr(load, "engine_for", lambda url: None)
    monkeypatch.setattr(load, "pending_runs", lambda engine, name: pending)
    monkeypatch.setattr(load, "pending_runs_of", lambda engine, name: {k: set(v) for k, v in waiting.items()})
    monkeypatch.setattr(load, "load_run", lambda engine, run, defer=False: done.append(
        f"load {run.source_id}/{run.run_id}" + (" deferred" if defer else "")) or {"rows": 0})
    monkeypatch.setattr(load, "recompute_pending", lambda engine, name: done.append("recompute") or {"keys_touched": 0})
    monkeypatch.setattr(load, "load_released", lambda engine, name: 0)
    load.load_pending(library)
    assert done == expected
