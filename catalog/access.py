"""Access to shared resources: consumers and their API keys, requests, grants, and the per-call authorisation.

共享使用权限：使用方部门与接口密钥、有条件共享申请（提供方限期答复）、授权与撤销，以及每次调用的鉴权判定。

Rules (STANDARDS.md, Sharing catalogue):
- 无条件共享 resource: every authenticated department may read its items whose own sharing type is 无条件共享;
  items of sensitivity 4 (direct identifiers) come back masked unless a grant names them.
- 有条件共享 resource, or a 有条件共享 item: only through a grant, which comes from an approved request.
- 不予共享 resource or item: never, not even by a grant.
- Every call names a purpose code (resources.yaml `purposes`) and a grant only covers its own purposes.

Speed: `authorise` and `authenticate` read a per-process snapshot of consumers, key hashes and grants. The
snapshot is rebuilt when the `catalog_version` counter changes; every change here bumps that counter in the same
transaction. Other processes look at the counter at most every `policy.access_recheck_seconds` (1 s), so a
revocation reaches every web worker within that interval; in the changing process it is immediate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from catalog import resources as catalogue
from hub.models import CatalogApiKey, CatalogConsumer, CatalogGrant, CatalogRequest, CatalogVersion

LOCAL = timezone(timedelta(hours=8))  # deadlines are Beijing working days
VERSION_NAME = "access"
KEY_PREFIX = "hubk_"
SENSITIVE = 4  # sensitivity grade from which an unconditionally shared item is masked without a grant


class AccessError(ValueError):
    """A request, grant or key operation that is not allowed; the message is Chinese and says why."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one call: which of the asked fields may be returned, how, and why (in Chinese).

    fields_granted: every asked field the consumer may use (in the asked order);
    masked_fields: those to return masked (display masking of direct identifiers);
    verify_fields: those the consumer may only verify (answer 一致/不一致, never the value);
    verification_only: every granted field is verify-only; fields_denied: asked but not allowed.
    """

    allowed: bool
    fields_granted: tuple[str, ...]
    masked_fields: tuple[str, ...]
    verification_only: bool
    reason_zh: str
    fields_denied: tuple[str, ...] = ()
    verify_fields: tuple[str, ...] = ()
    grant_ids: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------------------
# Working days and the version counter
# ---------------------------------------------------------------------------------------------


def add_working_days(start: date, days: int, holidays: Iterable[date | str] = ()) -> date:
    """The date `days` working days after `start` (weekends and the given holidays skipped)."""
    skip = {d if isinstance(d, date) else date.fromisoformat(str(d)) for d in holidays}
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5 and current not in skip:
            left -= 1
    return current


def answer_deadline(requested_at: datetime, working_days: int | None = None) -> date:
    """The provider's answer deadline for a request made at `requested_at` (default 10 working days, configurable)."""
    policy = catalogue.policy()
    days = int(working_days if working_days is not None else policy.get("answer_working_days", 10))
    return add_working_days(requested_at.astimezone(LOCAL).date(), days, policy.get("holidays") or ())


def _bump(connection: sa.Connection) -> None:
    """Increment the access version in the caller's transaction (creating the counter on first use)."""
    table = CatalogVersion.__table__
    done = connection.execute(table.update().where(table.c.name == VERSION_NAME).values(version=table.c.version + 1))
    if done.rowcount == 0:
        connection.execute(table.insert().values(name=VERSION_NAME, version=1))


def access_version(connection: sa.Connection) -> int:
    """The current access version (0 before any change)."""
    table = CatalogVersion.__table__
    return int(connection.execute(sa.select(table.c.version).where(table.c.name == VERSION_NAME)).scalar() or 0)


def _changed(engine: sa.Engine) -> None:
    """Tell this process's authoriser to reload at once (other processes notice the counter)."""
    found = _authorisers.get(_engine_key(engine))
    if found is not None:
        found.invalidate()


# ---------------------------------------------------------------------------------------------
# Consumers and API keys
# ---------------------------------------------------------------------------------------------


