"""Record linkage of rows without a usable key: scoring properties, thresholds, the review queue, and precision and
recall on the linkage cases planted in a small simulated province (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from libraries import linkage
from libraries.linkage import (address_score, birth_score, company_name_score, decide, edit_similarity, name_score,
                               region_score, settings, total)

NAMES = st.text(alphabet="张王李赵伟芳娜敏静强磊军洋勇艳杰娟涛明超秀霞 　", max_size=6)
DATES = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31))
REGIONS = st.sampled_from(["420102", "420103", "420111", "420502", "422801", "110101", "42010", None])


@given(NAMES, NAMES)
def test_name_score_is_symmetric_bounded_and_exact_is_one(a: str, b: str) -> None:
    assert name_score(a, b) == name_score(b, a)
    assert 0.0 <= name_score(a, b) <= 1.0
    if a.strip():
        assert name_score(a, a) == 1.0


@given(NAMES, NAMES)
def test_company_and_address_scores_are_symmetric_and_bounded(a: str, b: str) -> None:
    for score in (company_name_score, address_score):
        assert score(a, b) == score(b, a) and 0.0 <= score(a, b) <= 1.0


@given(DATES, DATES)
def test_birth_score_is_symmetric_bounded_and_exact_is_one(a: dt.date, b: dt.date) -> None:
    assert birth_score(a, b) == birth_score(b, a)
    assert birth_score(a, b) in (0.0, 0.7, 1.0)
    assert birth_score(a, a) == 1.0 and birth_score(a.isoformat(), a) == 1.0


ANY_DATES = st.dates(min_value=dt.date(1, 1, 1))


@given(st.one_of(st.none(), ANY_DATES), st.lists(st.one_of(st.none(), ANY_DATES, DATES.map(lambda d: d.replace(day=min(d.month, 28)))), max_size=30))
def test_birth_scores_of_many_are_birth_score_of_each(row: dt.date | None, golden: list[dt.date | None]) -> None:
    """The vectorised birth-date scores equal birth_score pair by pair (transposed days, one digit, early years)."""
    numbers = np.array([linkage.date_number(g) for g in golden], dtype=np.int64)
    assert linkage.birth_scores(linkage.date_number(row), numbers).tolist() == [birth_score(row, g) for g in golden]


@given(REGIONS, REGIONS)
def test_region_score_is_symmetric_and_bounded(a: str | None, b: str | None) -> None:
    assert region_score(a, b) == region_score(b, a) and 0.0 <= region_score(a, b) <= 1.0


@given(st.fixed_dictionaries({k: st.floats(0, 1) for k in ("name", "birth_date", "region")}))
def test_total_is_a_weighted_mean_in_unit_interval(components: dict[str, float]) -> None:
    weights = settings("population").weights
    assert 0.0 <= total(components, weights) <= 1.0
    assert total({k: 1.0 for k in weights}, weights) == 1.0


def test_comparator_examples() -> None:
    assert birth_score(dt.date(1990, 3, 4), dt.date(1990, 4, 3)) == 0.7  # month and day transposed
    assert birth_score(dt.date(1990, 3, 4), dt.date(1991, 3, 4)) == 0.7  # one digit
    assert birth_score(dt.date(1990, 3, 4), dt.date(1985, 7, 20)) == 0.0
    assert region_score("420102", "420103") == 0.6 and region_score("420102", "422801") == 0.3
    assert company_name_score("武汉市江岸区鑫达贸易有限责任公司", "武汉市江岸区鑫达贸易有限公司 ") == 1.0
    assert company_name_score("武汉（鑫达）贸易有限公司", "武汉(鑫达)贸易有限公司") == 1.0
    assert address_score("湖北省武汉市江岸区一路1号", "武汉市江岸区 一路1") == 1.0
    assert edit_similarity("张伟", "张玮") == 0.5 and edit_similarity("", "张伟") == 0.0


def test_threshold_decisions() -> None:
    cfg = settings("population")
    assert decide(None, None, cfg) == "no_match"
    assert decide(cfg.review - 0.01, None, cfg) == "no_match"
    assert decide(cfg.review, None, cfg) == "review"
    assert decide(cfg.link, None, cfg) == "linked"
    assert decide(1.0, 1.0, cfg) == "review", "two equally good candidates are ambiguous"
    # A namesake (same name and county, other birth date) is never linked automatically.
    namesake = {"name": 1.0, "birth_date": 0.0, "region": 1.0}
    assert decide(total(namesake, cfg.weights), None, cfg) == "no_match"
    transposed = {"name": 1.0, "birth_date": 0.7, "region": 1.0}
    assert decide(total(transposed, cfg.weights), None, cfg) == "review"


# ---------------------------------------------------------------------------------------------------------
# A small world through collect → quality → load → linkage, on both databases.
# ---------------------------------------------------------------------------------------------------------

SOURCES = ("gongan_hjrk", "renshe_sbcb", "scjg_qydj", "scjg_gtgsh", "minzheng_shzz")


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """A world at scale 0.005 (generated once for the module)."""
    from world import generate

    folder = tmp_path_factory.mktemp("linkage") / "w"
    generate(out=folder, scale=0.005, seed=11)
    return folder


@pytest.fixture
def loaded(small_world, hub_settings, hub_db_url, monkeypatch):
    """The world's person and company sources collected, checked and loaded into a fresh hub database."""
    from connectors.collect import collect
    from connectors.connections import env_var_name
    from hub.db import engine_for, upgrade
    from hub.pipeline import world_connections
    from hub.settings import get_settings
    from libraries.load import load_pending

    monkeypatch.setenv("HUB_DATABASE_URL", hub_db_url)
    get_settings.cache_clear()
    upgrade(hub_db_url)
    for source_id, value in world_connections(small_world).items():
        monkeypatch.setenv(env_var_name(source_id), value)
    for source_id in SOURCES:
        collect(source_id, "run-1")
    load_pending("population")
    load_pending("legal_entity")
    return engine_for(hub_db_url)


