"""departures: who moved or deleted a message, where to and when (conflicts without claims)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00

One row per message that left a folder through the gateway or was seen gone by the
sync; read when a colleague's command names a message that is gone
(``NO [EXPUNGEISSUED] alice moved this message to A at 10:42``).  Bounded by age and
count (``replica/departures.py``).  The lead re-chains revisions at merge.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "departures",
        sa.Column("mailbox_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("uid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=True),
        sa.Column("dest", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("mailbox_id", "uidvalidity", "uid"),
    )
    with op.batch_alter_table("departures", schema=None) as batch_op:
        batch_op.create_index("ix_departures_ts", ["ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("departures", schema=None) as batch_op:
        batch_op.drop_index("ix_departures_ts")
    op.drop_table("departures")