def register_consumer(engine: sa.Engine, code: str, at: datetime, name: str | None = None) -> None:
    """Register (or re-enable) a department as a consumer; its name defaults to the departments code table."""
    table = CatalogConsumer.__table__
    with engine.begin() as connection:
        exists = connection.execute(sa.select(table.c.code).where(table.c.code == code)).first()
        if exists is None:
            connection.execute(table.insert().values(code=code, name=name or catalogue.department_name(code), created_at=at))
        else:
            values: dict[str, Any] = {"disabled_at": None}
            if name:
                values["name"] = name
            connection.execute(table.update().where(table.c.code == code).values(**values))
        _bump(connection)
    _changed(engine)


def disable_consumer(engine: sa.Engine, code: str, at: datetime) -> None:
    """Stop a consumer: its keys no longer authenticate and its calls are refused."""
    table = CatalogConsumer.__table__
    with engine.begin() as connection:
        connection.execute(table.update().where(table.c.code == code).values(disabled_at=at))
        _bump(connection)
    _changed(engine)


def _hash_secret(secret: str) -> str:
    """SHA-256 of a key secret: enough for a 256-bit random secret (no password stretching needed)."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def issue_key(engine: sa.Engine, consumer_code: str, at: datetime, label: str | None = None) -> tuple[str, str]:
    """Issue an API key to a consumer; returns (key id, the full key). The full key is never stored: show it once."""
    consumers = CatalogConsumer.__table__
    with engine.connect() as connection:
        row = connection.execute(sa.select(consumers.c.disabled_at).where(consumers.c.code == consumer_code)).first()
    if row is None:
        raise AccessError(f"部门 {consumer_code} 尚未登记为共享使用方，请先登记")
    if row.disabled_at is not None:
        raise AccessError(f"部门 {consumer_code} 已停用，不能签发密钥")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    with engine.begin() as connection:
        connection.execute(CatalogApiKey.__table__.insert().values(
            key_id=key_id, consumer_code=consumer_code, secret_hash=_hash_secret(secret), label=label, created_at=at))
        _bump(connection)
    _changed(engine)
    return key_id, f"{KEY_PREFIX}{key_id}.{secret}"


def revoke_key(engine: sa.Engine, key_id: str, at: datetime) -> None:
    """Revoke an API key (it stops authenticating within the recheck interval everywhere)."""
    table = CatalogApiKey.__table__
    with engine.begin() as connection:
        done = connection.execute(table.update().where(table.c.key_id == key_id, table.c.revoked_at.is_(None)).values(revoked_at=at))
        if done.rowcount == 0:
            raise AccessError(f"密钥 {key_id} 不存在或已吊销")
        _bump(connection)
    _changed(engine)


def list_keys(engine: sa.Engine, consumer_code: str | None = None) -> list[dict[str, Any]]:
    """Keys (id, consumer, label, issued, revoked) — never the hashes."""
    table = CatalogApiKey.__table__
    query = sa.select(table.c.key_id, table.c.consumer_code, table.c.label, table.c.created_at, table.c.revoked_at)
    if consumer_code:
        query = query.where(table.c.consumer_code == consumer_code)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(table.c.created_at))]


# ---------------------------------------------------------------------------------------------
# Requests and grants
# ---------------------------------------------------------------------------------------------


def _check_fields(resource: dict[str, Any], fields: Sequence[str]) -> list[str]:
    """The asked fields, validated against the resource's items (unknown or 不予共享 items are refused)."""
    items = {item["name"]: item for item in resource["items"]}
    fields = list(dict.fromkeys(fields))
    if not fields:
        raise AccessError("须列出申请的信息项")
    unknown = [f for f in fields if f not in items]
    if unknown:
        raise AccessError(f"资源 {resource['code']} 没有信息项 {'、'.join(unknown)}")
    never = [items[f]["label"] for f in fields if items[f]["sharing"] == "不予共享"]
    if never:
        raise AccessError(f"信息项 {'、'.join(never)} 为不予共享，不受理申请")
    return fields


