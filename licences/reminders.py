"""Expiry reminders to licence holders (90, 30 and 7 days before), and marking expired licences.

到期提醒：每个证照每个提前天数只提醒一次（licence_reminder 唯一约束），重跑不重复；过期证照标记为已过期。

The reminder table is an outbox: `raise_reminders` writes rows (pending), `deliver_reminders` hands
pending rows to a channel and marks them sent. A licence first seen inside a nearer threshold gets
only that reminder; the farther ones are recorded as `superseded` (never sent, never raised again).
Delivery is at least once: a channel crash after sending but before the commit resends that batch —
channels should be idempotent by reminder id (the default JSON-lines channel writes the id).
Holders are named without clear personal IDs: persons by their HMAC person id and a masked name.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub.crypto import mask_name
from hub.models import Licence, LicenceEvent, LicenceReminder
from licences import status

THRESHOLDS: tuple[int, ...] = (90, 30, 7)
_licence = Licence.__table__
_reminder = LicenceReminder.__table__
_event = LicenceEvent.__table__


@dataclass(frozen=True)
class ReminderMessage:
    """What a channel sends: which licence expires when, to which holder (no clear personal ID)."""

    reminder_id: int
    licence_id: str
    licence_name: str
    holder_name: str
    holder_key: str  # USCC of an organisation, HMAC person id of a natural person
    holder_key_type: str  # 001 统一社会信用代码 / person_id
    due_date: str
    threshold_days: int
    text: str


class ReminderChannel(Protocol):
    """Where reminders go (SMS gateway, 政务服务 app message, e-mail…); must accept a batch."""

    name: str

    def send(self, messages: list[ReminderMessage]) -> None:
        """Deliver the messages, or raise (then none of the batch is marked sent)."""
        ...


class JsonLinesChannel:
    """Default channel: appends one JSON object a line to <data_root>/licences/reminders/outbox.jsonl."""

    name = "jsonl"

    def __init__(self, folder: Path | None = None) -> None:
        """Write under `folder` (default <data_root>/licences/reminders)."""
        if folder is None:
            from hub.settings import get_settings

            folder = get_settings().data_root / "licences" / "reminders"
        self.folder = Path(folder)

    def send(self, messages: list[ReminderMessage]) -> None:
        """Append the batch in one write and fsync it."""
        if not messages:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(asdict(m), ensure_ascii=False) + "\n" for m in messages)
        with open(self.folder / "outbox.jsonl", "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())


def _insert_ignore(engine: sa.Engine) -> Any:
    """INSERT … ON CONFLICT DO NOTHING on the reminder table for the engine's dialect."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[engine.dialect.name]
    return dialect.insert(_reminder).on_conflict_do_nothing(index_elements=["licence_id", "threshold_days"])


def raise_reminders(engine: sa.Engine, today: date, now: datetime, channel: str = JsonLinesChannel.name,
                    thresholds: tuple[int, ...] = THRESHOLDS) -> dict[str, int]:
    """Write a pending reminder for each licence in force whose expiry is within a threshold (once per threshold)."""
    ordered = sorted(thresholds)
    horizon = today + timedelta(days=ordered[-1])
    query = (sa.select(_licence.c.licence_id, _licence.c.valid_until)
             .where(_licence.c.status.in_(status.VALID_FORMS), _licence.c.valid_until.is_not(None),
                    _licence.c.valid_until >= today, _licence.c.valid_until <= horizon))
    with engine.connect() as connection:
        due = connection.execute(query).all()
        known = set(connection.execute(
            sa.select(_reminder.c.licence_id, _reminder.c.threshold_days)
            .where(_reminder.c.due_date >= today, _reminder.c.due_date <= horizon)).all())
    rows = []
    for licence_id, valid_until in due:
        days_left = (valid_until - today).days
        applicable = [t for t in ordered if days_left <= t]
        nearest = applicable[0]
        for threshold in applicable:
            if (licence_id, threshold) not in known:
                rows.append({"licence_id": licence_id, "threshold_days": threshold, "due_date": valid_until,
                             "channel": channel, "status": "pending" if threshold == nearest else "superseded",
                             "created_at": now, "sent_at": None})
    if rows:
        with engine.begin() as connection:
            for start in range(0, len(rows), 5_000):
                connection.execute(_insert_ignore(engine), rows[start:start + 5_000])
    return {"licences_due": len(due), "raised": sum(r["status"] == "pending" for r in rows),
            "superseded": sum(r["status"] == "superseded" for r in rows)}


def _message(row: Any) -> ReminderMessage:
    """The message of one pending reminder row joined with its licence."""
    person = row.holder_person_id is not None and row.holder_code is None
    holder = mask_name(row.holder_name) if person else row.holder_name
    text = (f"您的《{row.licence_name}》（证照标识 {row.licence_id}）将于 {row.due_date:%Y年%m月%d日} 到期"
            f"（提前 {row.threshold_days} 天提醒），请及时办理延续或换证。")
    return ReminderMessage(row.id, row.licence_id, row.licence_name, holder,
                           row.holder_person_id if person else row.holder_code, "person_id" if person else "001",
                           row.due_date.isoformat(), row.threshold_days, text)


def deliver_reminders(engine: sa.Engine, channel: ReminderChannel, now: datetime, batch: int = 1_000) -> dict[str, int]:
    """Send every pending reminder through the channel (batches), marking each batch sent after the channel accepts it."""
    sent = 0
    query = (sa.select(_reminder.c.id, _reminder.c.licence_id, _reminder.c.threshold_days, _reminder.c.due_date,
                       _licence.c.licence_name, _licence.c.holder_name, _licence.c.holder_code, _licence.c.holder_person_id)
             .join(_licence, _licence.c.licence_id == _reminder.c.licence_id)
             .where(_reminder.c.status == "pending").order_by(_reminder.c.id).limit(batch))
    while True:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            break
        channel.send([_message(r) for r in rows])
        with engine.begin() as connection:
            connection.execute(_reminder.update().where(_reminder.c.id.in_([r.id for r in rows]),
                                                        _reminder.c.status == "pending")
                               .values(status="sent", sent_at=now, channel=channel.name))
        sent += len(rows)
    return {"sent": sent}


def mark_expired(engine: sa.Engine, today: date, now: datetime) -> dict[str, int]:
    """Licences in force whose validity ended before today become 已过期 (status code 5), each with an expire event."""
    where = sa.and_(_licence.c.status.in_(status.VALID_FORMS), _licence.c.valid_until.is_not(None),
                    _licence.c.valid_until < today)
    with engine.begin() as connection:
        expired = connection.execute(sa.select(_licence.c.licence_id, _licence.c.status).where(where)).all()
        if expired:
            connection.execute(_event.insert(), [
                {"licence_id": lid, "event_type": "expire", "reason": "有效期届满", "actor": "system", "at": now,
                 "old_status": old, "new_status": status.EXPIRED} for lid, old in expired])
            connection.execute(_licence.update().where(where).values(status=status.EXPIRED))
    return {"expired": len(expired)}


def run_daily(engine: sa.Engine, today: date, now: datetime, channel: ReminderChannel | None = None) -> dict[str, int]:
    """The daily job: mark expired licences, raise due reminders, deliver them."""
    channel = channel or JsonLinesChannel()
    return {**mark_expired(engine, today, now), **raise_reminders(engine, today, now, channel.name),
            **deliver_reminders(engine, channel, now)}
