"""audit journal: action, client ID, address and origin per entry; per-message rows; indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

Existing entries keep their columns; their new ones stay NULL (the action word is
derived from the command when read, see team/audit_actions.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch mode): nullable columns need no table rebuild in SQLite.
    op.add_column("journal", sa.Column("action", sa.String(length=32), nullable=True))
    op.add_column("journal", sa.Column("client_id", sa.Text(), nullable=True))
    op.add_column("journal", sa.Column("address", sa.String(length=64), nullable=True))
    op.add_column("journal", sa.Column("origin", sa.String(length=16), nullable=True))
    op.create_index("ix_journal_user_ts", "journal", ["user_name", "ts"], unique=False)
    op.create_index("ix_journal_mailbox_ts", "journal", ["mailbox", "ts"], unique=False)
    op.create_index("ix_journal_action_ts", "journal", ["action", "ts"], unique=False)
    op.create_table(
        "journal_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["journal.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_journal_messages_entry", "journal_messages", ["entry_id"], unique=False)
    op.create_index("ix_journal_messages_message_id", "journal_messages", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_journal_messages_message_id", table_name="journal_messages")
    op.drop_index("ix_journal_messages_entry", table_name="journal_messages")
    op.drop_table("journal_messages")
    op.drop_index("ix_journal_action_ts", table_name="journal")
    op.drop_index("ix_journal_mailbox_ts", table_name="journal")
    op.drop_index("ix_journal_user_ts", table_name="journal")
    with op.batch_alter_table("journal") as batch_op:
        batch_op.drop_column("origin")
        batch_op.drop_column("address")
        batch_op.drop_column("client_id")
        batch_op.drop_column("action")
