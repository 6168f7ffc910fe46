"""Extracting a PostgreSQL table to Parquet: the production path against a raw COPY baseline.

A throw-away database on the local server gets an hjrk-like table (12 columns: ids, names, dates as text,
a timestamp) of N = 1,000,000 × scale rows, and a second one of 5 × N rows, both loaded with COPY.
Each table is then extracted twice, every extract in its own process so that its peak memory (ru_maxrss,
read with os.wait4) is its own:

- production: `SqlConnector.read_batches()` into `write_landing()`, exactly as a collection run does;
- baseline: `COPY (SELECT …) TO STDOUT (FORMAT csv)` streamed from psycopg, parsed by pyarrow.csv and
  written to Parquet (zstd, like the landing) — about the least any extract from PostgreSQL can do;
- cursor (N only, for reference): the production path with its PostgreSQL COPY path switched off, i.e. the
  portable server-side-cursor path that MariaDB and SQLite sources take.

The N-row extracts run three times, interleaved, and report their median (the machine is shared with the
database server). On Linux a child's ru_maxrss starts at its parent's resident size when it was forked (the high-water mark
survives fork and exec), so the tables are generated in a child process too: the process that starts the
extracts stays small, and each extract's figure is its own.

Targets: production ≥ 50 % of the baseline's rows/s, and peak memory that does not grow with table size.
The server URL is $HUB_BENCH_PG_URL (default: the local test server).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

ADMIN_URL = os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COLUMNS = (
    ("rkid", "BIGINT PRIMARY KEY", pa.int64()), ("gmsfhm", "VARCHAR(18)", pa.string()), ("xm", "VARCHAR(64)", pa.string()),
    ("xb", "VARCHAR(4)", pa.string()), ("mz", "VARCHAR(4)", pa.string()), ("csrq", "VARCHAR(32)", pa.string()),
    ("hjdz_xzqh", "VARCHAR(6)", pa.string()), ("hjdz", "VARCHAR(255)", pa.string()), ("lxdh", "VARCHAR(32)", pa.string()),
    ("hyzk", "VARCHAR(4)", pa.string()), ("swrq", "VARCHAR(32)", pa.string()), ("gxsj", "TIMESTAMP", pa.timestamp("us")),
)
LOAD_CHUNK = 250_000
URL_VARIABLE = "HUB_BENCH_EXTRACT_URL"
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红玉文斌海燕")
STREETS = ["解放大道", "中山路", "珞喻路", "建设大道", "友谊大道", "民族大道", "武珞路", "雄楚大道", "光谷大道", "和平大道"]
CITIES = ["武汉市江岸区", "武汉市洪山区", "宜昌市西陵区", "襄阳市樊城区", "荆州市沙市区", "黄石市下陆区", "十堰市茅箭区"]


def run(scale: float = 1.0) -> dict:
    """Build the tables, run the four extracts (production and baseline at N and 5 × N) and report."""
    n = max(1000, int(1_000_000 * scale))
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {database}"))
    url = sa.make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)
    try:
        started = time.perf_counter()
        run_child(["--child", "load", "--rows", str(n)], url)
        load_seconds = time.perf_counter() - started
        figures: dict[str, Any] = {"rows": n, "rows_large": 5 * n, "load_seconds": round(load_seconds, 1)}
        with tempfile.TemporaryDirectory(prefix="bench-extract-") as folder:
            # (suffix, table, paths, repeats): the N-row extracts are quick, so they run 3 times, interleaved, and
            # report the median time (this 2-core machine also runs the database server) and the largest peak.
            plan = (("", "bench_small", ("baseline", "production"), 3), ("", "bench_small", ("cursor",), 1),
                    ("_5x", "bench_big", ("baseline", "production"), 1))
            for size, table, paths, repeats in plan:
                results: dict[str, list[dict]] = {path: [] for path in paths}
                for attempt in range(repeats):
                    for path in paths:
                        results[path].append(extract_in_child(path, url, table, Path(folder) / f"{path}{size}-{attempt}"))
                for path, runs in results.items():
                    figures |= summarise(f"{path}{size}", runs)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
    for size in ("", "_5x"):
        figures[f"ratio{size}"] = round(figures[f"production{size}_rows_per_second"] / figures[f"baseline{size}_rows_per_second"], 2)
    figures["cursor_ratio"] = round(figures["cursor_rows_per_second"] / figures["baseline_rows_per_second"], 2)
    figures["target_ratio"] = 0.5
    figures["production_memory_growth_1x_to_5x"] = round(figures["production_5x_peak_rss_mib"] / figures["production_peak_rss_mib"], 2)
    figures["baseline_memory_growth_1x_to_5x"] = round(figures["baseline_5x_peak_rss_mib"] / figures["baseline_peak_rss_mib"], 2)
    return figures


def summarise(prefix: str, runs: list[dict]) -> dict:
    """Figures of repeated runs of one extract: median time and rate, largest peak memory."""
    seconds = statistics.median(r["seconds"] for r in runs)
    figures = {f"{prefix}_rows": runs[0]["rows"], f"{prefix}_seconds": seconds,
               f"{prefix}_rows_per_second": round(runs[0]["rows"] / seconds),
               f"{prefix}_peak_rss_mib": max(r["peak_rss_mib"] for r in runs), f"{prefix}_parquet_mib": runs[0]["parquet_mib"]}
    if len(runs) > 1:
        figures[f"{prefix}_all_seconds"] = [r["seconds"] for r in runs]
    return figures


def source_chunk(start: int, count: int, rng: np.random.Generator) -> pa.Table:
    """count rows of a realistic household-registration table, ids from start + 1 (vectorised)."""
    ids = np.arange(start + 1, start + count + 1, dtype=np.int64)
    birth = np.datetime64("1940-01-01") + rng.integers(0, 80 * 365, count).astype("timedelta64[D]")
    birth_text = pc.strftime(pa.array(birth.astype("datetime64[s]")), format="%Y%m%d")
    region = pa.array(rng.choice(["420102", "420111", "420502", "420606", "420802", "421002"], count))
    serial = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10_000, count)), pa.string()), 4, "0")
    names = pc.binary_join_element_wise(
        pa.array(rng.choice(SURNAMES, count)), pa.array(rng.choice(GIVEN, count)),
        pa.array(np.where(rng.random(count) < 0.6, rng.choice(GIVEN, count), "")), "")
    address = pc.binary_join_element_wise(
        pa.array(rng.choice(CITIES, count)), pa.array(rng.choice(STREETS, count)),
        pc.cast(pa.array(rng.integers(1, 999, count)), pa.string()), pa.scalar("号"), "")
    phone = pc.binary_join_element_wise(pa.scalar("13"), pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**9, count)), pa.string()), 9, "0"), "")
    died = rng.random(count) < 0.05
    death = pc.if_else(pa.array(died), pc.strftime(pa.array((birth + 70 * 365).astype("datetime64[s]")), format="%Y-%m-%d"), pa.scalar(None, pa.string()))
    updated = np.datetime64("2020-01-01T00:00:00") + rng.integers(0, 6 * 365 * 86400, count).astype("timedelta64[s]")
    return pa.table({
        "rkid": ids,
        "gmsfhm": pc.binary_join_element_wise(region, birth_text, serial, ""),
        "xm": names,
        "xb": pa.array(rng.choice(["1", "2"], count)),
        "mz": pa.array(rng.choice(["01", "02", "03", "08", "15"], count)),
        "csrq": pc.strftime(pa.array(birth.astype("datetime64[s]")), format="%Y年%m月%d日"),
        "hjdz_xzqh": region,
        "hjdz": address,
        "lxdh": phone,
        "hyzk": pa.array(rng.choice(["10", "20", "30", "40"], count)),
        "swrq": death,
        "gxsj": pa.array(updated.astype("datetime64[us]")),
    })


def create_table(url: str, table: str, rows: int) -> None:
    """Create and fill the table with COPY FROM STDIN, chunk by chunk, then VACUUM ANALYZE it."""
    import psycopg

    rng = np.random.default_rng(20261123)
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        columns = ", ".join(f"{name} {ddl}" for name, ddl, _ in COLUMNS)
        connection.execute(f"CREATE UNLOGGED TABLE {table} ({columns})")
        with connection.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, rows, LOAD_CHUNK):
                sink = pa.BufferOutputStream()
                pacsv.write_csv(source_chunk(start, min(LOAD_CHUNK, rows - start), rng), sink,
                                pacsv.WriteOptions(include_header=False))
                copy.write(sink.getvalue())
        # Set hint bits and statistics now, so the first extract does not pay for them.
        connection.execute(f"VACUUM ANALYZE {table}")


def create_small_copy(url: str, table: str, source: str, rows: int) -> None:
    """The first `rows` rows of the large table as a table of their own."""
    import psycopg

    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        connection.execute(f"CREATE UNLOGGED TABLE {table} AS SELECT * FROM {source} WHERE rkid <= {int(rows)}")
        connection.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (rkid)")
        connection.execute(f"VACUUM ANALYZE {table}")


def extract_in_child(path: str, url: str, table: str, out: Path) -> dict:
    """Run one extract in a new process; its figures plus its own peak RSS (MiB) from os.wait4."""
    output, usage = run_child(["--child", path, "--table", table, "--out", str(out)], url)
    result = json.loads(output.decode().strip().splitlines()[-1])
    return result | {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def run_child(arguments: list[str], url: str) -> tuple[bytes, Any]:
    """Run this module as a child process; its standard output and its resource usage (os.wait4)."""
    # The URL travels in the environment, not on the command line (where `ps` would show a password).
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.extract_postgres", *arguments],
                                   stdout=subprocess.PIPE, stderr=errors, env=os.environ | {URL_VARIABLE: url})
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            last = errors.read().decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"{' '.join(arguments[:2])} failed: {last}")
    return output, usage


def load(url: str, rows: int) -> dict:
    """Create the large table and the small one (its first `rows` rows)."""
    create_table(url, "bench_big", 5 * rows)
    create_small_copy(url, "bench_small", "bench_big", rows)
    return {"rows": rows}


def production_extract(url: str, table: str, out: Path, use_copy: bool = True) -> dict:
    """The collection path: SqlConnector batches into an atomic landing."""
    from connectors.landing import write_landing
    from connectors.sql import SqlConnector

    started = time.perf_counter()
    connector = SqlConnector("bench_extract", url, table, ("rkid",), "gxsj", use_copy=use_copy)
    landing = write_landing(out, "bench_extract", "bench", connector.arrow_schema(), connector.read_batches(),
                            watermark=lambda: connector.watermark)
    seconds = time.perf_counter() - started
    return {"rows": landing.rows, "seconds": round(seconds, 2), "parquet_mib": round(Path(landing.path).stat().st_size / 2**20, 1)}


def baseline_extract(url: str, table: str, out: Path) -> dict:
    """The raw baseline: COPY … TO STDOUT (FORMAT csv) from psycopg, parsed by pyarrow.csv, written as Parquet."""
    from connectors.sql import _CopyStream  # the same byte-stream adapter; the baseline skips the rest

    import psycopg

    started = time.perf_counter()
    names = [name for name, _, _ in COLUMNS]
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    with psycopg.connect(_conninfo(url)) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY (SELECT {', '.join(names)} FROM {table}) TO STDOUT (FORMAT csv)") as copy:
            reader = pacsv.open_csv(
                _CopyStream(copy),
                read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 20),
                convert_options=pacsv.ConvertOptions(column_types={n: t for n, _, t in COLUMNS}, strings_can_be_null=True,
                                                     quoted_strings_can_be_null=False),
            )
            with pq.ParquetWriter(out / "data.parquet", reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "parquet_mib": round((out / "data.parquet").stat().st_size / 2**20, 1)}


def _conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["load", "production", "cursor", "baseline"], required=True)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--table")
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    if arguments.child == "load":
        print(json.dumps(load(os.environ[URL_VARIABLE], arguments.rows)), flush=True)
    elif arguments.child == "baseline":
        print(json.dumps(baseline_extract(os.environ[URL_VARIABLE], arguments.table, arguments.out)), flush=True)
    else:
        figures = production_extract(os.environ[URL_VARIABLE], arguments.table, arguments.out, use_copy=arguments.child == "production")
        print(json.dumps(figures), flush=True)
