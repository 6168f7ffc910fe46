"""Feedback tickets as a department steward and a hub steward work them (推送-核查-反馈).

Life cycle: open → acknowledged → corrected | disputed → verified. The hub opens a ticket when a run finds
defects (grouped by source and rule) and verifies it by itself when the corrected records arrive
(quality.store). A department steward acknowledges, says corrected, or disputes — only on their own
department's tickets. A disputed ticket waits for a hub steward's decision: accepted, the defects are
waived (kept, flagged, never raised again for those records) and rows held only for them are released;
rejected, the ticket goes back to the department as open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.models import QualityDefect, QualityTicket, QualityTicketEvent, QuarantinedRow
from quality.store import ACTIVE_TICKET, add_event, refresh_tickets

TRANSITIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "acknowledge": (frozenset({"open"}), "acknowledged", "部门已签收"),
    "correct": (frozenset({"open", "acknowledged"}), "corrected", "部门称已在源系统更正，待下次采集核验"),
    "dispute": (frozenset({"open", "acknowledged", "corrected"}), "disputed", "部门提出异议，待枢纽数据专员裁定"),
}
STATUS_TEXT = {"open": "待处理", "acknowledged": "已签收", "corrected": "已更正待核验", "disputed": "有异议待裁定", "verified": "已核验关闭"}


class TicketError(ValueError):
    """A ticket operation that cannot be done; the message says why, in Chinese."""


def _ticket(connection: sa.Connection, ticket_id: int, department: str | None) -> Any:
    """One ticket row, checked to belong to the department (None = the hub's own steward, who sees every ticket)."""
    table = QualityTicket.__table__
    row = connection.execute(sa.select(table).where(table.c.id == ticket_id)).first()
    if row is None or (department is not None and row.department_code != department):
        # Another department's ticket is reported as absent: its existence is not this department's business.
        raise TicketError(f"工单 {ticket_id} 不存在或不属于本部门 {department}")
    return row


def list_tickets(engine: sa.Engine, department: str, status: str | None = None, include_closed: bool = False) -> list[dict[str, Any]]:
    """A department's queue: its tickets (active ones unless include_closed), newest first."""
    table = QualityTicket.__table__
    query = sa.select(table).where(table.c.department_code == department)
    if status:
        query = query.where(table.c.status == status)
    elif not include_closed:
        query = query.where(table.c.status.in_(ACTIVE_TICKET))
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(table.c.id.desc())).all()
    return [_ticket_dict(row) for row in rows]


def _ticket_dict(row: Any) -> dict[str, Any]:
    """A ticket as JSON-ready data."""
    return {"id": row.id, "department": row.department_code, "source": row.source_id, "rule": row.rule_id,
            "rule_name": row.rule_name, "severity": row.severity, "status": row.status, "status_text": STATUS_TEXT[row.status],
            "defects_open": row.defects_open, "defects_total": row.defects_total, "opened_run": row.opened_run_id,
            "opened_at": row.opened_at.isoformat(), "updated_at": row.updated_at.isoformat(),
            "closed_at": row.closed_at.isoformat() if row.closed_at else None, "note": row.steward_note,
            "decision": row.decision}


def ticket_detail(engine: sa.Engine, ticket_id: int, department: str | None, limit: int = 200) -> dict[str, Any]:
    """A ticket with its defects (up to limit) and its history."""
    defects = QualityDefect.__table__
    events = QualityTicketEvent.__table__
    with engine.connect() as connection:
        ticket = _ticket(connection, ticket_id, department)
        rows = connection.execute(sa.select(defects).where(defects.c.ticket_id == ticket_id)
                                  .order_by(defects.c.status, defects.c.source_key).limit(limit)).all()
        history = connection.execute(sa.select(events).where(events.c.ticket_id == ticket_id).order_by(events.c.id)).all()
    return {**_ticket_dict(ticket),
            "defects": [{"record": d.source_key, "field": d.field, "message": d.message, "status": d.status,
                         "disputed": d.disputed, "first_run": d.first_run_id, "resolved_run": d.resolved_run_id} for d in rows],
            "history": [{"at": e.at.isoformat(), "actor": e.actor, "from": e.from_status, "to": e.to_status, "note": e.note}
                        for e in history]}


