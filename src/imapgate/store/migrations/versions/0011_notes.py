"""notes: internal notes of the team on messages (issue 15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 13:05:00

One row per note: who wrote it, when, on which message (Message-ID, and folder/UID as
the journal's message rows keep them).  Kept in the gateway only; never sent.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index("ix_notes_message_id", ["message_id"], unique=False)
        batch_op.create_index("ix_notes_mailbox_uid", ["mailbox", "uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index("ix_notes_mailbox_uid")
        batch_op.drop_index("ix_notes_message_id")
    op.drop_table("notes")