def _quarantine_counts(engine: sa.Engine) -> dict[str, int]:
    """Quarantined rows by status."""
    from hub.models import QuarantinedRow

    t = QuarantinedRow.__table__
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all())


def test_index_pruned_to_the_rows_decides_as_the_full_index(loaded) -> None:
    """An Index given the rows to link keeps only the buckets they reach: every decision equals the full index's."""
    import json

    from hub.crypto import get_cipher

    for library in linkage.LIBRARIES:
        cfg = linkage.settings(library)
        rows = linkage.candidates_for_linkage(loaded, library, cfg)
        records = [json.loads(p) for p in get_cipher().decrypt_many([r.row_enc for r in rows])]
        assert records, library
        full, pruned = linkage.Index(loaded, library), linkage.Index(loaded, library, records)
        assert set(pruned.buckets) < set(full.buckets)
        assert all(pruned.buckets[b] == full.buckets[b] for b in pruned.buckets)
        assert [linkage.best_match(r, pruned, cfg) for r in records] == [linkage.best_match(r, full, cfg) for r in records]


@pytest.mark.parametrize("library, blanked", [("legal_entity", ("registered_address", "entity_name")),
                                              ("population", ("name", "birth_date", "household_region"))])
def test_top_two_is_that_of_scoring_every_candidate(loaded, library, blanked) -> None:
    """The vectorised search (rapidfuzz over a bucket, dates and regions per distinct value, exact scores near the
    top) finds the top two — scores, keys, components — that scoring every candidate with the library's components
    and sorting by (-score, key) finds; also for rows missing a compared value."""
    from hub.crypto import get_cipher

    cfg = linkage.settings(library)
    rows = linkage.candidates_for_linkage(loaded, library, cfg)
    records = [json.loads(p) for p in get_cipher().decrypt_many([r.row_enc for r in rows])]
    index = linkage.Index(loaded, library, records)
    variants = [{**r, field: value} for field in blanked for value in (None, "") for r in records[:10]]
    compared = 0
    for record in records + variants:
        ids = index.candidate_ids(record)
        everyone = sorted(((total(c, cfg.weights), str(index.records[i]["key"]), c)
                           for i in ids for c in [linkage.COMPONENTS[library](record, index.records[i])]),
                          key=lambda s: (-s[0], s[1]))[:2]
        assert linkage.top_two(record, index, ids, cfg) == everyone
        compared += len(ids)
    assert compared > 50  # candidates compared over the rows


