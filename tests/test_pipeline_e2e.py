"""End to end: the simulated province at small scale, every DAG run by Airflow with dag.test(), counts checked."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connectors.registry import all_sources, get_source

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _forget_settings() -> None:
    """Drop every process-wide cache built from settings: settings, field cipher, department signing keys."""
    from hub.crypto import get_cipher
    from hub.settings import get_settings
    from licences import keys

    get_settings.cache_clear()
    get_cipher.cache_clear()
    keys._cache_clear()


@pytest.fixture
def fresh_data_root(airflow_session, tmp_path, monkeypatch) -> Iterator[None]:
    """A data root of its own, as on a newcomer's machine.

    Other tests in this worker's Airflow session leave a world, keys, a cached key ring and collection
    watermarks behind, which would turn this test's "first" run into an incremental one or encrypt with a
    test key ring. Airflow's home stays the session's: its metadata DB is migrated once per worker."""
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_AIRFLOW_HOME", str(get_settings().airflow_home))
    monkeypatch.setenv("HUB_DATA_ROOT", str(tmp_path / "data"))
    for variable in ("HUB_KEYRING", "HUB_DATABASE_URL", "HUB_WORLD_DIR", "HUB_KEYRING_FILE"):
        monkeypatch.delenv(variable, raising=False)
    _forget_settings()
    yield
    monkeypatch.undo()
    _forget_settings()


def test_make_run_path_end_to_end_and_rerun(fresh_data_root) -> None:
    from hub.pipeline import run_pipeline
    from hub.settings import get_settings

    lines: list[str] = []
    first = run_pipeline(scale=0.001, seed=7, progress=lines.append)
    world = json.loads((get_settings().world_dir / "world.json").read_text(encoding="utf-8"))

    # Every registered source was collected, and every row it sent is accounted for.
    landed = {spec.id for spec in all_sources()}
    assert set(first["sources"]) == landed, lines
    for source_id, row in first["sources"].items():
        assert row["extracted"] == world["counts"]["sources"][source_id], source_id
        if get_source(source_id).merge and get_source(source_id).library in ("population", "legal_entity"):
            assert row["loaded"] + row["rejected"] == row["extracted"], source_id
    assert first["libraries"]["population"] > 0.9 * world["counts"]["truth"]["persons"]
    assert first["libraries"]["legal_entity"] > 0.9 * world["counts"]["truth"]["entities"]
    assert any("merge_population" in line and "success" in line for line in lines)

    # A second run finds nothing new: incremental sources land nothing, libraries are unchanged.
    second = run_pipeline(scale=0.001, seed=7, progress=lines.append)
    assert second["libraries"] == first["libraries"]
    assert second["sources"] == first["sources"], "a rerun must not extract or load any row again"
