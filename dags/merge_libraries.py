"""Airflow: one merge DAG per base library (merge_<library>), scheduled by the landing Assets of its sources."""

from connectors.registry import sources_for
from hub.dag_factory import merge_dag

for _library in ("population", "legal_entity", "licence", "credit"):
    if sources_for(_library, merged_only=True):
        globals()[f"merge_{_library}"] = merge_dag(_library)
