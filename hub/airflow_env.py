"""The environment Airflow runs in: the shipped airflow.cfg, an Airflow home under the data root, the dags folder.

Everything that starts Airflow — `hub run`, `make airflow`, the tests — goes through `apply()`, so the
scheduler, the UI and `dag.test()` all see the same configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

from hub.settings import PROJECT_ROOT, Settings, get_settings

AIRFLOW_CONFIG_FILE = PROJECT_ROOT / "airflow.cfg"
DAGS_FOLDER = PROJECT_ROOT / "dags"


def airflow_environ(settings: Settings | None = None) -> dict[str, str]:
    """Environment variables that point Airflow at the hub's configuration."""
    settings = settings or get_settings()
    return {
        "HUB_PROJECT_ROOT": str(PROJECT_ROOT),
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW_CONFIG": str(AIRFLOW_CONFIG_FILE),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": str(settings.airflow_database_url),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Airflow's settings come from here, the hub's from HUB_*: pass the data root on to task processes.
        "HUB_DATA_ROOT": str(settings.data_root),
    }


def apply(settings: Settings | None = None) -> dict[str, str]:
    """Set the Airflow environment in this process (before airflow is imported) and return it."""
    environ = airflow_environ(settings)
    os.environ.update(environ)
    Path(environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    return environ
