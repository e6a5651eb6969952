"""search index: folder generations, indexed messages, FTS5 tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

#: subject, from, to, cc, bcc (from the header fields), headers of every part, body text.
FTS_COLUMNS = ("subject", "from", "to", "cc", "bcc", "headers", "body")

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_folders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fetched_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("zdict", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("search_folders", schema=None) as batch_op:
        batch_op.create_index("ix_search_folders_mailbox", ["mailbox_id"], unique=False)
    op.create_table(
        "search_docs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("gen", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("certain", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("text_bytes", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Contentless FTS5 with the trigram tokenizer on normalized text (case_sensitive:
        # the text is already case-mapped); rowid = search_docs.id.  (PostgreSQL: pg_trgm
        # indexes, added with the PostgreSQL store.)
        # One table per column: a column filter makes FTS5 read every column's positions.
        opts = "tokenize='trigram case_sensitive 1', content='', columnsize=0"
        for column in FTS_COLUMNS:
            op.execute(f"CREATE VIRTUAL TABLE search_fts_{column} USING fts5(t, {opts})")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for column in FTS_COLUMNS:
            op.execute(f"DROP TABLE IF EXISTS search_fts_{column}")
    op.drop_table("search_docs")
    with op.batch_alter_table("search_folders", schema=None) as batch_op:
        batch_op.drop_index("ix_search_folders_mailbox")
    op.drop_table("search_folders")
