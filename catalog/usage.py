"""Usage statistics of shared resources (共享使用率) from the audit log, and an SVG chart of them.

Counts come straight from `audit_entry` (GROUP BY in the database). 共享使用率 of a department = the share of the
resources open to it (无条件共享 plus those it holds a live grant for) that it actually used in the period.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

import sqlalchemy as sa

from catalog import resources as catalogue
from catalog.access import list_grants
from hub.models import AuditEntry

FONT = "'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif"  # as quality/svg.py


def usage(engine: sa.Engine, start: datetime, end: datetime) -> dict[str, Any]:
    """Calls per resource, per department and per (department, resource) in [start, end), and each department's usage rate."""
    entry = AuditEntry.__table__
    allowed = sa.func.sum(sa.case((entry.c.outcome == "allowed", 1), else_=0))
    query = (sa.select(entry.c.consumer_code, entry.c.resource_code, sa.func.count().label("calls"), allowed.label("allowed"))
             .where(entry.c.at >= start, entry.c.at < end).group_by(entry.c.consumer_code, entry.c.resource_code))
    with engine.connect() as connection:
        matrix = [{"consumer_code": r.consumer_code, "resource_code": r.resource_code, "calls": int(r.calls),
                   "allowed": int(r.allowed or 0), "refused": int(r.calls) - int(r.allowed or 0)}
                  for r in connection.execute(query)]
    index = catalogue.resource_index()
    unconditional = {code for code, r in index.items() if r["sharing_type"] == "无条件共享"}
    granted: dict[str, set[str]] = {}
    for grant in list_grants(engine, active_at=end):
        granted.setdefault(grant["consumer_code"], set()).add(grant["resource_code"])
    by_resource: dict[str, dict[str, Any]] = {}
    by_consumer: dict[str, dict[str, Any]] = {}
    for cell in matrix:
        code = cell["resource_code"] or ""
        res = by_resource.setdefault(code, {"resource_code": code, "resource_name": index.get(code, {}).get("name", code),
                                            "calls": 0, "allowed": 0, "refused": 0, "consumers": set()})
        con = by_consumer.setdefault(cell["consumer_code"], {"consumer_code": cell["consumer_code"],
                                                             "consumer_name": catalogue.department_name(cell["consumer_code"]),
                                                             "calls": 0, "allowed": 0, "refused": 0, "resources": set()})
        for target in (res, con):
            for key in ("calls", "allowed", "refused"):
                target[key] += cell[key]
        res["consumers"].add(cell["consumer_code"])
        if cell["allowed"]:
            con["resources"].add(code)
    for res in by_resource.values():
        res["consumers"] = len(res["consumers"])
    for code, con in by_consumer.items():
        available = unconditional | granted.get(code, set())
        used = con.pop("resources") & available
        con["resources_used"], con["resources_available"] = len(used), len(available)
        con["usage_rate"] = round(100.0 * len(used) / len(available), 1) if available else 0.0
    return {"start": start, "end": end, "matrix": matrix,
            "by_resource": sorted(by_resource.values(), key=lambda r: (-r["calls"], r["resource_code"])),
            "by_consumer": sorted(by_consumer.values(), key=lambda r: (-r["calls"], r["consumer_code"]))}


def usage_chart(rows: list[dict[str, Any]], title: str, label_key: str = "resource_name") -> str:
    """Horizontal stacked bars (allowed green, refused red) of call counts, one per row, in the scorecards' style."""
    row_h, left, right, top = 24, 230, 90, 40
    width = 760
    height = top + row_h * max(len(rows), 1) + 40
    span = width - left - right
    peak = max((r["calls"] for r in rows), default=0) or 1
    body = [f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{height - 36}" stroke="#999"/>']
    for tick in range(0, 101, 25):
        x = left + span * tick / 100
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 36}" stroke="#eee"/>')
        body.append(f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle" fill="#666">{peak * tick / 100:g}</text>')
    for i, r in enumerate(rows):
        y = top + i * row_h
        ok = span * r["allowed"] / peak
        bad = span * r["refused"] / peak
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(str(r.get(label_key, "")))}</text>')
        body.append(f'<rect x="{left}" y="{y + 4}" width="{ok:.1f}" height="{row_h - 8}" fill="#2ca02c"/>')
        body.append(f'<rect x="{left + ok:.1f}" y="{y + 4}" width="{bad:.1f}" height="{row_h - 8}" fill="#d62728"/>')
        body.append(f'<text x="{left + ok + bad + 6:.1f}" y="{y + 15}">{r["calls"]}次</text>')
    body.append(f'<text x="{left}" y="{height - 4}" fill="#2ca02c">■ 允许</text>'
                f'<text x="{left + 60}" y="{height - 4}" fill="#d62728">■ 拒绝</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="{FONT}" font-size="12">\n<title>{escape(title)}</title>\n'
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>\n'
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>\n'
            + "\n".join(body) + "\n</svg>\n")


__all__ = ["usage", "usage_chart"]
