"""The three lists of the sharing catalogue: 责任清单, 需求清单, 负面清单.

- 责任清单: who must supply which resource and how fresh — each resource's supplying sources, the promised update
  frequency, and the measured freshness (newest data the hub holds, quality.timeliness; last collection, source_run).
- 需求清单: what consumers asked for (catalog_request) and whether it was met (approved with a live grant), with the
  provider's answer deadline and whether it is overdue.
- 负面清单: what may not be shared (不予共享 resources and items), with the legal basis.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from catalog import resources as catalogue
from catalog.access import LOCAL, list_grants, list_requests
from connectors.registry import get_source
from hub.models import SourceRun


def _last_run(connection: sa.Connection, source_id: str) -> dict[str, Any] | None:
    """The latest collection run of a source (status and times)."""
    row = connection.execute(sa.select(SourceRun.status, SourceRun.started_at, SourceRun.finished_at)
                             .where(SourceRun.source_id == source_id).order_by(SourceRun.id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def responsibility_list(engine: sa.Engine, at: datetime) -> list[dict[str, Any]]:
    """责任清单: one row per (resource, supplying source), with promised and measured freshness at `at`."""
    from quality.timeliness import newest_data

    rows: list[dict[str, Any]] = []
    newest_cache: dict[str, datetime | None] = {}
    with engine.connect() as connection:
        for resource in catalogue.all_resources():
            base = {"resource_code": resource["code"], "resource_name": resource["name"],
                    "sharing_type": resource["sharing_type"]}
            if not resource["sources"]:
                rows.append({**base, "provider_code": resource["provider_code"], "provider_name": resource["provider_name"],
                             "source_id": None, "promised": resource["update_frequency"], "promised_hours": None,
                             "newest": None, "age_hours": None, "fresh": None, "last_run": None,
                             "note": "开放数据集，随发布更新" if resource["kind"] == "open_dataset" else "暂无数据源供给，须落实责任部门"})
                continue
            for source_id in resource["sources"]:
                spec = get_source(source_id)
                delta, label = catalogue.promised_frequency(spec)
                if source_id not in newest_cache:
                    newest_cache[source_id] = newest_data(engine, source_id)
                newest = newest_cache[source_id]
                age = (at - newest) if newest else None
                fresh = None if newest is None or delta is None else age <= delta
                rows.append({**base, "provider_code": spec.department_code,
                             "provider_name": catalogue.department_name(spec.department_code), "source_id": source_id,
                             "promised": label, "promised_hours": round(delta.total_seconds() / 3600, 1) if delta else None,
                             "newest": newest, "age_hours": round(age.total_seconds() / 3600, 1) if age is not None else None,
                             "fresh": fresh, "last_run": _last_run(connection, source_id),
                             "note": "尚未采集到数据" if newest is None else ("按时更新" if fresh else "超过承诺更新周期" if fresh is False else "")})
    return rows


def demand_list(engine: sa.Engine, today: date) -> list[dict[str, Any]]:
    """需求清单: every request, whether it was met (approved and its grant live today) and whether it is overdue."""
    index = catalogue.resource_index()
    moment = datetime.combine(today, datetime.min.time(), LOCAL) + timedelta(hours=12)
    live = {g["request_id"] for g in list_grants(engine, active_at=moment) if g["request_id"] is not None}
    out = []
    for row in list_requests(engine):
        resource = index.get(row["resource_code"], {})
        labels = {i["name"]: i["label"] for i in resource.get("items", [])}
        status = row["status"]
        out.append({"request_id": row["id"], "consumer_code": row["consumer_code"],
                    "consumer_name": catalogue.department_name(row["consumer_code"]),
                    "resource_code": row["resource_code"], "resource_name": resource.get("name", row["resource_code"]),
                    "provider_code": resource.get("provider_code"), "fields": list(row["fields"]),
                    "field_labels": [labels.get(f, f) for f in row["fields"]], "purpose_codes": list(row["purpose_codes"]),
                    "purpose": row["purpose"], "requested_at": row["requested_at"], "deadline": row["deadline"],
                    "status": status, "met": status == "approved" and row["id"] in live,
                    "overdue": status == "pending" and row["deadline"] < today,
                    "answered_in_time": None if row["decided_at"] is None or status == "withdrawn"
                    else row["decided_at"].astimezone(LOCAL).date() <= row["deadline"],
                    "reason": row["reason"]})
    return out


def negative_list() -> list[dict[str, Any]]:
    """负面清单: resources and items that are 不予共享, each with its legal basis."""
    out = []
    for resource in catalogue.all_resources():
        if resource["sharing_type"] == "不予共享":
            out.append({"resource_code": resource["code"], "resource_name": resource["name"],
                        "provider_code": resource["provider_code"], "provider_name": resource["provider_name"],
                        "scope": "整个资源", "items": [i["label"] for i in resource["items"]],
                        "legal_basis": resource["legal_basis"]})
            continue
        never = [i["label"] for i in resource["items"] if i["sharing"] == "不予共享"]
        if never:
            out.append({"resource_code": resource["code"], "resource_name": resource["name"],
                        "provider_code": resource["provider_code"], "provider_name": resource["provider_name"],
                        "scope": "部分信息项", "items": never, "legal_basis": resource["legal_basis"]})
    return out


__all__ = ["demand_list", "negative_list", "responsibility_list"]