def _check_purposes(purpose_codes: Sequence[str]) -> list[str]:
    """Purpose codes, each known to the catalogue."""
    known = catalogue.purposes()
    codes = list(dict.fromkeys(purpose_codes))
    if not codes:
        raise AccessError("须至少声明一个用途代码")
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise AccessError(f"未知用途代码 {'、'.join(unknown)}；可用：{'、'.join(known)}")
    return codes


def _shareable(resource: dict[str, Any]) -> None:
    """Refuse anything on a 不予共享 resource, citing its legal basis."""
    if resource["sharing_type"] == "不予共享":
        raise AccessError(f"资源 {resource['code']}（{resource['name']}）列入负面清单，不予共享；依据：{resource['legal_basis']}")


def submit_request(engine: sa.Engine, *, consumer_code: str, resource_code: str, fields: Sequence[str],
                   purpose_codes: Sequence[str], purpose: str, requested_by: str, at: datetime,
                   verification_only: bool = False, working_days: int | None = None) -> int:
    """File a consumer's request for (part of) a resource; returns its id. The deadline skips weekends."""
    resource = catalogue.get_resource(resource_code)
    _shareable(resource)
    fields = _check_fields(resource, fields)
    codes = _check_purposes(purpose_codes)
    if not purpose.strip():
        raise AccessError("须说明用途（办理的事项及依据）")
    table = CatalogRequest.__table__
    with engine.begin() as connection:
        if connection.execute(sa.select(CatalogConsumer.code).where(CatalogConsumer.code == consumer_code)).first() is None:
            raise AccessError(f"部门 {consumer_code} 尚未登记为共享使用方")
        return int(connection.execute(table.insert().values(
            consumer_code=consumer_code, resource_code=resource_code, fields=fields, purpose_codes=codes, purpose=purpose,
            verification_only=verification_only, requested_by=requested_by, requested_at=at,
            deadline=answer_deadline(at, working_days), status="pending",
        ).returning(table.c.id)).scalar_one())


def _pending(connection: sa.Connection, request_id: int) -> Any:
    """A pending request row (AccessError when it does not exist or was already answered)."""
    table = CatalogRequest.__table__
    row = connection.execute(sa.select(table).where(table.c.id == request_id)).first()
    if row is None:
        raise AccessError(f"申请 {request_id} 不存在")
    if row.status != "pending":
        raise AccessError(f"申请 {request_id} 已处理（{row.status}），不能重复答复")
    return row


def _check_provider(resource: dict[str, Any], provider_code: str | None) -> None:
    """Only the resource's provider (or the hub operator, dsj) answers its requests."""
    if provider_code is None:
        return
    providers = {p["code"] for p in resource["providers"]} | {"dsj"}
    if provider_code not in providers:
        raise AccessError(f"部门 {provider_code} 不是资源 {resource['code']} 的提供方，无权答复")


def approve_request(engine: sa.Engine, request_id: int, *, decided_by: str, at: datetime,
                    expires_at: datetime | None = None, fields: Sequence[str] | None = None,
                    provider_code: str | None = None, reason: str | None = None) -> int:
    """The provider approves (optionally fewer fields); returns the new grant's id."""
    with engine.begin() as connection:
        row = _pending(connection, request_id)
        resource = catalogue.get_resource(row.resource_code)
        _shareable(resource)
        _check_provider(resource, provider_code)
        granted = _check_fields(resource, fields if fields is not None else list(row.fields))
        beyond = [f for f in granted if f not in row.fields]
        if beyond:
            raise AccessError(f"批准的信息项 {'、'.join(beyond)} 超出申请范围")
        requests = CatalogRequest.__table__
        connection.execute(requests.update().where(requests.c.id == request_id).values(
            status="approved", decided_by=decided_by, decided_at=at, reason=reason))
        grant_id = _insert_grant(connection, consumer_code=row.consumer_code, resource_code=row.resource_code,
                                 fields=granted, purpose_codes=list(row.purpose_codes), granted_by=decided_by, at=at,
                                 expires_at=expires_at, verification_only=bool(row.verification_only), request_id=request_id)
    _changed(engine)
    return grant_id


