"""Timeliness (及时性): is each source as fresh as its promised update frequency?

Freshness is the age, at the run's time, of the newest data the hub holds from a source: the high
watermark of its replication key when it has one (the newest record's own time), else the time of the
last collection that brought new rows. A source older than its promise gets a source-level defect (record
key '') on the library's timeliness rule, which a fresh collection resolves like any other defect.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from connectors.registry import sources_for
from hub.models import SourceRun
from quality import store
from quality.catalogue import load_catalogue

SOURCE_LEVEL_KEY = ""  # record key of a defect about a whole source
LOCAL = dt.timezone(dt.timedelta(hours=8))  # watermarks are the departments' local (Beijing) times


def _as_time(text: str | None) -> dt.datetime | None:
    """A watermark as an aware time (None when it is not a timestamp, e.g. a numeric key)."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("T", " "))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=LOCAL)


def newest_data(engine: sa.Engine, source_id: str) -> dt.datetime | None:
    """Time of the newest data the hub holds from a source (None if it never delivered a row)."""
    query = (sa.select(SourceRun).where(SourceRun.source_id == source_id, SourceRun.rows_extracted > 0)
             .order_by(SourceRun.id.desc()).limit(1))
    with sa.orm.Session(engine) as session:
        run = session.scalars(query).first()
    if run is None:
        return None
    return _as_time(run.watermark_to) or run.finished_at or run.started_at


def check_timeliness(engine: sa.Engine, library: str, run_time: dt.datetime) -> dict[str, Any]:
    """Measure every collected source of a library against its promise and keep its timeliness defect in step."""
    catalogue = load_catalogue(library)
    rule = next((r for r in catalogue.rules if r.check == "freshness"), None)
    out: dict[str, Any] = {}
    if rule is None:
        return out
    rules = {rule.id: store.RuleInfo(rule.name, rule.severity)}
    for spec in sources_for(library):
        promised = catalogue.profile(spec.id).update_frequency
        newest = newest_data(engine, spec.id)
        if promised is None or newest is None:
            out[spec.id] = {"newest": newest.isoformat() if newest else None, "promised": str(promised) if promised else None, "stale": None}
            continue
        age = run_time - newest
        stale = age > promised
        findings = []
        if stale:
            message = (f"最新数据时间 {newest.astimezone(LOCAL):%Y-%m-%d %H:%M}，距本次运行 {age.days} 天 {age.seconds // 3600} 小时，"
                       f"超过承诺更新周期 {promised.days} 天 {promised.seconds // 3600} 小时")
            findings.append(store.Finding(SOURCE_LEVEL_KEY, rule.id, "", rule.severity, rule.dimension, message))
        with engine.begin() as connection:
            store.record_defects(connection, source_id=spec.id, department=spec.department_code, run_id=f"timeliness@{run_time.isoformat()}",
                                 at=run_time, findings=findings, seen_keys=[SOURCE_LEVEL_KEY], rules=rules, checked_rules={rule.id})
        out[spec.id] = {"newest": newest.isoformat(), "age_hours": round(age.total_seconds() / 3600, 1),
                        "promised_hours": round(promised.total_seconds() / 3600, 1), "stale": stale}
    return out
