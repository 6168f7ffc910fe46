"""The exchange audit log: every call, allowed or refused, append-only and tamper-evident.

共享调用审计：每次调用（允许或拒绝）记录部门、经办人、用途、事项编码/办件编号、主体 HMAC、返回的信息项、
结果与时间；只追加，哈希链加签名检查点防篡改；本人可查“谁在何时为何查看了我的数据”。

Design
- One hash chain per writer process (`audit_chain`): entries `(chain_id, seq)` with seq 1, 2, 3…, each
  `entry_hash = SHA-256(prev_hash ‖ canonical JSON of the entry)`, so processes never contend for a sequence.
- The chain's durable head (`head_seq`, `head_hash`) is updated in the same transaction as its entries, so a
  deleted tail is visible; signed checkpoints (Ed25519, owner `HUB-AUDIT` in licence_signing_key, private key
  encrypted under the hub key ring by licences/keys.py) pin the head every `checkpoint_every` entries, every
  `checkpoint_seconds` and on close, so rewriting history and the head together is still caught up to the last
  checkpoint.
- Subjects are stored only as HMACs (the person_id HMAC of a resident ID, the index HMAC of other codes), in the
  entry (hashed) and in `audit_subject` (an index checked against the entries by verify).

Durability guarantee (group commit)
`AuditWriter.append(event)` computes the entry's hash at once (so the chain order is the call order) and returns a
Future; a background thread writes every pending entry in one transaction (batch = whatever arrived while the
previous batch was being written) and resolves the futures only after COMMIT returned. Callers must answer only
after the future resolved (`log()` / `log_async()` do so); if the database is unavailable the future does not
resolve, the entries stay buffered and are retried, and `log()` raises `AuditUnavailable` after its timeout, so
the API answers 503 instead of returning data that was not audited. A process crash loses only entries whose
calls have not been answered yet. On PostgreSQL a batch is one autocommit statement (one round trip), and when
calls arrive together the flusher pauses `audit_gather_seconds` (setting, 1 ms) before a batch so the calls in flight join it: at
2 cores under load that took batches from ~2 to ~5 entries and the PostgreSQL backend's CPU per call from 225 to
147 µs.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature

from hub.models import AuditChain, AuditCheckpoint, AuditEntry, AuditSubject, CatalogConsumer

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's own busy handling only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
AUDIT_KEY_OWNER = "HUB-AUDIT"
CHECKPOINT_FORMAT = "hub-audit-checkpoint/1"
OUTCOMES = ("allowed", "refused", "error")
RESIDENT_ID = re.compile(r"^\d{17}[\dXx]$")


class AuditUnavailable(RuntimeError):
    """The audit entry could not be made durable in time: the call must not be answered."""


def _expire(waiter: asyncio.Future) -> None:
    """log_async's timeout: the entry was not durable in time (it may still be written later; the call gets 503)."""
    if not waiter.done():
        waiter.set_exception(AuditUnavailable("审计记录未能及时落盘，调用不予答复"))


@dataclass(frozen=True)
class AuditEvent:
    """One exchange call as the API saw it. `subjects` are raw IDs or HMACs; only HMACs are ever stored."""

    consumer_code: str
    user_id: str
    operation: str
    outcome: str
    at: datetime
    purpose_code: str | None = None
    case_number: str | None = None
    resource_code: str | None = None
    subjects: Sequence[str] = ()
    fields: Sequence[str] = ()
    reason: str | None = None


# ---------------------------------------------------------------------------------------------
# Subjects and hashes
# ---------------------------------------------------------------------------------------------

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def subject_key(subject: str) -> str:
    """The HMAC under which a subject is logged: person_id for a resident ID, index HMAC for any other code."""
    text = subject.strip()
    if _HEX64.match(text):
        return text  # already an HMAC (e.g. a person_id from the library)
    from hub.crypto import get_cipher

    cipher = get_cipher()
    if RESIDENT_ID.match(text.upper()):
        return cipher.person_key(text)
    return cipher.index_hash(text.upper())


def _iso(at: datetime) -> str:
    """Canonical UTC text of a timestamp (microseconds, as both databases store it)."""
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def canonical(row: dict[str, Any]) -> str:
    """The canonical JSON of an entry's content (everything but prev_hash and entry_hash)."""
    return json.dumps([row["chain_id"], row["seq"], _iso(row["at"]), row["consumer_code"], row["user_id"],
                       row["purpose_code"], row["case_number"], row["resource_code"], row["operation"],
                       list(row["subjects"]), list(row["fields"]), row["outcome"], row["reason"]],
                      ensure_ascii=False, separators=(",", ":"))


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the entry's canonical content."""
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def checkpoint_message(chain_id: str, seq: int, head: str, at: datetime) -> bytes:
    """The bytes a checkpoint signs."""
    return f"{CHECKPOINT_FORMAT}|{chain_id}|{seq}|{head}|{_iso(at)}".encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Signing key
