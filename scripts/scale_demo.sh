#!/bin/sh
# make scale-demo: the hub's DAGs on Airflow with a PostgreSQL metadata database and the CeleryExecutor
# (Redis broker on 127.0.0.1:6379, two worker processes), one full run at world scale 0.01, then torn down.
# Needs the local PostgreSQL (127.0.0.1:5432, user postgres) and Redis servers. Options: --scale, --timeout, --keep.
set -eu
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PATH="$(pwd)/$BIN:$PATH"  # Airflow starts `airflow` subprocesses
exec "$BIN/python" -m hub.scale_demo "$@"
