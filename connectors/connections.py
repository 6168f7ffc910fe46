"""Credentials come from Airflow Connections (e.g. AIRFLOW_CONN_<ID> variables), never from code or the registry."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import sqlalchemy as sa

# Airflow conn_type -> SQLAlchemy driver we ship.
SQLALCHEMY_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
}


def env_var_name(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_json(url: str | sa.URL) -> str:
    """An Airflow connection (JSON form) for a SQLAlchemy URL."""
    url = sa.make_url(url)
    conn_type = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}[url.get_backend_name()]
    body: dict[str, Any] = {"conn_type": conn_type}
    if conn_type == "sqlite":
        body["host"] = url.database
    else:
        body.update(host=url.host, port=url.port, login=url.username, password=url.password, schema=url.database)
    return json.dumps({k: v for k, v in body.items() if v is not None})


def sqlalchemy_url(conn_id: str) -> sa.URL:
    """The SQLAlchemy URL of an Airflow connection; read through Airflow's secrets backends when available."""
    return sql_connection(conn_id)[0]


def sql_connection(conn_id: str) -> tuple[sa.URL, dict[str, Any]]:
    """The SQLAlchemy URL and the extra fields of a database connection, from one read of the connection.

    The extra carries per-connection reading limits (query_timeout_seconds, connect_timeout_seconds, …) that
    operations may set in Airflow without a registry change (connectors.sql.sql_options).
    """
    conn = _airflow_connection(conn_id)
    return _url_of(conn_id, conn), dict(conn.get("extra") or {})


def _url_of(conn_id: str, conn: dict[str, Any]) -> sa.URL:
    """The SQLAlchemy URL of a connection's fields."""
    conn_type = conn.get("conn_type")
    if conn_type not in SQLALCHEMY_DRIVERS:
        raise ValueError(f"连接 {conn_id} 的类型 {conn_type} 不受支持 unsupported connection type")
    if conn_type == "sqlite":
        return sa.URL.create("sqlite", database=conn["host"])
    return sa.URL.create(
        SQLALCHEMY_DRIVERS[conn_type],
        username=conn.get("login") or None,
        password=conn.get("password") or None,
        host=conn.get("host") or None,
        port=conn.get("port") or None,
        database=conn.get("schema") or None,
    )


def _airflow_connection(conn_id: str) -> dict[str, Any]:
    """Fields of a connection (extra as a dict): from Airflow (any secrets backend) inside Airflow, else from the environment."""
    fields = _from_airflow(conn_id)
    if fields is not None:
        return fields
    raw = os.environ.get(env_var_name(conn_id))
    if raw is None:
        raise LookupError(f"未配置连接 connection '{conn_id}' is not defined ({env_var_name(conn_id)})")
    try:
        fields = json.loads(raw)
        extra = fields.get("extra") or {}
        fields["extra"] = json.loads(extra) if isinstance(extra, str) else dict(extra)
    except (ValueError, TypeError, AttributeError) as error:
        # The value may hold a password: name the variable, never echo it.
        raise ValueError(f"连接 {env_var_name(conn_id)} 不是 JSON 形式 is not a JSON connection") from error
    return fields


def _from_airflow(conn_id: str) -> dict[str, Any] | None:
    """The connection as Airflow resolves it (which also masks its password in task logs); None outside Airflow."""
    if "airflow" not in sys.modules:
        # Not running under Airflow: importing it here would configure Airflow for this process from whatever
        # environment it happens to have (and create ~/airflow), so read the variable directly instead.
        return None
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # no supervisor (Airflow imported outside a task) or not defined there: use the variable
        return None
    return {"conn_type": conn.conn_type, "host": conn.host, "port": conn.port, "login": conn.login,
            "password": conn.password, "schema": conn.schema, "extra": conn.extra_dejson}


def connection_fields(conn_id: str) -> dict[str, Any]:
    """Every field of a connection, extra included (fs connections keep their folder in extra.path)."""
    return _airflow_connection(conn_id)