# ---------------------------------------------------------------------------------------------


_keys: dict[str, tuple[str, Any]] = {}


def _signing_key(engine: sa.Engine, at: datetime) -> tuple[str, Any]:
    """The hub audit key (id, Ed25519 private key), created on first use; call it outside any open transaction
    (creating the key writes, which would wait on SQLite's lock held by that transaction)."""
    from licences import keys

    cache_key = engine.url.render_as_string(hide_password=False)
    found = _keys.get(cache_key)
    if found is None:
        key_id = keys.ensure_keys(engine, [AUDIT_KEY_OWNER], at)[AUDIT_KEY_OWNER]
        found = _keys[cache_key] = (key_id, keys.store_for(engine).private(key_id))
    return found


def _sign(connection: sa.Connection, key: tuple[str, Any], chain_id: str, seq: int, head: str, at: datetime) -> bool:
    """Insert a signed checkpoint of a chain head; False if that seq is already pinned."""
    table = AuditCheckpoint.__table__
    if connection.execute(sa.select(table.c.id).where(table.c.chain_id == chain_id, table.c.seq == seq)).first():
        return False
    key_id, private = key
    connection.execute(table.insert().values(chain_id=chain_id, seq=seq, entry_hash=head, at=at, key_id=key_id,
                                             signature=private.sign(checkpoint_message(chain_id, seq, head, at))))
    return True


def checkpoint_all(engine: sa.Engine, at: datetime) -> int:
    """Sign the current head of every non-empty chain (a periodic job; covers chains whose writer died)."""
    key = _signing_key(engine, at)
    signed = 0
    with engine.begin() as connection:
        heads = connection.execute(sa.select(AuditChain.chain_id, AuditChain.head_seq, AuditChain.head_hash)
                                   .where(AuditChain.head_seq > 0)).all()
        for chain_id, seq, head in heads:
            signed += _sign(connection, key, chain_id, seq, head, at)
    return signed


# ---------------------------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------------------------


class AuditRefused(AuditUnavailable):
    """The database refused this one entry (e.g. a character it cannot store): a sanitised placeholder marking the
    failure took its place in the chain and the call must not be answered with data (503)."""


_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError,
              ConnectionError, TimeoutError)


