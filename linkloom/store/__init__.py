"""Persistence: SQLAlchemy tables, Alembic migrations, and the repositories over them.

Key contracts:
- The only package that imports SQLAlchemy; repositories return engine/domain records,
  never rows or ORM objects, and turn ``IntegrityError`` into ``Conflict`` errors.
- ``session.Database`` serves SQLite (WAL, BEGIN IMMEDIATE writers: never "database is
  locked") and PostgreSQL (psycopg 3); ``session.upgrade(url)`` migrates on start.
- ``runs.SqlRunStore`` implements ``linkloom.engine.store_port.RunStore``.
- ``runs`` has UNIQUE(flow_id, schedule_id, fire_time): a schedule can never fire twice.
"""

from __future__ import annotations
