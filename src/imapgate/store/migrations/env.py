"""Alembic environment: runs migrations on the connection imapgate hands in."""

from __future__ import annotations

from alembic import context

from imapgate.store.schema import include_name, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("imapgate migrations run through imapgate.store.engine.upgrade()")

context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, include_name=include_name
)
with context.begin_transaction():
    context.run_migrations()