def transition(engine: sa.Engine, ticket_id: int, department: str, action: str, actor: str, at: datetime,
               note: str | None = None) -> dict[str, Any]:
    """A department steward's step on their own ticket: acknowledge, correct or dispute."""
    if action not in TRANSITIONS:
        raise TicketError(f"未知操作 {action}；可用：{'、'.join(TRANSITIONS)}")
    allowed, target, text = TRANSITIONS[action]
    table = QualityTicket.__table__
    with engine.begin() as connection:
        ticket = _ticket(connection, ticket_id, department)
        if ticket.status not in allowed:
            raise TicketError(f"工单 {ticket_id} 当前状态为“{STATUS_TEXT[ticket.status]}”，不能执行“{action}”")
        if action == "dispute" and not (note or "").strip():
            raise TicketError("提出异议须说明理由（--note）")
        connection.execute(sa.update(table).where(table.c.id == ticket_id).values(
            status=target, updated_at=at, steward_note=note or ticket.steward_note))
        if action == "dispute":
            defects = QualityDefect.__table__
            connection.execute(sa.update(defects).where(defects.c.ticket_id == ticket_id, defects.c.status == "open").values(disputed=True))
        add_event(connection, ticket_id, at, actor, ticket.status, target, note or text)
    return ticket_detail(engine, ticket_id, department, limit=0)


def decide(engine: sa.Engine, ticket_id: int, accept: bool, actor: str, at: datetime, note: str | None = None) -> dict[str, Any]:
    """A hub steward's decision on a disputed ticket (accept: waive the defects; reject: back to the department)."""
    tickets = QualityTicket.__table__
    defects = QualityDefect.__table__
    with engine.begin() as connection:
        ticket = _ticket(connection, ticket_id, None)
        if ticket.status != "disputed":
            raise TicketError(f"工单 {ticket_id} 当前状态为“{STATUS_TEXT[ticket.status]}”，只有“有异议待裁定”的工单可以裁定")
        if not accept:
            connection.execute(sa.update(defects).where(defects.c.ticket_id == ticket_id).values(disputed=False))
            connection.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(
                status="open", decision="rejected", decided_by=actor, decided_at=at, updated_at=at))
            add_event(connection, ticket_id, at, actor, "disputed", "open", note or "异议驳回，请部门更正")
            return {"ticket": ticket_id, "decision": "rejected", "released_rows": 0}
        waived = connection.execute(sa.select(defects.c.source_key).where(defects.c.ticket_id == ticket_id, defects.c.status == "open")).scalars().all()
        connection.execute(sa.update(defects).where(defects.c.ticket_id == ticket_id, defects.c.status == "open").values(status="waived"))
        released = _release_waived(connection, ticket.source_id, sorted(set(waived)))
        connection.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(
            decision="accepted", decided_by=actor, decided_at=at, updated_at=at))
        add_event(connection, ticket_id, at, actor, "disputed", "disputed", note or "异议成立，问题豁免")
        refresh_tickets(connection, [ticket_id], at, f"decision@{at.isoformat()}")
        if connection.execute(sa.select(tickets.c.status).where(tickets.c.id == ticket_id)).scalar_one() != "verified":
            connection.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(status="verified", closed_at=at))
            add_event(connection, ticket_id, at, actor, "disputed", "verified", "裁定采纳，工单关闭")
    return {"ticket": ticket_id, "decision": "accepted", "waived_defects": len(waived), "released_rows": released}


def _release_waived(connection: sa.Connection, source_id: str, keys: list[str]) -> int:
    """Mark held rows for release when every error defect still holding them is waived (the next load takes them)."""
    defects = QualityDefect.__table__
    quarantine = QuarantinedRow.__table__
    released = 0
    for key in keys:
        blocking = connection.execute(sa.select(sa.func.count()).select_from(defects).where(
            defects.c.source_id == source_id, defects.c.source_key == key, defects.c.severity == "error",
            defects.c.status == "open")).scalar_one()
        if blocking == 0:
            released += connection.execute(sa.update(quarantine).where(
                quarantine.c.source_id == source_id, quarantine.c.source_key == key, quarantine.c.status == "quarantined")
                .values(status="release_pending")).rowcount
    return released