def refuse_request(engine: sa.Engine, request_id: int, *, decided_by: str, reason: str, at: datetime,
                   provider_code: str | None = None) -> None:
    """The provider refuses; a refusal must give its reason."""
    if not reason or not reason.strip():
        raise AccessError("拒绝共享申请须说明理由")
    with engine.begin() as connection:
        row = _pending(connection, request_id)
        _check_provider(catalogue.get_resource(row.resource_code), provider_code)
        table = CatalogRequest.__table__
        connection.execute(table.update().where(table.c.id == request_id).values(
            status="refused", decided_by=decided_by, decided_at=at, reason=reason.strip()))


def withdraw_request(engine: sa.Engine, request_id: int, *, at: datetime) -> None:
    """The consumer withdraws a pending request."""
    with engine.begin() as connection:
        _pending(connection, request_id)
        table = CatalogRequest.__table__
        connection.execute(table.update().where(table.c.id == request_id).values(status="withdrawn", decided_at=at))


def _insert_grant(connection: sa.Connection, *, consumer_code: str, resource_code: str, fields: list[str],
                  purpose_codes: list[str], granted_by: str, at: datetime, expires_at: datetime | None,
                  verification_only: bool, request_id: int | None) -> int:
    """Write one grant and bump the access version, in the caller's transaction."""
    if expires_at is not None and expires_at <= at:
        raise AccessError("授权到期时间须晚于授权时间")
    table = CatalogGrant.__table__
    grant_id = int(connection.execute(table.insert().values(
        consumer_code=consumer_code, resource_code=resource_code, fields=fields, purpose_codes=purpose_codes,
        verification_only=verification_only, request_id=request_id, granted_by=granted_by, granted_at=at,
        expires_at=expires_at,
    ).returning(table.c.id)).scalar_one())
    _bump(connection)
    return grant_id


def grant_access(engine: sa.Engine, *, consumer_code: str, resource_code: str, fields: Sequence[str],
                 purpose_codes: Sequence[str], granted_by: str, at: datetime, expires_at: datetime | None = None,
                 verification_only: bool = False) -> int:
    """A grant made directly by the catalogue administrator (e.g. by agreement); never for 不予共享."""
    resource = catalogue.get_resource(resource_code)
    _shareable(resource)
    checked = _check_fields(resource, fields)
    codes = _check_purposes(purpose_codes)
    with engine.begin() as connection:
        if connection.execute(sa.select(CatalogConsumer.code).where(CatalogConsumer.code == consumer_code)).first() is None:
            raise AccessError(f"部门 {consumer_code} 尚未登记为共享使用方")
        grant_id = _insert_grant(connection, consumer_code=consumer_code, resource_code=resource_code, fields=checked,
                                 purpose_codes=codes, granted_by=granted_by, at=at, expires_at=expires_at,
                                 verification_only=verification_only, request_id=None)
    _changed(engine)
    return grant_id


def revoke_grant(engine: sa.Engine, grant_id: int, *, revoked_by: str, reason: str, at: datetime) -> None:
    """Revoke a grant (effective at once here, within the recheck interval in other processes)."""
    if not reason or not reason.strip():
        raise AccessError("撤销授权须说明理由")
    table = CatalogGrant.__table__
    with engine.begin() as connection:
        done = connection.execute(table.update().where(table.c.id == grant_id, table.c.revoked_at.is_(None))
                                  .values(revoked_at=at, revoked_by=revoked_by, revoke_reason=reason.strip()))
        if done.rowcount == 0:
            raise AccessError(f"授权 {grant_id} 不存在或已撤销")
        _bump(connection)
    _changed(engine)


