"""Airflow: licence_reminders — daily expiry marking and 90/30/7-day reminders to licence holders."""

from licences.dag_factory import licence_reminders_dag

licence_reminders = licence_reminders_dag()
