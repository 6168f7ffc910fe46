"""`hub db …` and `hub keys …` — migrate the hub database, rotate the field-encryption key.

数据库迁移与密钥轮换命令。
"""

from __future__ import annotations

import argparse

from hub.cli import HubError
from hub.lazy import lazy_import

# Loaded on first use: registering the commands must stay cheap for every other `hub` command.
sa = lazy_import("sqlalchemy")
crypto = lazy_import("hub.crypto")
db = lazy_import("hub.db")
models = lazy_import("hub.models")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `db` and `keys` command groups."""
    db_parser = subparsers.add_parser("db", help="枢纽数据库 hub database: migrate, show revision")
    db_commands = db_parser.add_subparsers(dest="db_command", metavar="ACTION", title="操作 actions")
    upgrade = db_commands.add_parser("upgrade", help="迁移到最新结构 migrate the hub database to the newest revision")
    upgrade.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    upgrade.add_argument("--revision", default="head", help="目标版本 target revision (default: head)")
    upgrade.set_defaults(handler=run_upgrade)
    current = db_commands.add_parser("current", help="显示当前结构版本 show the revision the database is at")
    current.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    current.set_defaults(handler=run_current)
    revision = db_commands.add_parser(
        "revision", help="（开发者）根据模型生成迁移 (developers) autogenerate a migration from hub.models"
    )
    revision.add_argument("-m", "--message", required=True, help="变更说明 what the migration changes")
    revision.set_defaults(handler=run_revision)
    db_parser.set_defaults(handler=_help_of(db_parser))

    keys_parser = subparsers.add_parser("keys", help="字段加密密钥 field-encryption key ring: rotate, list")
    keys_commands = keys_parser.add_subparsers(dest="keys_command", metavar="ACTION", title="操作 actions")
    rotate = keys_commands.add_parser(
        "rotate", help="轮换数据密钥（旧密钥保留用于解密）add a new primary data key (old keys still decrypt)"
    )
    rotate.set_defaults(handler=run_rotate)
    rewrap = keys_commands.add_parser(
        "rewrap", help="用主密钥重新加密库中旧密文 re-encrypt stored ciphertext made under older keys"
    )
    rewrap.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    rewrap.add_argument("--batch-size", type=int, default=10_000, help="每批行数 rows per transaction")
    rewrap.set_defaults(handler=run_rewrap)
    listing = keys_commands.add_parser("list", help="列出密钥标识（不显示密钥）list key ids (never key material)")
    listing.set_defaults(handler=run_list)
    keys_parser.set_defaults(handler=_help_of(keys_parser))


def _help_of(parser: argparse.ArgumentParser):
    """A handler that prints the group's help when no action is given (exit status 2)."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _database_error(url: str | None, error: Exception) -> HubError:
    """A one-line error naming the database without its password."""
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
    return HubError(f"数据库不可用 database {db.display_url(url)} failed: {first_line}")


def run_upgrade(args: argparse.Namespace) -> int:
    """Migrate to the requested revision and print where the database now is."""
    print(f"迁移数据库 migrating {db.display_url(args.url)} → {args.revision}")
    try:
        db.upgrade(args.url, args.revision)
        print(f"当前版本 now at revision {db.current_revision(args.url)} (最新 head {db.head_revision()})")
    except sa.exc.SQLAlchemyError as error:
        raise _database_error(args.url, error) from error
    return 0


def run_current(args: argparse.Namespace) -> int:
    """Print the database's revision and whether it is behind the code."""
    try:
        current = db.current_revision(args.url)
    except sa.exc.SQLAlchemyError as error:
        raise _database_error(args.url, error) from error
    head = db.head_revision()
    state = "最新 up to date" if current == head else "待升级，请运行 hub db upgrade  behind: run `hub db upgrade`"
    print(f"数据库 database  {db.display_url(args.url)}")
    print(f"当前版本 current {current or '（空库 empty）'}")
    print(f"最新版本 head    {head}")
    print(f"状态 state       {state}")
    return 0


def run_revision(args: argparse.Namespace) -> int:
    """Autogenerate a migration file and tell the developer to review it."""
    path = db.new_revision(args.message)
    print(f"已生成迁移 wrote {path}\n请检查后提交 review it (rename constraints, add data steps) before committing")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """Add a new primary data key; existing ciphertext keeps decrypting with the old keys."""
    try:
        cipher = crypto.FieldCipher()
        old = cipher.keyring.primary
        new = cipher.rotate()
    except crypto.KeyringError as error:
        raise HubError(str(error)) from error
    crypto.get_cipher.cache_clear()
    ring = cipher.keyring
    print(f"已轮换数据密钥 rotated data key: primary {old} → {new} ({len(ring.key_ids)} keys in {ring.source})")
    print("旧密文仍可解密；可运行 hub keys rewrap 用新密钥重新加密  old ciphertext still decrypts; `hub keys rewrap` re-encrypts it")
    return 0


def encrypted_columns() -> list[sa.Column]:
    """Every ciphertext column of the hub tables (named *_enc by convention)."""
    return [c for table in models.Base.metadata.sorted_tables for c in table.columns if c.name.endswith("_enc")]


def rewrap_database(
    url: str | None = None, cipher: crypto.FieldCipher | None = None, batch_size: int = 10_000
) -> dict[str, int]:
    """Re-encrypt every stored token not made under the primary key; return how many per table.column."""
    cipher = cipher or crypto.get_cipher()
    primary = cipher.keyring.primary
    engine = db.engine_for(url)
    counts: dict[str, int] = {}
    for column in encrypted_columns():
        (key,) = column.table.primary_key.columns  # every base table has a one-column key
        update = column.table.update().where(key == sa.bindparam("pk")).values({column.name: sa.bindparam("token")})
        done, last = 0, None
        while True:  # keyset pages, one transaction each: resumable, and never one huge transaction
            query = sa.select(key, column).where(column.is_not(None)).order_by(key).limit(batch_size)
            if last is not None:
                query = query.where(key > last)
            with engine.begin() as connection:
                rows = connection.execute(query).all()
                if not rows:
                    break
                stale = [
                    {"pk": pk, "token": cipher.rewrap(token)} for pk, token in rows if cipher.key_id_of(token) != primary
                ]
                if stale:
                    connection.execute(update, stale)
            done += len(stale)
            last = rows[-1][0]
        counts[f"{column.table.name}.{column.name}"] = done
    return counts


def run_rewrap(args: argparse.Namespace) -> int:
    """Rewrap old ciphertext in the hub database under the primary key."""
    try:
        cipher = crypto.get_cipher()
        counts = rewrap_database(args.url, cipher, args.batch_size)
    except crypto.KeyringError as error:
        raise HubError(str(error)) from error
    except crypto.DecryptionError as error:
        raise HubError(f"重加密中止 rewrap stopped: {error}") from error
    except sa.exc.SQLAlchemyError as error:
        raise _database_error(args.url, error) from error
    for name, count in counts.items():
        print(f"{name:<36} {count:>10,} 已重加密 rewrapped")
    print(f"主密钥 primary key {cipher.keyring.primary}; 合计 total {sum(counts.values()):,}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print key ids and which one is primary."""
    try:
        ring = crypto.load_keyring()
    except crypto.KeyringError as error:
        raise HubError(str(error)) from error
    print(f"密钥环 keyring {ring.source}")
    for key_id in ring.key_ids:
        print(f"  {key_id}{'  主密钥 primary' if key_id == ring.primary else ''}")
    return 0