def list_requests(engine: sa.Engine, *, status: str | None = None, consumer_code: str | None = None,
                  resource_code: str | None = None) -> list[dict[str, Any]]:
    """Requests, oldest first, optionally filtered."""
    table = CatalogRequest.__table__
    query = sa.select(table)
    for column, value in (("status", status), ("consumer_code", consumer_code), ("resource_code", resource_code)):
        if value:
            query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(table.c.id))]


def overdue_requests(engine: sa.Engine, today: date) -> list[dict[str, Any]]:
    """Pending requests whose answer deadline has passed (the provider is late)."""
    return [row for row in list_requests(engine, status="pending") if row["deadline"] < today]


def list_grants(engine: sa.Engine, *, consumer_code: str | None = None, resource_code: str | None = None,
                active_at: datetime | None = None) -> list[dict[str, Any]]:
    """Grants, optionally only those active at a time (not revoked, not expired)."""
    table = CatalogGrant.__table__
    query = sa.select(table)
    if consumer_code:
        query = query.where(table.c.consumer_code == consumer_code)
    if resource_code:
        query = query.where(table.c.resource_code == resource_code)
    if active_at is not None:
        query = query.where(table.c.revoked_at.is_(None),
                            sa.or_(table.c.expires_at.is_(None), table.c.expires_at > active_at))
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(table.c.id))]


# ---------------------------------------------------------------------------------------------
# The per-process authoriser
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Grant:
    """A live grant, reduced to what a decision needs."""

    id: int
    fields: frozenset[str]
    purposes: frozenset[str]
    verification_only: bool
    expires: float  # epoch seconds; inf for no expiry


@dataclass(frozen=True, slots=True)
class _Rule:
    """What a resource allows without a grant, and what it never allows."""

    code: str
    name: str
    sharing_type: str
    legal_basis: str
    order: tuple[str, ...]
    open_fields: frozenset[str]  # item 无条件共享 on a 无条件共享 resource
    never: frozenset[str]  # item 不予共享
    sensitive: frozenset[str]  # sensitivity ≥ SENSITIVE


@dataclass
class _Snapshot:
    """Everything authorise/authenticate read, loaded in one go."""

    version: int
    generation: int
    consumers: dict[str, str]  # active consumer code -> name
    keys: dict[str, tuple[str, str]]  # key id -> (consumer code, secret hash)
    grants: dict[tuple[str, str], tuple[_Grant, ...]]
    rules: dict[str, _Rule]
    purposes: frozenset[str]
    memo: dict[tuple[Any, ...], tuple[Decision, float]] = field(default_factory=dict)


def _rules() -> dict[str, _Rule]:
    """Per resource, the fields open to every department, never shared, and sensitive."""
    out = {}
    for resource in catalogue.all_resources():
        items = resource["items"]
        unconditional = resource["sharing_type"] == "无条件共享"
        out[resource["code"]] = _Rule(
            code=resource["code"], name=resource["name"], sharing_type=resource["sharing_type"],
            legal_basis=resource["legal_basis"], order=tuple(i["name"] for i in items),
            open_fields=frozenset(i["name"] for i in items if unconditional and i["sharing"] == "无条件共享"),
            never=frozenset(i["name"] for i in items if i["sharing"] == "不予共享"),
            sensitive=frozenset(i["name"] for i in items if i["sensitivity"] >= SENSITIVE),
        )
    return out


def _epoch(value: datetime | None) -> float:
    """Epoch seconds of an aware time (inf for None: never expires)."""
    return value.timestamp() if value is not None else float("inf")