def test_planted_cases_precision_recall_and_review(loaded, small_world) -> None:
    engine = loaded
    truth = pq.read_table(small_world / "linkage_truth.parquet")
    assert truth.num_rows > 0 and set(truth.column("library").to_pylist()) == {"population", "legal_entity"}
    before = _quarantine_counts(engine)

    counts = {library: linkage.link_pending(library, engine) for library in linkage.LIBRARIES}
    assert linkage.link_pending("population", engine)["linked"] == 0, "decided rows are not decided twice"
    result = linkage.evaluate(engine, small_world)
    for library in linkage.LIBRARIES:
        row = result[library]
        assert row["linkable"] > 0, (library, row)
        assert row["linked_wrong"] == 0, (library, row)
        assert row["precision"] == 1.0 and row["recall"] >= 0.8, (library, row)
    assert result["population"]["hard_negative_cases"] > 0

    # Conservation: every merged row left quarantine as released; nothing vanished.
    after = _quarantine_counts(engine)
    merged = sum(c["merged"] for c in counts.values())
    assert sum(after.values()) == sum(before.values())
    assert after.get("released", 0) - before.get("released", 0) == merged
    assert merged == sum(c["linked"] for c in counts.values())

    # The review queue: confirm one (merged, released, attributed), reject another (stays quarantined).
    queue = linkage.list_decisions(engine, status="review")
    if len(queue) < 2:
        queue = linkage.list_decisions(engine, status="no_match")
        queue = [q for q in queue if q["candidate_key"]]
    assert len(queue) >= 2, "the small world should leave something for a steward"
    confirmed = linkage.steward_decide(engine, queue[0]["id"], "confirm", "专员甲")
    rejected = linkage.steward_decide(engine, queue[1]["id"], "reject", "专员乙")
    assert confirmed["status"] == "confirmed" and rejected["status"] == "rejected"
    with pytest.raises(ValueError):
        linkage.steward_decide(engine, queue[1]["id"], "confirm", "专员乙")
    from hub.models import LinkageDecision, QuarantinedRow

    q = QuarantinedRow.__table__
    with engine.connect() as connection:
        decision = connection.execute(sa.select(LinkageDecision.__table__).where(
            LinkageDecision.__table__.c.id == queue[0]["id"])).first()
        assert decision.decided_by == "专员甲" and decision.decided_at is not None
        statuses = {r.source_key: r.status for r in connection.execute(sa.select(q.c.source_key, q.c.status).where(
            q.c.source_key.in_([queue[0]["source_key"], queue[1]["source_key"]]),
            q.c.source_id.in_([queue[0]["source_id"], queue[1]["source_id"]])))}
    assert statuses[queue[0]["source_key"]] == "released"
    assert statuses[queue[1]["source_key"]] == "quarantined"
    from libraries.overrides import verify_audit

    with engine.connect() as connection:
        actions = [r.action for r in connection.execute(sa.text("SELECT action FROM steward_audit ORDER BY id"))]
    assert actions[-2:] == ["linkage_confirm", "linkage_reject"]
    assert verify_audit(engine)["ok"]


def test_cli_registers_under_library(capsys) -> None:
    import argparse

    from libraries import linkage_cli

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    linkage_cli.register(subparsers)
    args = parser.parse_args(["library", "linkage", "confirm", "3", "--steward", "专员甲"])
    assert args.decision_id == 3 and args.action == "confirm"
    args = parser.parse_args(["library", "linkage", "evaluate", "--world", "/tmp/w"])
    assert args.handler is linkage_cli.run_evaluate


