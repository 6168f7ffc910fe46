"""Alembic migrations of the hub database (run them with `hub db upgrade` or hub.db.upgrade())."""