def _load_snapshot(engine: sa.Engine) -> _Snapshot:
    """Read consumers, live keys and unrevoked grants (expiry is checked per call)."""
    grants: dict[tuple[str, str], list[_Grant]] = {}
    with engine.connect() as connection:
        version = access_version(connection)
        consumers = {r.code: r.name for r in connection.execute(
            sa.select(CatalogConsumer.code, CatalogConsumer.name).where(CatalogConsumer.disabled_at.is_(None)))}
        keys = {r.key_id: (r.consumer_code, r.secret_hash) for r in connection.execute(
            sa.select(CatalogApiKey.key_id, CatalogApiKey.consumer_code, CatalogApiKey.secret_hash)
            .where(CatalogApiKey.revoked_at.is_(None)))}
        table = CatalogGrant.__table__
        for r in connection.execute(sa.select(table).where(table.c.revoked_at.is_(None)).order_by(table.c.id)):
            grants.setdefault((r.consumer_code, r.resource_code), []).append(
                _Grant(r.id, frozenset(r.fields), frozenset(r.purpose_codes), bool(r.verification_only), _epoch(r.expires_at)))
    return _Snapshot(version=version, generation=catalogue.generation(), consumers=consumers, keys=keys,
                     grants={k: tuple(v) for k, v in grants.items()}, rules=_rules(),
                     purposes=frozenset(catalogue.purposes()))


def _refused(reason: str, denied: Iterable[str] = ()) -> Decision:
    """A refusal."""
    return Decision(False, (), (), False, reason, tuple(denied))


def decide(snapshot: _Snapshot, consumer: str, resource_code: str, fields: Sequence[str] | None,
           purpose_code: str | None, now: float) -> tuple[Decision, float]:
    """The decision from a snapshot, and until when it stays valid (the earliest expiry of a grant it used)."""
    forever = float("inf")
    if consumer not in snapshot.consumers:
        return _refused(f"部门 {consumer} 未登记为共享使用方或已停用"), forever
    if not purpose_code:
        return _refused("未声明用途代码，拒绝调用（每次调用须说明用途）"), forever
    if purpose_code not in snapshot.purposes:
        return _refused(f"未知用途代码 {purpose_code}"), forever
    rule = snapshot.rules.get(resource_code)
    if rule is None:
        return _refused(f"目录中没有资源 {resource_code}"), forever
    asked = tuple(dict.fromkeys(fields)) if fields else rule.order
    if rule.sharing_type == "不予共享":
        return _refused(f"资源 {rule.name} 不予共享；依据：{rule.legal_basis}", asked), forever
    clear: set[str] = set()
    verify: set[str] = set()
    used: list[int] = []
    valid_until = forever
    for grant in snapshot.grants.get((consumer, resource_code), ()):
        if grant.expires <= now or purpose_code not in grant.purposes:
            continue
        used.append(grant.id)
        valid_until = min(valid_until, grant.expires)
        (verify if grant.verification_only else clear).update(grant.fields)
    granted, masked, verify_only, denied = [], [], [], []
    for name in asked:
        if name in rule.never or name not in rule.order:
            denied.append(name)
        elif name in clear:
            granted.append(name)
        elif name in rule.open_fields:
            granted.append(name)
            if name in rule.sensitive:
                masked.append(name)
        elif name in verify:
            granted.append(name)
            verify_only.append(name)
        else:
            denied.append(name)
    if not granted:
        why = (f"资源 {rule.name} 为有条件共享，须先申请并经提供方同意" if rule.sharing_type == "有条件共享" and not used
               else f"所请求的信息项不在授权范围内：{'、'.join(denied)}")
        return _refused(why, denied), valid_until
    reason = "允许" if not denied else f"部分允许；未授权的信息项：{'、'.join(denied)}"
    decision = Decision(True, tuple(granted), tuple(masked), len(verify_only) == len(granted), reason, tuple(denied),
                        tuple(verify_only), tuple(used))
    return decision, valid_until


