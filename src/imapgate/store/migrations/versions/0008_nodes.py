"""several nodes on one database: allocation counters and the change log of the bus

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:40:00

``counters`` holds the shared allocators' high-water marks (mailbox ids, and each
mailbox's modseq blocks); ``change_log`` the change sets the change bus carries between
nodes (the NOTIFY payload is only the row's id).  Both start empty: a single node's
store gets its counters from the mailboxes' own columns on first use.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "change_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        # Ids are never reused after a trim: a node's "read up to id N" stays true.
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("change_log")
    op.drop_table("counters")
