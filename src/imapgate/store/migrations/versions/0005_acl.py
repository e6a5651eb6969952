"""folder permissions: ACL entries and folders, groups and their members, the ACL version, admins

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00

Existing folders get no entries, so they use ``[acl] default`` (every team member has
"lrswipkxte", as before); nobody is an admin until ``imapgate user set NAME --admin``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, never batch mode: batch mode rebuilds ``users`` in SQLite, and
    # with foreign keys on, dropping the old table cascades to every user's private flags,
    # modseqs and subscriptions.
    op.add_column("users", sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_table(
        "acl_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("negative", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("rights", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox", "principal", "negative", name="uq_acl_entries_identifier"),
    )
    with op.batch_alter_table("acl_entries", schema=None) as batch_op:
        batch_op.create_index("ix_acl_entries_mailbox", ["mailbox"], unique=False)
    op.create_table(
        "acl_folders",
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox"),
    )
    acl_state = op.create_table(
        "acl_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(acl_state, [{"id": 1, "version": 1}])


def downgrade() -> None:
    op.drop_table("acl_state")
    op.drop_table("acl_folders")
    with op.batch_alter_table("acl_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_acl_entries_mailbox")
    op.drop_table("acl_entries")
    op.drop_table("group_members")
    op.drop_table("groups")
    # DROP COLUMN (SQLite >= 3.35), not batch mode, for the reason given in upgrade().
    op.drop_column("users", "admin")
