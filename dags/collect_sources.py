"""Airflow: one collection DAG per registered source (collect_<source_id>), generated from connectors/sources.yaml."""

from connectors.registry import all_sources
from hub.dag_factory import collection_dag

for _spec in all_sources():
    globals()[_spec.dag_id] = collection_dag(_spec)
