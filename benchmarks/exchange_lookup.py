"""Exchange lookups under load: `hub serve --workers 2` on loopback, driven by wrk, next to a bare baseline.

Full path per request (POST /exchange/v1/persons/query, RK.basic, all fields): API key authentication, purpose and
case number checks, grant decision, field filtering and masking (resident ID and name masked, as 无条件共享
sensitive items are without a grant), one primary-key read of the golden person, decryption where granted, and the
hash-chained audit entry made durable (group commit) before the answer.
Baseline, same run, same stack (uvicorn + FastAPI + uvloop + httptools, 2 workers): the same request body parsed
and answered after one plain audit INSERT (autocommit), nothing else.
Figures: requests/s, p50/p99 latency, share of the baseline, and requests answered vs audit rows written.
Targets (2 cores): ≥ 3,000 req/s for 60 s, p99 ≤ 30 ms, ≥ 40 % of the baseline, SQLite and PostgreSQL.

Population: scale 1 = 1,000,000 golden persons, written through libraries.population database_rows (encrypted
ID, address, phone) and a bulk insert; cached under <data_root>/bench/exchange (SQLite file; PostgreSQL database
hub_bench_exchange_<n> on $HUB_BENCH_PG_URL) so later runs skip the build.
Run alone: `python -m benchmarks.exchange_lookup --scale 0.01 --duration 10`; harness: `hub bench --only exchange_lookup`.
Latency curve: `--connections 16,32,64` drives the full path at each count in turn (same server, `--duration` each) and
reports requests/s, p50, p99 and server CPU per request per count (closed loop: mean latency = connections ÷ req/s,
so p99 ≤ 30 ms at 3,000 req/s needs well under 90 connections in flight); the bare baseline runs at the highest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

ADMIN_URL = os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AT = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
CHUNK = 50_000
SAMPLE_IDS = 20_000
CONNECTIONS = int(os.environ.get("HUB_BENCH_CONNECTIONS", "64"))
CURVE_FIGURES = ("requests_per_s", "p50_ms", "p99_ms", "non_2xx", "server_cpu_us_per_request")
WRK_THREADS = int(os.environ.get("HUB_BENCH_WRK_THREADS", "1"))  # 2 cores: wrk's own CPU comes out of the servers'
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"
LUA = r"""
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
wrk.headers["X-Purpose"] = "SHBZ"
wrk.headers["X-Case-Number"] = "BENCH-2026-0001"
request = function()
  return wrk.format(nil, "%(path)s", nil, '{"resident_id":"' .. ids[math.random(#ids)] .. '"}')
end
"""


def _ids(n: int) -> list[str]:
    """n distinct valid resident IDs (the sequence varies fastest within a birth date and is unique per i)."""
    out = []
    for i in range(n):
        born = date(1950 + (i // 1000) % 50, 1 + (i // 50_000) % 12, 1 + (i // 600_000) % 28)
        body = f"{420102 + (i // 16_800_000) % 9:06d}{born:%Y%m%d}{i % 1000:03d}"
        total = sum(int(body[k]) * WEIGHTS[k] for k in range(17))
        out.append(body + "10X98765432"[total % 11])
    return out


def build_population(engine: Any, n: int) -> float:
    """Insert n golden persons (as the merge would write them); returns seconds."""
    import sqlalchemy as sa

    from hub.models import Person
    from libraries.population import PopulationLibrary
    from hub.crypto import get_cipher

    started = time.perf_counter()
    library, cipher = PopulationLibrary(), get_cipher()
    ids = _ids(n)
    table = Person.__table__
    for start in range(0, n, CHUNK):
        part = ids[start:start + CHUNK]
        keys = cipher.index_hash_many(part)
        records = [{"id_number": rid, "name": SURNAMES[i % 20] + GIVEN[i % 23] + GIVEN[(i // 23) % 23],
                    "gender": "1" if int(rid[16]) % 2 else "2", "birth_date": date(int(rid[6:10]), int(rid[10:12]), int(rid[12:14])),
                    "ethnicity": "01", "region_code": rid[:6], "address": f"湖北省武汉市江岸区测试路{i % 999 + 1}号",
                    "phone": f"138{i % 100_000_000:08d}", "marital_status": "20" if i % 3 else "10", "death_date": None}
                   for i, rid in enumerate(part, start)]
        rows = library.database_rows(keys, records)
        for row in rows:
            row.update(source_id="gongan_hjrk", run_id="bench", updated_at=AT)
        with engine.begin() as connection:
            connection.execute(sa.insert(table), rows)
    return time.perf_counter() - started


def _free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until the server accepts connections (or fail with its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode(errors='replace')[-2000:] if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), totals and errors from wrk --latency output."""
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    out: dict[str, Any] = {}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["requests_per_s"] = round(float(rate.group(1))) if rate else 0
    total = re.search(r"(\d+) requests in", text)
    out["answered"] = int(total.group(1)) if total else 0
    for pct in ("50", "99"):
        found = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\b", text)
        out[f"p{pct}_ms"] = round(ms(*found.groups()), 2) if found else None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(bad.group(1)) if bad else 0
    errors = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = errors.group(1).strip() if errors else None
    return out


def parse_connections(text: str) -> tuple[int, ...]:
    """The --connections argument: one count ("64") or a latency curve ("16,32,64"), ascending, each 1…10,000."""
    try:
        points = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"连接数应为逗号分隔的整数 connections must be integers: {text!r}") from None
    if not points or any(not 1 <= p <= 10_000 for p in points):
        raise argparse.ArgumentTypeError(f"连接数应在 1–10000 之间 connections must be 1…10000: {text!r}")
    if list(points) != sorted(set(points)):
        raise argparse.ArgumentTypeError(f"连接数须递增且不重复 connections must be ascending and distinct: {text!r}")
    return points


def drive(port: int, path: str, key: str, ids_file: Path, seconds: int, folder: Path,
          connections: int | None = None) -> dict[str, Any]:
    """wrk against one server for `seconds` with `connections` (default CONNECTIONS)."""
    script = folder / f"lookup_{port}.lua"
    script.write_text(LUA % {"ids": ids_file, "key": key, "path": path}, encoding="utf-8")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk 未安装：apt-get install -y wrk")
    result = subprocess.run([wrk, f"-t{WRK_THREADS}", f"-c{connections or CONNECTIONS}", f"-d{seconds}s", "--latency",
                             "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(result.stdout)


def _env(url: str) -> dict[str, str]:
    """The environment of the servers: the benchmark's database, data root and key ring."""
    env = dict(os.environ)
    env["HUB_DATABASE_URL"] = url
    return env


def audit_rows(url: str, table: str = "audit_entry") -> int:
    """Rows in an audit table."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    finally:
        engine.dispose()


def _reset_database(url: str) -> None:
    """Drop and recreate the benchmark database (SQLite: delete the file and its WAL)."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def population_ready(engine: Any, persons: int) -> bool:
    """Whether the cached population has `persons` rows readable under this key ring (first and last ID present)."""
    import sqlalchemy as sa

    from hub.crypto import get_cipher
    from hub.models import Person

    table = Person.__table__
    cipher = get_cipher()
    with engine.connect() as connection:
        have = int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
        if have != persons:
            return False
        first, last = _ids(1)[0], _ids(persons)[-1]
        found = connection.execute(sa.select(sa.func.count()).select_from(table).where(
            table.c.person_id.in_([cipher.index_hash(first), cipher.index_hash(last)]))).scalar()
    if found != 2:
        return False  # a database built under another key ring answers 404 to every lookup
    from catalog.audit import _signing_key
    from hub.crypto import DecryptionError

    try:
        _signing_key(engine, AT)  # the audit checkpoint key, encrypted under the key ring the database was built with
    except DecryptionError:
        return False
    return True


def measure(url: str, folder: Path, persons: int, seconds: int, build_only: bool = False,
            connections: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Build or reuse the population, then the full run (at each connection count: the latency curve) and the bare
    run (at the highest count)."""
    points = connections or (CONNECTIONS,)
    import sqlalchemy as sa

    from catalog import access
    from catalog.audit import close_writers
    from hub.db import dispose_engines, engine_for, upgrade

    upgrade(url)
    engine = engine_for(url)
    build_seconds = None
    if not population_ready(engine, persons):
        # Built under another key ring, or another size: start from an empty database (the audit signing key and
        # every ciphertext in it belong to the key ring it was built with).
        dispose_engines()
        _reset_database(url)
        upgrade(url)
        engine = engine_for(url)
        build_seconds = round(build_population(engine, persons), 1)
    if build_only:
        dispose_engines()
        return {"persons": persons, "build_seconds": build_seconds}
    access.register_consumer(engine, "renshe", AT)
    _, key = access.issue_key(engine, "renshe", AT, "benchmark")
    ids_file = folder / "ids.txt"
    sample = _ids(persons)[:: max(1, persons // SAMPLE_IDS)]
    ids_file.write_text("\n".join(sample) + "\n", encoding="ascii")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS bench_bare_audit (id INTEGER PRIMARY KEY, at VARCHAR(40), "
                                   "consumer VARCHAR(32), body TEXT)" if url.startswith("sqlite") else
                                   "CREATE TABLE IF NOT EXISTS bench_bare_audit (id BIGSERIAL PRIMARY KEY, at VARCHAR(40), "
                                   "consumer VARCHAR(32), body TEXT)"))
    close_writers()
    dispose_engines()
    before = audit_rows(url)
    full = serve_and_drive(url, folder, key, ids_file, seconds, "hub", points)
    after = audit_rows(url)
    bare_before = audit_rows(url, "bench_bare_audit")
    bare = serve_and_drive(url, folder, key, ids_file, seconds, "bare", points[-1:])
    bare_after = audit_rows(url, "bench_bare_audit")
    full["audit_rows"] = after - before
    # wrk stops mid-flight: requests it sent but did not read (≤ connections per run) are audited, not counted.
    full["audit_rows_minus_answered"] = full["audit_rows"] - full["answered"]
    bare["audit_rows"] = bare_after - bare_before
    ratio = full["requests_per_s"] / bare["requests_per_s"] if bare["requests_per_s"] else None
    # each wrk run (the warm-up at the highest count, then every point) may leave up to its connections unread
    unread_bound = points[-1] + sum(points)
    return {"persons": persons, "build_seconds": build_seconds, "seconds": seconds, "connections": points[-1],
            "connections_curve": list(points), "wrk_threads": WRK_THREADS,
            "full": full, "bare": bare, "share_of_bare": round(ratio, 3) if ratio else None,
            "no_audit_lost": full["audit_rows"] >= full["answered"],
            "unread_at_cutoff_within_connections": 0 <= full["audit_rows"] - full["answered"] <= unread_bound}


def serve_and_drive(url: str, folder: Path, key: str, ids_file: Path, seconds: int, which: str,
                    points: tuple[int, ...] = ()) -> dict[str, Any]:
    """Start the server (hub serve, or the bare app on the same uvicorn settings), drive it at each connection count
    in `points` (ascending; default CONNECTIONS) for `seconds` each, stop it.

    The result is the last (heaviest) point's figures, with `answered` counting every run (for the audit check) and,
    for more than one point, `curve`: requests/s, p50, p99 and server CPU per request at each count."""
    points = points or (CONNECTIONS,)
    port = _free_port()
    if which == "hub":
        command = [sys.executable, "-m", "hub.cli", "serve", "--workers", "2", "--port", str(port), "--db", url]
        path = "/exchange/v1/persons/query"
    else:
        command = [sys.executable, "-m", "uvicorn", "benchmarks.exchange_lookup:bare_app", "--factory", "--workers", "2",
                   "--port", str(port), "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
                   "--backlog", "4096"]
        path = "/bare/lookup"
    process = subprocess.Popen(command, env=_env(url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=Path(__file__).resolve().parent.parent)
    try:
        _wait_port(port, process)
        time.sleep(1.0)
        # warm-up: connections, snapshots, statement caches
        answered = drive(port, path, key, ids_file, 2, folder, points[-1])["answered"]
        curve = []
        for connections in points:
            cpu = _cpu_seconds(process.pid)
            result = drive(port, path, key, ids_file, seconds, folder, connections)
            if cpu is not None and result["answered"]:
                # CPU of the server processes per answered request: the figure other sessions' load disturbs least
                result["server_cpu_us_per_request"] = round((_cpu_seconds(process.pid) - cpu) * 1e6 / result["answered"])
            answered += result["answered"]
            curve.append({"connections": connections, **{k: result.get(k) for k in CURVE_FIGURES}})
        result["answered"] = answered  # audit rows are counted over every run
        if len(points) > 1:
            result["curve"] = curve
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return result


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its children (uvicorn's workers), from /proc; None elsewhere."""
    try:
        pids = [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
        ticks = 0
        for one in pids:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def bare_app() -> Any:
    """The baseline: same request, one plain audit INSERT (autocommit, pooled connection), a small JSON answer."""
    import sqlalchemy as sa
    from fastapi import FastAPI

    engine = sa.create_engine(os.environ["HUB_DATABASE_URL"])
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    insert = sa.text("INSERT INTO bench_bare_audit (at, consumer, body) VALUES (:at, :consumer, :body)")
    app = FastAPI()

    @app.post("/bare/lookup")
    async def lookup(request: Request) -> Response:
        body = await request.body()
        connection.execute(insert, {"at": datetime.now(timezone.utc).isoformat(), "consumer": "renshe", "body": body.decode()})
        return Response(b'{"ok":true}', media_type="application/json")

    return app


def pg_database(persons: int) -> str | None:
    """URL of the cached PostgreSQL benchmark database (created if missing); None if the server is unreachable."""
    import sqlalchemy as sa

    name = f"hub_bench_exchange_{persons}"
    try:
        admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            if connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                connection.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
    except sa.exc.OperationalError:
        return None
    return sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def run(scale: float = 1.0, seconds: int | None = None, backends: tuple[str, ...] = ("sqlite", "postgresql"),
        build_only: bool = False, connections: tuple[int, ...] | None = None) -> dict:
    """Both databases at `scale` (1 = 1M persons), `seconds` of load each (default 60; env HUB_BENCH_SECONDS) at
    each connection count of `connections` (default: CONNECTIONS alone; e.g. (16, 32, 64) for the latency curve)."""
    from hub.crypto import get_cipher
    from hub.settings import get_settings

    seconds = seconds or int(os.environ.get("HUB_BENCH_SECONDS", "60"))
    persons = max(1_000, int(1_000_000 * scale))
    root = get_settings().data_root / "bench" / "exchange"
    root.mkdir(parents=True, exist_ok=True)
    keyring = root / "keyring.json"
    os.environ.setdefault("HUB_KEYRING_FILE", str(keyring))  # the cached DB's ciphertext needs the same key ring
    get_settings.cache_clear()
    get_cipher.cache_clear()
    load_before = os.getloadavg()
    out: dict[str, Any] = {"persons": persons, "seconds": seconds, "cores": os.cpu_count(),
                           "load_average_before": [round(x, 2) for x in load_before]}
    for backend in backends:
        if backend == "sqlite":
            url = f"sqlite:///{root / f'hub_{persons}.db'}"
        else:
            url = pg_database(persons)
            if url is None:
                out[backend] = {"skipped": "PostgreSQL unreachable"}
                continue
        folder = root / backend
        folder.mkdir(exist_ok=True)
        out[backend] = measure(url, folder, persons, seconds, build_only, connections)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 1,000,000 persons")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load per server (default 60)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--build-only", action="store_true", help="build (or check) the cached population, no load")
    parser.add_argument("--connections", type=parse_connections, default=(CONNECTIONS,),
                        help=f"wrk connections, or a latency curve such as 16,32,64 (default {CONNECTIONS})")
    parser.add_argument("--wrk-threads", type=int, default=WRK_THREADS, help=f"wrk threads (default {WRK_THREADS})")
    arguments = parser.parse_args()
    WRK_THREADS = arguments.wrk_threads
    chosen = ("sqlite", "postgresql") if arguments.backend == "both" else (arguments.backend,)
    print(json.dumps(run(arguments.scale, arguments.duration, chosen, arguments.build_only, arguments.connections),
                     ensure_ascii=False, indent=2, default=str))