class Authoriser:
    """Per-process cache of the access snapshot of one database, with memoised decisions."""

    MEMO_LIMIT = 50_000

    def __init__(self, engine: sa.Engine, recheck_seconds: float | None = None) -> None:
        """Bind to a database; the snapshot loads on first use."""
        self.engine = engine
        self.recheck = float(recheck_seconds if recheck_seconds is not None
                             else catalogue.policy().get("access_recheck_seconds", 1.0))
        self._snapshot: _Snapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Reload on next use (a change made by this process)."""
        self._checked = 0.0
        self._snapshot = None

    def snapshot(self) -> _Snapshot:
        """The current snapshot, reloaded when the DB version or the catalogue changed."""
        snapshot, now = self._snapshot, time.monotonic()
        if snapshot is not None and now - self._checked < self.recheck:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and time.monotonic() - self._checked < self.recheck:
                return snapshot
            if snapshot is not None:
                with self.engine.connect() as connection:
                    version = access_version(connection)
                if version == snapshot.version and catalogue.generation() == snapshot.generation:
                    self._checked = time.monotonic()
                    return snapshot
            self._snapshot = snapshot = _load_snapshot(self.engine)
            self._checked = time.monotonic()
            return snapshot

    def authorise(self, consumer: str, resource_code: str, fields: Sequence[str] | None, purpose_code: str | None,
                  now: float | None = None) -> Decision:
        """The decision for one call (microseconds once warm)."""
        snapshot = self.snapshot()
        now = time.time() if now is None else now
        key = (consumer, resource_code, tuple(fields) if fields else None, purpose_code)
        memo = snapshot.memo.get(key)
        if memo is not None and now < memo[1]:
            return memo[0]
        decision, valid_until = decide(snapshot, consumer, resource_code, fields, purpose_code, now)
        if len(snapshot.memo) >= self.MEMO_LIMIT:
            snapshot.memo.clear()
        snapshot.memo[key] = (decision, valid_until)
        return decision

    def authenticate(self, api_key: str | None) -> str | None:
        """The consumer code of a valid API key (None for a missing, malformed, revoked or disabled one)."""
        if not api_key or not api_key.startswith(KEY_PREFIX) or "." not in api_key:
            return None
        key_id, _, secret = api_key[len(KEY_PREFIX):].partition(".")
        snapshot = self.snapshot()
        found = snapshot.keys.get(key_id)
        if found is None:
            return None
        consumer, stored = found
        if not hmac.compare_digest(stored, _hash_secret(secret)) or consumer not in snapshot.consumers:
            return None
        return consumer


_authorisers: dict[str, Authoriser] = {}
_authorisers_lock = threading.Lock()


def _engine_key(engine: sa.Engine) -> str:
    """A stable key for an engine's database."""
    return engine.url.render_as_string(hide_password=False)


def authoriser_for(engine: sa.Engine | None = None) -> Authoriser:
    """The process-wide authoriser of a database (default: the hub database of the settings)."""
    if engine is None:
        from hub.db import engine_for

        engine = engine_for()
    key = _engine_key(engine)
    found = _authorisers.get(key)
    if found is None:
        with _authorisers_lock:
            found = _authorisers.setdefault(key, Authoriser(engine))
    return found


def authorise(consumer: str, resource_code: str, fields: Sequence[str] | None, purpose_code: str | None, *,
              engine: sa.Engine | None = None, now: float | None = None) -> Decision:
    """May `consumer` read `fields` (None: all) of `resource_code` for `purpose_code`? See Decision."""
    return authoriser_for(engine).authorise(consumer, resource_code, fields, purpose_code, now)


def authenticate(api_key: str | None, *, engine: sa.Engine | None = None) -> str | None:
    """The consumer (department code) an API key belongs to, or None."""
    return authoriser_for(engine).authenticate(api_key)


def reset_caches() -> None:
    """Forget every authoriser (tests; forked workers)."""
    with _authorisers_lock:
        _authorisers.clear()


__all__ = ["AccessError", "Authoriser", "Decision", "access_version", "add_working_days", "answer_deadline",
           "approve_request", "authenticate", "authorise", "authoriser_for", "decide", "disable_consumer", "grant_access",
           "issue_key", "list_grants", "list_keys", "list_requests", "overdue_requests", "refuse_request",
           "register_consumer", "reset_caches", "revoke_grant", "revoke_key", "submit_request", "withdraw_request"]
