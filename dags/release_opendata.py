"""Airflow: release_opendata — de-identified, versioned, signed open-data releases when a base library changes."""

from opendata.dag_factory import release_opendata_dag

release_opendata = release_opendata_dag()
