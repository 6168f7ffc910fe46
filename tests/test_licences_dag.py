"""The licence_reminders DAG runs with dag.test(): expired licences marked, reminders written once across reruns."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from hub.db import engine_for, upgrade
from hub.models import Licence, LicenceReminder
from test_licences_seal import ISSUER_A, company_row, licence_id

pytestmark = pytest.mark.airflow

RUN = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def test_licence_reminders_dag(airflow_session, tmp_path, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from hub.airflow_env import DAGS_FOLDER
    from hub.settings import get_settings

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    get_settings.cache_clear()
    upgrade(url)
    today = RUN.date()
    expiring = licence_id(ISSUER_A, "D0000001")
    expired = licence_id(ISSUER_A, "D0000002")
    with engine_for(url).begin() as connection:
        connection.execute(Licence.__table__.insert(), [
            company_row(licence_id=expiring, valid_until=today + timedelta(days=20)),
            company_row(licence_id=expired, valid_until=today - timedelta(days=10)),
        ])

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["licence_reminders"]
    assert [t.task_id for t in dag.topological_sort()] == ["mark_expired", "raise_reminders", "deliver_reminders"]
    assert dag.tags and dag.doc_md and "提醒" in dag.doc_md
    for _ in range(2):  # a rerun raises nothing new
        state = dag.test(logical_date=RUN).state
        assert str(getattr(state, "value", state)) == "success"

    with engine_for(url).connect() as connection:
        statuses = dict(connection.execute(sa.select(Licence.licence_id, Licence.status)).all())
        rows = connection.execute(sa.select(LicenceReminder.licence_id, LicenceReminder.threshold_days,
                                            LicenceReminder.status)).all()
    assert statuses == {expiring: "1", expired: "5"}
    assert sorted(rows) == [(expiring, 30, "sent"), (expiring, 90, "superseded")]
    outbox = get_settings().data_root / "licences" / "reminders" / "outbox.jsonl"
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    assert [(m["licence_id"], m["threshold_days"]) for m in lines] == [(expiring, 30)]
    assert date.fromisoformat(lines[0]["due_date"]) == today + timedelta(days=20)