def test_world_writes_linkage_truth(small_world) -> None:
    truth = pq.read_table(small_world / "linkage_truth.parquet").to_pylist()
    manifest = pq.read_table(small_world / "manifest.parquet").to_pylist()
    covered = ("gongan_hjrk", "renshe_sbcb", "minzheng_hydj", "scjg_qydj", "scjg_gtgsh", "minzheng_shzz")
    keyed = {(m["source"], m["record_key"]) for m in manifest if m["source"] in covered
             and m["defect_kind"] in ("bad_check_char", "missing_required")
             and m["field"] in ("gmsfhm", "公民身份号码", "男方身份证号", "女方身份证号", "tyshxydm", "统一社会信用代码")}
    assert {(t["source"], t["record_key"]) for t in truth} == keyed
    from schemas.identifiers import check_resident_ids

    person_keys = [t["true_key"] for t in truth if t["library"] == "population"]
    assert all(check_resident_ids(__import__("numpy").array(person_keys, dtype=object)).valid)
    description = json.loads((small_world / "world.json").read_text(encoding="utf-8"))
    assert description["linkage_truth"]["cases"] == len(truth)


def test_decisions_are_written_in_bulk_and_a_new_decision_replaces_the_old(loaded) -> None:
    """record_decisions upserts by (library, source, source key): a row decided again keeps one decision, the newest."""
    from types import SimpleNamespace

    from hub.models import LinkageDecision

    engine, d = loaded, LinkageDecision.__table__
    counts = linkage.link_pending("population", engine)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(d).where(d.c.library == "population").order_by(d.c.id)).all()
    assert len(stored) == counts["linked"] + counts["review"] + counts["no_match"] > 1
    first, second = stored[0], stored[1]
    row = SimpleNamespace(source_id=first.source_id, run_id=first.run_id, source_key=first.source_key)
    again = {"candidate_key": "K-new", "score": 0.5, "components": {"name": 0.5}, "status": "review"}
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as connection:
        linkage.record_decisions(connection, "population", [(row, {**again, "status": "no_match"}), (row, again)], later, "专员丙")
    with engine.connect() as connection:
        mine = connection.execute(sa.select(d).where(d.c.source_id == first.source_id, d.c.source_key == first.source_key)).all()
        untouched = connection.execute(sa.select(d).where(d.c.id == second.id)).one()
    assert len(mine) == 1 and mine[0].id == first.id
    assert (mine[0].candidate_key, mine[0].status, mine[0].components, mine[0].decided_by) == ("K-new", "review", {"name": 0.5}, "专员丙")
    assert untouched == second


def test_a_row_linked_to_a_person_only_its_own_source_knows_keeps_the_persons_id_number(loaded) -> None:
    """A source holds one claim per person: a key-less 公安 row linked to a person only 公安 claims (by another
    record) replaces that claim. The ID number comes with the link, so the golden record keeps it (at scale 2 the
    merge failed on person.id_number_enc NOT NULL)."""
    import json

    from hub.crypto import get_cipher
    from hub.models import Person

    engine, cfg = loaded, linkage.settings("population")
    row = next(r for r in linkage.candidates_for_linkage(engine, "population", cfg) if r.source_id == "gongan_hjrk")
    with engine.connect() as connection:
        only_gongan = connection.execute(sa.text(
            "SELECT entity_key FROM library_claim WHERE library = 'population' AND deleted = false GROUP BY entity_key "
            "HAVING COUNT(DISTINCT source_id) = 1 AND MIN(source_id) = 'gongan_hjrk' ORDER BY entity_key LIMIT 1")).scalar_one()
        before = connection.execute(sa.select(Person.id_number_enc).where(Person.person_id == only_gongan)).scalar_one()
    merged = linkage.merge_linked(engine, "population", row.source_id, row.run_id, {row.source_key: only_gongan},
                                  dt.datetime.now(dt.UTC))
    assert merged == 1
    with engine.connect() as connection:
        after = connection.execute(sa.select(Person.id_number_enc, Person.name).where(Person.person_id == only_gongan)).one()
    cipher = get_cipher()
    assert cipher.decrypt(after.id_number_enc) == cipher.decrypt(before)
    record = json.loads(cipher.decrypt(row.row_enc))
    assert after.name == record.get("name")  # the linked row's fields were merged
