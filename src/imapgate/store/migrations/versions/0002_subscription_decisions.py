"""subscriptions as per-user decisions (subscribed or not) instead of exceptions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 05:00:00

Every row of ``unsubscriptions`` becomes an "unsubscribed" decision; folders
without a decision keep counting as subscribed while they exist.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "mailbox"),
    )
    op.execute(
        "INSERT INTO subscriptions (user_id, mailbox, subscribed) "
        "SELECT user_id, mailbox, false FROM unsubscriptions"
    )
    op.drop_table("unsubscriptions")


def downgrade() -> None:
    op.create_table(
        "unsubscriptions",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "mailbox"),
    )
    # Explicit "subscribed" decisions have no place in the old model (everything
    # not unsubscribed counted as subscribed): only the "no"s go back.
    op.execute(
        "INSERT INTO unsubscriptions (user_id, mailbox) "
        "SELECT user_id, mailbox FROM subscriptions WHERE NOT subscribed"
    )
    op.drop_table("subscriptions")
