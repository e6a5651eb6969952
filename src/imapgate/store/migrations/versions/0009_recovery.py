"""recovery: recoverable deletes (recovery_items) and where Trash messages came from (recovery_trash)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00

Two new tables, nothing existing changes.  (The lead re-chains this after the other
features' revisions at merge; 0005 is the revision id of 0005_acl.py.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recovery_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("intent_id", sa.Integer(), nullable=True),
        sa.Column("copy_uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("copy_uid", sa.BigInteger(), nullable=True),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("restore_to", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("date", sa.Text(), nullable=False),
        sa.Column("internal_date", sa.Float(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("private", sa.Text(), nullable=False),
        sa.Column("removed_by", sa.String(length=255), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("removed_at", sa.Float(), nullable=False),
        sa.Column("how", sa.String(length=32), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_recovery_items_state_removed", "recovery_items", ["state", "removed_at"])
    op.create_index("ix_recovery_items_origin", "recovery_items", ["mailbox", "uidvalidity", "uid"])
    op.create_table(
        "recovery_trash",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("trash", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_recovery_trash_message", "recovery_trash", ["trash", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_recovery_trash_message", table_name="recovery_trash")
    op.drop_table("recovery_trash")
    op.drop_index("ix_recovery_items_origin", table_name="recovery_items")
    op.drop_index("ix_recovery_items_state_removed", table_name="recovery_items")
    op.drop_table("recovery_items")