def _transient(error: BaseException) -> bool:
    """Whether a write failure is about the database being away or busy (retry the batch) rather than the data."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, _TRANSIENT):
        return True
    # the hot statements run on the DBAPI cursor: the driver's own classes (sqlite3, psycopg) arrive unwrapped
    return any(c.__name__ in ("OperationalError", "InterfaceError") for c in type(error).__mro__)


def _settle(items: list[_Pending]) -> None:
    """Resolve the asyncio waiters of durable (or refused) entries; runs on their event loop, once per batch."""
    for item in items:
        waiter = item.waiter
        if waiter is not None and not waiter.done():
            if item.error is not None:
                waiter.set_exception(item.error)
            else:
                waiter.set_result(item.row["seq"])


@dataclass(slots=True)
class _Pending:
    """An entry waiting to be written, with whoever waits on it: a concurrent Future (log) or an asyncio future
    on its loop (log_async; resolved from the flusher with one call_soon_threadsafe per loop and batch)."""

    row: dict[str, Any]
    future: Future | None = None
    waiter: asyncio.Future | None = None
    loop: asyncio.AbstractEventLoop | None = None
    error: BaseException | None = None


class AuditWriter:
    """One process's audit chain: hashes at append time, writes in group-committed batches from a thread."""

    def __init__(self, engine: sa.Engine, *, chain_id: str | None = None, max_batch: int = 2000,
                 checkpoint_every: int = 1000, checkpoint_seconds: float = 60.0, retry_seconds: float = 0.5,
                 gather_seconds: float | None = None) -> None:
        """Bind to a database; the chain row is created on the first write."""
        self.engine = engine
        self.chain_id = chain_id or f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(4)}"
        self.pid = os.getpid()
        self.max_batch = max_batch
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.retry_seconds = retry_seconds
        self._seq = 0
        self._head = GENESIS
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._created = False
        self._connection: sa.Connection | None = None
        self._signed_seq = 0
        self._signed_time = time.monotonic()
        self._durable_seq = 0
        self._closed = False
        self._waiting = False
        self.refused = 0  # entries the database refused and that were replaced by placeholders
        self._statements: dict[str, Any] | None = None
        # Group commit's gathering pause (see _run): on PostgreSQL, where each batch is a round trip and a WAL flush
        # (measured at 2 cores under load: batches of ~2 entries without it); SQLite commits in-process, no pause.
        if gather_seconds is None:
            from hub.settings import get_settings

            gather_seconds = get_settings().audit_gather_seconds
        self._gather = gather_seconds if engine.dialect.name == "postgresql" else 0.0
        self._last_batch = 0
        self._autocommit: Any = None  # PostgreSQL: DBAPI connection for one-statement batches (_write_one_statement)
        self._lock_fd: int | None = None
        self._checkpointer: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name=f"audit-{self.chain_id}", daemon=True)
        self._thread.start()

    # -- appending ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the writer was closed or aborted (writer_for then hands out a new one)."""
        return self._closed

    def _queue(self, event: AuditEvent, pending: _Pending) -> _Pending:
        """Chain the entry now (call order = chain order) and queue it for the flusher."""
        if event.outcome not in OUTCOMES:
            raise ValueError(f"未知审计结果 unknown outcome {event.outcome!r}")
        if event.at.tzinfo is None:
            raise ValueError("审计时间须带时区 timezone-aware time required")
        subjects = sorted({subject_key(s) for s in event.subjects if s})
        row = {"chain_id": self.chain_id, "at": event.at.astimezone(timezone.utc), "consumer_code": event.consumer_code,
               "user_id": event.user_id, "purpose_code": event.purpose_code, "case_number": event.case_number,
               "resource_code": event.resource_code, "operation": event.operation, "subjects": subjects,
               "fields": list(event.fields), "outcome": event.outcome, "reason": event.reason}
        pending.row = row
        with self._wake:
            if self._closed:
                raise AuditUnavailable("审计写入器已关闭")
            row["seq"] = self._seq + 1
            row["prev_hash"] = self._head
            row["entry_hash"] = entry_hash(self._head, row)  # may raise (text not encodable): nothing changed then
            self._seq, self._head = row["seq"], row["entry_hash"]
            self._pending.append(pending)
            if self._waiting:  # a busy flusher takes the queue when its batch is done: no wake-up (GIL hand-off)
                self._wake.notify()
        return pending

    def append(self, event: AuditEvent) -> Future:
        """Chain the entry now and queue it; the Future resolves to its seq once it is durable."""
        return self._queue(event, _Pending({}, future=Future())).future  # type: ignore[return-value]

    def log(self, event: AuditEvent, timeout: float = 5.0) -> int:
        """Append and wait until durable; AuditUnavailable if that takes longer than `timeout` seconds."""
        future = self.append(event)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise AuditUnavailable("审计记录未能及时落盘，调用不予答复") from None

    async def log_async(self, event: AuditEvent, timeout: float = 5.0) -> int:
        """The asyncio form of log() (for the FastAPI exchange): await durability without blocking the loop."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._queue(event, _Pending({}, waiter=waiter, loop=loop))
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything appended so far is durable."""
        with self._lock:
            target = self._seq
        deadline = time.monotonic() + timeout
        while self._durable_seq < target:
            if time.monotonic() > deadline:
                raise AuditUnavailable("审计记录未能在时限内写入")
            time.sleep(0.001)

    def checkpoint(self, at: datetime | None = None) -> None:
        """Flush, then sign the durable head now."""
        self.flush()
        self._sign_durable(at)

    def _sign_durable(self, at: datetime | None = None) -> None:
        """Sign the durable head if it is not signed yet (never waits for the flusher: it may be the caller)."""
        seq = self._durable_seq
        if not seq or seq == self._signed_seq:
            return
        at = at or datetime.now(timezone.utc)
        key = _signing_key(self.engine, at)
        with self.engine.begin() as connection:
            head = connection.execute(sa.select(AuditEntry.entry_hash)
                                      .where(AuditEntry.chain_id == self.chain_id, AuditEntry.seq == seq)).scalar_one()
            _sign(connection, key, self.chain_id, seq, head, at)
        self._signed_seq, self._signed_time = seq, time.monotonic()

    def abort(self) -> None:
        """Give up (the database is gone for good): pending callers get AuditUnavailable, the thread stops."""
        with self._wake:
            self._closed = True
            self._waiting = False
            failed = list(self._pending)
            self._pending.clear()
            self._wake.notify()
        for item in failed:
            item.error = AuditUnavailable("审计写入器已中止，调用不予答复")
        self._resolve(failed)
        self._thread.join(timeout=5)

    def close(self) -> None:
        """Flush, sign the head and stop the thread."""
        self.checkpoint()
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    # -- the flusher thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """Write whatever is pending, batch after batch, until closed."""
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._waiting = True
                    self._wake.wait(timeout=1.0)
                    self._waiting = False
                    if not self._pending and self._due_checkpoint():
                        break
                if self._closed and not self._pending:
                    self._release()
                    return
                batch = self._pending[: self.max_batch]
            if self._gather and 1 < self._last_batch and len(batch) < self.max_batch and not self._closed:
                # Calls are arriving together (the last batch had several): let the ones in flight join this batch,
                # as PostgreSQL's commit_delay does for its WAL flush — one statement and one fsync for more entries.
                time.sleep(self._gather)
                with self._lock:
                    batch = self._pending[: self.max_batch]
            self._last_batch = len(batch)
            try:
                if batch:
                    try:
                        self._write(batch)
                    except Exception as error:
                        if _transient(error):
                            raise
                        # The database refused something in the batch (not an outage): find the entry, set it aside.
                        log.warning("审计批次被拒绝，逐条写入以找出问题条目 audit batch refused (%s), isolating",
                                    type(error).__name__)
                        self._isolate(len(batch))
                        continue
                    self._done(batch)
                elif self._due_checkpoint():
                    self._sign_durable()
            except Exception:  # the database is away: keep the batch (order matters) and retry; callers time out
                log.exception("审计写入失败，将重试 audit write failed, retrying")
                if self._closed and not self._pending:
                    self._release()
                    return
                time.sleep(self.retry_seconds)

    def _done(self, batch: list[_Pending]) -> None:
        """A batch is durable: drop it from the queue and release its callers."""
        with self._lock:
            del self._pending[: len(batch)]
        self._durable_seq = batch[-1].row["seq"]
        self._resolve(batch)

    def _resolve(self, items: list[_Pending]) -> None:
        """Release the waiters of items (results, or their error): futures directly, asyncio waiters per loop."""
        loops: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in items:
            if item.future is not None and not item.future.done():  # abort() may have failed it meanwhile
                if item.error is not None:
                    item.future.set_exception(item.error)
                else:
                    item.future.set_result(item.row["seq"])
            elif item.loop is not None:
                loops.setdefault(item.loop, []).append(item)
        for loop, waiting in loops.items():
            try:
                loop.call_soon_threadsafe(_settle, waiting)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _isolate(self, count: int) -> None:
        """Write the first `count` pending entries one transaction each; an entry the database refuses is replaced
        by a sanitised placeholder (outcome error, the failure named; the chain is re-linked from there) and its
        caller gets AuditRefused (503), so one bad entry never blocks the chain. Outages still propagate."""
        for _ in range(count):
            with self._lock:
                if not self._pending:
                    return
                item = self._pending[0]
            try:
                self._write([item])
            except Exception as error:
                if _transient(error):
                    raise
                self._replace(item, error)
                self._write([item])  # the placeholder (plain ASCII, bounded): a failure here is an outage
                self.refused += 1
                item.error = AuditRefused("审计记录被数据库拒绝，已记录占位条目，调用不予答复")
                log.error("审计条目 %s/%s 被数据库拒绝（%s），已以占位条目代替 audit entry refused, placeholder written",
                          self.chain_id, item.row["seq"], type(error).__name__)
            self._done([item])

    def _replace(self, item: _Pending, error: BaseException) -> None:
        """Turn a refused entry into a placeholder and re-chain it and every entry queued after it."""
        row = item.row
        safe = re.compile(r"[^0-9A-Za-z._:/#@-]")
        row.update(consumer_code=safe.sub("?", str(row["consumer_code"]))[:32] or "?",
                   user_id=safe.sub("?", str(row["user_id"]))[:100] or "?",
                   purpose_code=None, case_number=None,
                   resource_code=safe.sub("?", row["resource_code"])[:64] if row["resource_code"] else None,
                   operation=safe.sub("?", str(row["operation"]))[:48] + ":refused",
                   subjects=[s for s in row["subjects"] if _HEX64.match(s)], fields=[], outcome="error",
                   reason=f"审计条目被数据库拒绝（{type(error).__name__}），以此占位条目记录该次调用；调用未予答复")
        with self._lock:
            prev = row["prev_hash"]
            for pending in self._pending:  # item is first; every later entry links to the new hash
                if pending.row["seq"] < row["seq"]:
                    continue
                pending.row["prev_hash"] = prev
                pending.row["entry_hash"] = prev = entry_hash(prev, pending.row)
            self._head = prev

    def _release(self) -> None:
        """Close the flusher's connection and lock file (thread exit)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._autocommit is not None:
            raw, self._autocommit = self._autocommit, None
            try:
                raw.driver_connection.autocommit = False  # back to the pool as the pool handed it out
                raw.close()
            except Exception:  # noqa: BLE001 — broken: the pool discards it
                pass
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _due_checkpoint(self) -> bool:
        """Whether the unsigned part of the chain is old enough to sign."""
        return (self._durable_seq > self._signed_seq
                and time.monotonic() - self._signed_time >= self.checkpoint_seconds)

    def _write(self, batch: list[_Pending]) -> None:
        """One transaction: the entries, their subject index rows, the new head, and a checkpoint when due."""
        rows = [item.row for item in batch]
        subjects = [{"subject_hash": s, "chain_id": r["chain_id"], "seq": r["seq"]} for r in rows for s in r["subjects"]]
        last = rows[-1]
        sign = (last["seq"] - self._signed_seq >= self.checkpoint_every
                or time.monotonic() - self._signed_time >= self.checkpoint_seconds)
        key = None
        if sign:
            try:
                key = _signing_key(self.engine, last["at"])
            except Exception:  # noqa: BLE001 — a checkpoint is extra assurance: it never holds the entries back
                log.exception("审计检查点签名密钥不可用，本批不签名 audit signing key unavailable, batch written unsigned")
                self._signed_time = time.monotonic()  # try again after checkpoint_seconds
                sign = False
        if self._connection is None:
            # The flusher keeps its own connection: no pool checkout or pre-ping round trip per batch.
            self._connection = self.engine.connect()
            if _sqlite_path(self.engine) is not None:
                # WAL checkpoints (copy + fsync of the database file) must not run inside a batch's commit, where
                # every request of the batch — and, through the flock, the other workers' — would wait for them:
                # a separate thread checkpoints in the background (PASSIVE: never blocks readers or writers).
                self._connection.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
                self._start_checkpointer()
        connection = self._connection
        try:
            with self._file_lock():
                self._write_in(connection, rows, subjects, last, key)
        except Exception:
            self._connection = None
            self._drop_autocommit()
            try:
                connection.close()
            except Exception:  # already broken; the next batch opens a fresh connection
                pass
            raise
        self._created = True
        if sign:
            self._signed_seq, self._signed_time = last["seq"], time.monotonic()

    def _write_one_statement(self, rows: list[dict[str, Any]], subjects: list[dict[str, Any]],
                             last: dict[str, Any]) -> None:
        """PostgreSQL, an existing chain, no checkpoint due: the batch as one autocommit statement (entries, subject
        index and head — see _BATCH_SQL), one round trip. In a transaction it takes three (BEGIN, the statement,
        COMMIT); it took five with two COPYs and the head UPDATE, and at the batch sizes group commit gives under
        load (2–5 entries) per-statement work in the PostgreSQL backend costs more than the rows."""
        if self._autocommit is None:
            raw = self.engine.raw_connection()
            raw.driver_connection.autocommit = True
            self._autocommit = raw
        cursor = self._autocommit.driver_connection.cursor()
        try:
            self._execute_batch(cursor, rows, subjects, last)
        finally:
            cursor.close()

    def _execute_batch(self, cursor: Any, rows: list[dict[str, Any]], subjects: list[dict[str, Any]],
                       last: dict[str, Any]) -> None:
        """PostgreSQL: run _BATCH_SQL for a batch on a psycopg cursor (in a transaction or autocommit)."""
        # orjson writes the batch in C (aware times as ISO 8601 with their offset, which timestamptz reads); entry rows
        # hold exactly the audit_entry columns, subject rows those of audit_subject.
        entries, index = orjson.dumps(rows).decode(), orjson.dumps(subjects).decode()
        cursor.execute(_BATCH_SQL, (entries, index, last["seq"], last["entry_hash"], self.chain_id))
        if cursor.rowcount != 1:
            raise RuntimeError(f"审计链 {self.chain_id} 不存在 audit chain missing")  # not transient: isolated

    def _drop_autocommit(self) -> None:
        """Forget the autocommit connection (broken, or the writer is done)."""
        raw, self._autocommit = self._autocommit, None
        if raw is not None:
            try:
                raw.invalidate()
            except Exception:  # noqa: BLE001 — already gone
                pass

    def _start_checkpointer(self) -> None:
        """Start the WAL checkpointer thread of an SQLite writer (once)."""
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_wal, name=f"audit-wal-{self.chain_id}",
                                                  daemon=True)
            self._checkpointer.start()

    def _checkpoint_wal(self, interval: float = 0.5) -> None:
        """Every `interval` seconds with new entries: PRAGMA wal_checkpoint(PASSIVE) on a connection of its own."""
        done = 0
        connection = None
        while not self._closed:
            time.sleep(interval)
            if self._durable_seq == done:
                continue
            try:
                if connection is None:
                    connection = self.engine.raw_connection()
                cursor = connection.cursor()
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
                cursor.close()
                done = self._durable_seq
            except Exception:  # noqa: BLE001 — busy or away: the next round tries again
                if connection is not None:
                    connection.invalidate()
                    connection = None
        if connection is not None:
            connection.close()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """On an SQLite file, hold an exclusive flock next to it while writing a batch: the audit writers of the
        other worker processes queue in the kernel and wake the moment it is released, instead of meeting
        SQLITE_BUSY and sleeping in SQLite's busy handler (1…100 ms steps: the long tail of the latency)."""
        if self._lock_fd is None:
            path = _sqlite_path(self.engine)
            if path is None:
                yield
                return
            self._lock_fd = os.open(f"{path}.audit-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _prepare(self, connection: sa.Connection) -> dict[str, Any]:
        """The entry insert, subject insert and head update compiled for this database (see _execute)."""
        chain = AuditChain.__table__
        statements = {
            "entry": AuditEntry.__table__.insert(),
            "subject": AuditSubject.__table__.insert(),
            "head": chain.update().where(chain.c.chain_id == sa.bindparam("chain_id"))
            .values(head_seq=sa.bindparam("head_seq"), head_hash=sa.bindparam("head_hash")),
        }
        self._statements = {name: _compile(statement, connection.dialect) for name, statement in statements.items()}
        return self._statements

    def _write_in(self, connection: sa.Connection, rows: list[dict[str, Any]], subjects: list[dict[str, Any]],
                  last: dict[str, Any], key: tuple[str, Any] | None) -> None:
        """The batch's statements in one transaction on the flusher's connection (on PostgreSQL, once the chain
        exists and no checkpoint is due, the batch statement alone in autocommit: _write_one_statement)."""
        if self._created and key is None and connection.dialect.driver == "psycopg":
            self._write_one_statement(rows, subjects, last)
            return
        with connection.begin():
            if not self._created:
                exists = connection.execute(sa.select(AuditChain.chain_id).where(AuditChain.chain_id == self.chain_id)).first()
                if exists is None:
                    connection.execute(AuditChain.__table__.insert().values(
                        chain_id=self.chain_id, writer=f"{socket.gethostname()}:{os.getpid()}",
                        created_at=rows[0]["at"], head_seq=0, head_hash=GENESIS))
            # The hot statements go to the DBAPI cursor directly, compiled once per writer with SQLAlchemy's own
            # bind processors: no per-batch statement construction, cache-key or execution-context work in a thread
            # that shares the GIL with the event loop.
            cursor = connection.connection.cursor()
            try:
                if connection.dialect.driver == "psycopg":
                    self._execute_batch(cursor, rows, subjects, last)  # the same statement as the autocommit path
                else:
                    statements = self._statements or self._prepare(connection)
                    _execute(cursor, statements["entry"], rows, many=True)
                    if subjects:
                        _execute(cursor, statements["subject"], subjects, many=True)
                    _execute(cursor, statements["head"], [{"chain_id": self.chain_id, "head_seq": last["seq"],
                                                           "head_hash": last["entry_hash"]}], many=False)
            finally:
                cursor.close()
            if key is not None:
                _sign(connection, key, self.chain_id, last["seq"], last["entry_hash"], last["at"])


def _sqlite_path(engine: sa.Engine) -> str | None:
    """The database file of an SQLite engine (None for other databases and in-memory SQLite)."""
    if engine.dialect.name != "sqlite" or not (fcntl and engine.url.database) or engine.url.database == ":memory:":
        return None
    return os.path.abspath(engine.url.database)


# PostgreSQL: a batch as one statement — entries and subject index rows from JSON (json_populate_recordset over the
# tables' own row types), then the chain head. The head UPDATE is the main statement, so its row count says whether
# the chain exists; the sibling inserts' foreign-key checks run at the end of the statement and see each other.
_BATCH_SQL = ("WITH entry AS (INSERT INTO audit_entry SELECT * FROM json_populate_recordset(NULL::audit_entry, %s::json)), "
              "subject AS (INSERT INTO audit_subject SELECT * FROM json_populate_recordset(NULL::audit_subject, %s::json)) "
              "UPDATE audit_chain SET head_seq = %s, head_hash = %s WHERE chain_id = %s")


def _compile(statement: Any, dialect: sa.Dialect) -> tuple[str, tuple[str, ...], tuple[Any, ...], bool]:
    """(SQL, parameter names in order, their bind processors, whether the driver takes named parameters)."""
    compiled = statement.compile(dialect=dialect)
    processors = compiled._bind_processors
    named = dialect.paramstyle in ("named", "pyformat")
    names = tuple(compiled.params) if named else tuple(compiled.positiontup or ())
    return str(compiled), names, tuple(processors.get(n) for n in names), named


def _execute(cursor: Any, statement: tuple[str, tuple[str, ...], tuple[Any, ...], bool], rows: list[dict[str, Any]],
             *, many: bool) -> None:
    """Run a compiled statement on a DBAPI cursor for rows of values (bind processors applied as SQLAlchemy would)."""
    sql, names, processors, named = statement
    if named:
        params = [{n: (v if p is None or v is None else p(v)) for n, p in zip(names, processors) for v in (row[n],)}
                  for row in rows]
    else:
        params = [tuple(v if p is None or v is None else p(v) for n, p in zip(names, processors) for v in (row[n],))
                  for row in rows]
    if many:
        cursor.executemany(sql, params)
    else:
        cursor.execute(sql, params[0])


_writers: dict[tuple[str, int], AuditWriter] = {}
_writers_lock = threading.Lock()


def writer_for(engine: sa.Engine | None = None) -> AuditWriter:
    """This process's writer for a database (a forked worker gets its own chain)."""
    if engine is None:
        from hub.db import engine_for

        engine = engine_for()
    key = (engine.url.render_as_string(hide_password=False), os.getpid())
    found = _writers.get(key)
    if found is None:
        with _writers_lock:
            found = _writers.get(key)
            if found is None:
                if not _writers:
                    atexit.register(close_writers)  # a clean shutdown flushes and signs the heads
                found = _writers[key] = AuditWriter(engine)
    return found


def record(event: AuditEvent, *, engine: sa.Engine | None = None, timeout: float = 5.0) -> int:
    """Log one call and wait until it is durable (see the module's guarantee); returns its seq."""
    return writer_for(engine).log(event, timeout)


def close_writers() -> None:
    """Flush, sign and stop every writer of this process (shutdown hook; tests)."""
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        if writer.pid == os.getpid():
            writer.close()


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


def _problem(problems: list[dict[str, Any]], chain_id: str, seq: int | None, text: str) -> None:
    """Record one finding."""
    problems.append({"chain_id": chain_id, "seq": seq, "problem": text})


def _verify_chain(connection: sa.Connection, chain: Any, problems: list[dict[str, Any]]) -> tuple[int, dict[int, str]]:
    """Walk one chain: sequence, links, hashes, head, subject index. Returns (entries, hash by seq)."""
    table = AuditEntry.__table__
    index: dict[int, set[str]] = {}
    for subject_hash, seq in connection.execute(sa.select(AuditSubject.subject_hash, AuditSubject.seq)
                                                .where(AuditSubject.chain_id == chain.chain_id)):
        index.setdefault(seq, set()).add(subject_hash)
    expected_seq, prev, count = 1, GENESIS, 0
    hashes: dict[int, str] = {}
    result = connection.execution_options(yield_per=5000).execute(
        sa.select(table).where(table.c.chain_id == chain.chain_id).order_by(table.c.seq))
    for row in result:
        entry = dict(row._mapping)
        seq = entry["seq"]
        count += 1
        if seq != expected_seq:
            what = "缺失（被删除）" if seq > expected_seq else "重复或插入"
            _problem(problems, chain.chain_id, seq, f"序号不连续：期望 {expected_seq}，实为 {seq}，条目{what}")
        if entry["prev_hash"] != prev:
            _problem(problems, chain.chain_id, seq, "前序哈希与上一条不符（其前条目被删除、插入或修改）")
        if entry_hash(entry["prev_hash"], entry) != entry["entry_hash"]:
            _problem(problems, chain.chain_id, seq, "条目内容与其哈希不符（条目被修改）")
        if set(entry["subjects"] or []) != index.pop(seq, set()):
            _problem(problems, chain.chain_id, seq, "主体索引与条目不符（audit_subject 被改动）")
        hashes[seq] = entry["entry_hash"]
        prev, expected_seq = entry["entry_hash"], seq + 1
    for seq in sorted(index):
        _problem(problems, chain.chain_id, seq, "主体索引指向不存在的条目")
    last_seq = expected_seq - 1
    if last_seq != chain.head_seq or prev != chain.head_hash:
        what = "链尾条目被删除" if last_seq < chain.head_seq else "链头之后出现条目或链头被改动"
        _problem(problems, chain.chain_id, last_seq, f"链头不符：登记为 {chain.head_seq}，实为 {last_seq}（{what}）")
    return count, hashes


def _verify_checkpoints(connection: sa.Connection, engine: sa.Engine, chain_id: str, hashes: dict[int, str],
                        problems: list[dict[str, Any]]) -> int:
    """Check each checkpoint's signature and that it matches the entry it pins."""
    from licences import keys

    store = keys.store_for(engine)
    count = 0
    for cp in connection.execute(sa.select(AuditCheckpoint).where(AuditCheckpoint.chain_id == chain_id)
                                 .order_by(AuditCheckpoint.seq)):
        count += 1
        public = store.public(cp.key_id)
        if public is None or public.department_code != AUDIT_KEY_OWNER:
            _problem(problems, chain_id, cp.seq, f"检查点签名密钥 {cp.key_id} 不是枢纽审计密钥")
            continue
        try:
            public.key.verify(bytes(cp.signature), checkpoint_message(chain_id, cp.seq, cp.entry_hash, cp.at))
        except InvalidSignature:
            _problem(problems, chain_id, cp.seq, "检查点签名无效（检查点被改动）")
            continue
        if hashes.get(cp.seq) != cp.entry_hash:
            _problem(problems, chain_id, cp.seq, "已签名检查点与该序号条目的哈希不符（历史被改写）")
    return count


def verify(engine: sa.Engine) -> dict[str, Any]:
    """Check every chain; `ok` is False when any entry was edited, inserted or deleted, or a checkpoint is bad."""
    problems: list[dict[str, Any]] = []
    entries = checkpoints = 0
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # one snapshot for the heads and the entries: under READ COMMITTED a batch that commits between the two
            # reads (a live writer, or a killed client's last statement the server still finishes) looks like an
            # entry after the head
            connection.execution_options(isolation_level="REPEATABLE READ")
        chains = connection.execute(sa.select(AuditChain).order_by(AuditChain.chain_id)).all()
        known = {c.chain_id for c in chains}
        for orphan in connection.execute(sa.select(AuditEntry.chain_id).distinct()).scalars():
            if orphan not in known:
                _problem(problems, orphan, None, "条目所属的链未登记（条目被插入）")
        for chain in chains:
            count, hashes = _verify_chain(connection, chain, problems)
            entries += count
            checkpoints += _verify_checkpoints(connection, engine, chain.chain_id, hashes, problems)
    return {"ok": not problems, "chains": len(chains), "entries": entries, "checkpoints": checkpoints, "problems": problems}


# ---------------------------------------------------------------------------------------------
# Subject access
# ---------------------------------------------------------------------------------------------


def who_looked_at(engine: sa.Engine, subject: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Who looked at a subject (resident ID, USCC, licence id or its HMAC), when and why — newest first."""
    from catalog.resources import purposes, resource_index

    key = subject_key(subject)
    entry = AuditEntry.__table__
    query = (sa.select(entry.c.at, entry.c.consumer_code, CatalogConsumer.name.label("consumer_name"), entry.c.user_id,
                       entry.c.purpose_code, entry.c.case_number, entry.c.resource_code, entry.c.operation,
                       entry.c.fields, entry.c.outcome)
             .join(AuditSubject.__table__, sa.and_(AuditSubject.chain_id == entry.c.chain_id, AuditSubject.seq == entry.c.seq))
             .outerjoin(CatalogConsumer.__table__, CatalogConsumer.code == entry.c.consumer_code)
             .where(AuditSubject.subject_hash == key)
             .order_by(entry.c.at.desc()).limit(limit))
    labels, index = purposes(), resource_index()
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        row["consumer_name"] = row["consumer_name"] or row["consumer_code"]
        row["purpose"] = labels.get(row["purpose_code"] or "", row["purpose_code"])
        row["resource_name"] = (index.get(row["resource_code"] or "") or {}).get("name", row["resource_code"])
    return rows


__all__ = ["AUDIT_KEY_OWNER", "AuditEvent", "AuditRefused", "AuditUnavailable", "AuditWriter", "canonical", "checkpoint_all",
           "close_writers", "entry_hash", "record", "subject_key", "verify", "who_looked_at", "writer_for"]
