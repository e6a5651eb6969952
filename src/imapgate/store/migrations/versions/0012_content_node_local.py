"""content: node-local beside PostgreSQL (issue 16)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 18:10:00

A PostgreSQL store keeps no message content any more: each node caches it in its own data
folder (``node-cache.sqlite3``).  What an earlier version cached in the shared ``content``
table is removed: it is a cache (the nodes fetch what they need again), and left there it
would only take the database's disk.  A SQLite store (one node) keeps its rows: the table is
its cache.  Nothing of the schema changes.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("TRUNCATE TABLE content")


def downgrade() -> None:
    pass  # nothing to restore: an older version fills the cache again as it reads
