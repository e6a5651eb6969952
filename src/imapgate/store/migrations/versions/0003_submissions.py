"""submissions and answer marks (the double-reply guard)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("original", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index("ix_submissions_original", ["original"], unique=False)
        batch_op.create_index("ix_submissions_user_message", ["user_name", "message_id"], unique=False)
        batch_op.create_index("ix_submissions_ts", ["ts"], unique=False)
    op.create_table(
        "answer_marks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("answer_marks", schema=None) as batch_op:
        batch_op.create_index("ix_answer_marks_message_id", ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("answer_marks", schema=None) as batch_op:
        batch_op.drop_index("ix_answer_marks_message_id")
    op.drop_table("answer_marks")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_submissions_ts")
        batch_op.drop_index("ix_submissions_user_message")
        batch_op.drop_index("ix_submissions_original")
    op.drop_table("submissions")
