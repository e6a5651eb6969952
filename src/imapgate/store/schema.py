"""The database schema (SQLAlchemy Core).  Changing it means a new Alembic
revision in ``migrations/versions``; ``tests/store`` checks they agree.

Per-user flags are compact (DESIGN decision 5): one row per (user, mailbox,
flag) holding a UID range set, plus sparse per-user modseqs, rather than a row
per (user, message).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # Admins have every right on every folder (team/acl.py); at least one stays (acl_store).
    Column("admin", Boolean, nullable=False, default=False),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("delimiter", String(1), nullable=True),
    Column("attributes", Text, nullable=False, default=""),
    Column("uidvalidity", BigInteger, nullable=False, default=0),
    Column("uidnext", BigInteger, nullable=False, default=1),
    # Highest upstream modseq applied (0: upstream has no CONDSTORE or not synced yet).
    Column("upstream_modseq", BigInteger, nullable=False, default=0),
    # The gateway's own modseq counter for this mailbox (DESIGN decision 4).
    Column("modseq", BigInteger, nullable=False, default=1),
    # "private" / "shared" read state; NULL = the configured default.
    Column("seen_mode", String(16), nullable=True),
    Column("synced", Boolean, nullable=False, default=False),
)

messages = Table(
    "messages",
    metadata,
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("uid", BigInteger, primary_key=True, autoincrement=False),
    Column("internal_date", Float, nullable=False),
    Column("tz_offset", Integer, nullable=False, default=0),  # minutes east of UTC
    Column("size", BigInteger, nullable=False),
    Column("flags", Text, nullable=False, default=""),  # shared flags, space-separated
    Column("modseq", BigInteger, nullable=False),
    Column("message_id", Text, nullable=True),
)

private_flags = Table(
    "private_flags",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("flag", String(255), primary_key=True),
    Column("uids", LargeBinary, nullable=False),  # encoded UID range set
)

private_modseqs = Table(
    "private_modseqs",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("uid", BigInteger, primary_key=True, autoincrement=False),
    Column("modseq", BigInteger, nullable=False),
)

expunged = Table(
    "expunged",
    metadata,
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("uid", BigInteger, primary_key=True, autoincrement=False),
    Column("modseq", BigInteger, nullable=False),
)

# Where messages went (gateway/departures.py, replica/departures.py): one row per
# message that left a folder, written in the transaction of the replica's expunge,
# so a colleague who loses a race is told who moved or deleted it, where and when.
# Keyed by (folder, UIDVALIDITY, UID): a UID names a message only within its
# UIDVALIDITY.  No foreign key: a row is useless once its folder is gone, and the
# pruning (age, count) removes it; a cascade would make DELETE of a large folder
# slower for nothing.  kind: "moved" (dest set), "deleted", "hoster" (seen gone by
# the sync; user NULL).
departures = Table(
    "departures",
    metadata,
    Column("mailbox_id", Integer, primary_key=True, autoincrement=False),
    Column("uidvalidity", BigInteger, primary_key=True, autoincrement=False),
    Column("uid", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("user_name", String(255), nullable=True),
    Column("dest", Text, nullable=True),
    Index("ix_departures_ts", "ts"),
)

# Per-user subscription decisions: a row says the user subscribed (true) or
# unsubscribed (false) that name, which also outlives the folder (RFC 3501
# §6.3.6).  A folder without a row counts as subscribed while it exists, so a
# folder a colleague or the hoster creates appears in every client; CREATE
# through the gateway writes "false" for its creator (RFC: CREATE does not
# subscribe).  See team/subscriptions.py.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox", Text, primary_key=True),
    Column("subscribed", Boolean, nullable=False),
)

# Folder permissions (team/acl.py, team/acl_store.py).  An entry names a user, a group,
# anyone or authenticated (``principal``: "u:<id>", "g:<id>", "anyone", "authenticated"),
# with the user or group as a foreign key so removing them removes their entries: a new
# account with an old name must not inherit the old rights.  ``mailbox`` is the folder's
# name, not its id: ACLs exist for folders the replica has not synced yet, and RENAME
# moves them with the name.
acl_entries = Table(
    "acl_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox", Text, nullable=False),
    Column("principal", String(64), nullable=False),
    Column("negative", Boolean, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("group_id", Integer, ForeignKey("groups.id", ondelete="CASCADE"), nullable=True),
    Column("rights", String(32), nullable=False),
    UniqueConstraint("mailbox", "principal", "negative", name="uq_acl_entries_identifier"),
    Index("ix_acl_entries_mailbox", "mailbox"),
)

# Folders with an ACL of their own (which may have no entries left: then only admins
# have rights).  A folder without a row here uses ``[acl] default``.  Kept apart from the
# entries so that removing a user or group (whose entries go by cascade) or deleting an
# entry can never turn a closed folder into one open to the whole team.
acl_folders = Table(
    "acl_folders",
    metadata,
    Column("mailbox", Text, primary_key=True),
)

groups = Table(
    "groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

# One row (id 1): bumped in the transaction of every ACL, group, membership or admin
# change; running gateways compare it to reload their ACL table.
acl_state = Table(
    "acl_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

content = Table(
    "content",
    metadata,
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("uidvalidity", BigInteger, primary_key=True, autoincrement=False),
    Column("uid", BigInteger, primary_key=True, autoincrement=False),
    Column("item", String(512), primary_key=True),
    Column("data", LargeBinary, nullable=True),  # NULL = NIL
    Column("size", BigInteger, nullable=False),
    Column("last_used", Float, nullable=False),
    Index("ix_content_last_used", "last_used"),
)

journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("user_name", String(255), nullable=True),
    Column("client", Text, nullable=True),
    Column("command", String(32), nullable=False),
    Column("mailbox", Text, nullable=True),
    Column("uids", Text, nullable=True),
    Column("result", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    # The audit journal (team/audit.py): the stable action word (team/audit_actions.py),
    # the client's IMAP ID and peer address apart from ``client`` (their readable sum),
    # and where the change was made: "gateway", or "hoster" (seen by the sync).
    Column("action", String(32), nullable=True),
    Column("client_id", Text, nullable=True),
    Column("address", String(64), nullable=True),
    Column("origin", String(16), nullable=True),
    Index("ix_journal_ts", "ts"),
    # `imapgate audit --user X --since 7d` (and the newest first): one range scan.
    Index("ix_journal_user_ts", "user_name", "ts"),
    Index("ix_journal_mailbox_ts", "mailbox", "ts"),
    Index("ix_journal_action_ts", "action", "ts"),
)

# The messages one journal entry is about (UID, Message-ID, subject as known then):
# `imapgate audit --message-id M` is one indexed lookup across folders and renames,
# which the entry's UID-set text (cut for bulk changes) cannot give.
journal_messages = Table(
    "journal_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", Integer, ForeignKey("journal.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox", Text, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("subject", Text, nullable=True),
    Index("ix_journal_messages_entry", "entry_id"),
    Index("ix_journal_messages_message_id", "message_id"),
)

# What the double-reply guard remembers (submission/guard.py).  One row per
# message submitted through the gateway's SMTP server: "sending" while the hoster
# takes it, "sent" once the hoster accepted it, "unknown" when the gateway stopped
# (or the hoster's connection broke) after the end of the data went out and before
# the hoster answered, "refused" when the guard held it back (kept for the override
# window).  Keyed by Message-ID, not by folder and UID: a reply answers the mail
# wherever its copies are.
submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("user_name", String(255), nullable=False),
    # Message-ID of the submitted message (the gateway adds one when it has none).
    Column("message_id", Text, nullable=False),
    # Envelope recipients, lower case, sorted, joined by ", ".
    Column("recipients", Text, nullable=False),
    Column("subject", Text, nullable=False, default=""),
    # Message-ID of the mail it replies to (NULL: not a reply to a known mail).
    Column("original", Text, nullable=True),
    Column("state", String(16), nullable=False),
    # The refusal text, or why the outcome is unknown.
    Column("reason", Text, nullable=True),
    Index("ix_submissions_original", "original"),
    Index("ix_submissions_user_message", "user_name", "message_id"),
    Index("ix_submissions_ts", "ts"),
)

# \Answered set through the gateway (IMAP STORE, or a reply sent through its SMTP
# server), written in the same transaction as the STORE's journal entry: the guard
# tells "alice answered it" from "answered at the mail server" by these rows.
answer_marks = Table(
    "answer_marks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("user_name", String(255), nullable=False),
    Column("message_id", Text, nullable=False),
    Column("mailbox", Text, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Index("ix_answer_marks_message_id", "message_id"),
)

# Claims (issue 12): who handles a message.  The unique constraint on (mailbox_id, uid)
# decides the one winner when two members claim at the same moment (an INSERT that
# fails), on SQLite and PostgreSQL alike, so it holds across gateway nodes.
claims = Table(
    "claims",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),  # NULL: never ([claims] expire_after = "0")
    UniqueConstraint("mailbox_id", "uid", name="uq_claims_message"),
    Index("ix_claims_user_id", "user_id"),
    # Ids are never reused: they are the UIDs of the "Claimed by me" folders.
    sqlite_autoincrement=True,
)

# Internal notes (issue 15): a team member's note on a message, kept in the gateway only
# (never sent, never at the hoster; team/notes.py).  Found by Message-ID across folders, as
# a message's history is, or by folder and UID for a message without one.
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("user_name", String(255), nullable=False),
    Column("mailbox", Text, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("text", Text, nullable=False),
    Index("ix_notes_message_id", "message_id"),
    Index("ix_notes_mailbox_uid", "mailbox", "uid"),
)

intents = Table(
    "intents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("state", String(16), nullable=False),
)

# Recoverable deletes (gateway/recovery.py, docs/recovery.md): one row per message the
# gateway copied into the hidden recovery folder before removing it upstream.  State
# "pending" while the removal is under way (listed nowhere; settled from its intent),
# "kept" (recoverable), "restored", "purged" (retention), "void" (the removal did not
# happen: the original stayed, the copy was dropped).  Folder names, not mailbox ids:
# an item outlives its folder (DELETE) and is restored into a folder of that name.
recovery_items = Table(
    "recovery_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False),
    Column("intent_id", Integer, nullable=True),
    # Where the copy is: UID in the recovery folder at its UIDVALIDITY.
    Column("copy_uidvalidity", BigInteger, nullable=False),
    Column("copy_uid", BigInteger, nullable=True),
    # What it was.
    Column("mailbox", Text, nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    # The folder a restore puts it back into (the one before Trash, else ``mailbox``).
    Column("restore_to", Text, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("subject", Text, nullable=False, default=""),
    Column("sender", Text, nullable=False, default=""),
    Column("date", Text, nullable=False, default=""),
    Column("internal_date", Float, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("flags", Text, nullable=False, default=""),  # shared flags, space separated
    Column("private", Text, nullable=False, default="{}"),  # JSON {user id: [flags]}
    # Who removed it, when, with which client, by which command.
    Column("removed_by", String(255), nullable=True),
    Column("client", Text, nullable=True),
    Column("removed_at", Float, nullable=False),
    Column("how", String(32), nullable=False),
    Column("done_at", Float, nullable=True),  # restored / purged
    Index("ix_recovery_items_state_removed", "state", "removed_at"),
    Index("ix_recovery_items_origin", "mailbox", "uidvalidity", "uid"),
)

# Messages moved to a \Trash folder through the gateway, by Message-ID: an item
# expunged there is restored to the folder it was in before Trash.
recovery_trash = Table(
    "recovery_trash",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("trash", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("origin", Text, nullable=False),
    Index("ix_recovery_trash_message", "trash", "message_id"),
)

# The search index (imapgate.index.store): one row per folder generation (a mailbox at
# one UIDVALIDITY, indexed with one extractor version) and one per indexed message.
# No foreign key to mailboxes: a generation outlives its mailbox until the indexer has
# purged its rows from the FTS tables (which need the indexed texts to delete them).
search_folders = Table(
    "search_folders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox_id", Integer, nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # current / retired
    Column("version", Integer, nullable=False),
    Column("fetched_bytes", BigInteger, nullable=False, default=0),
    Column("rate", Float, nullable=False, default=0.0),  # messages/s lately
    Column("updated", Float, nullable=False),
    Column("zdict", LargeBinary, nullable=True),  # compression dictionary of its docs
    Index("ix_search_folders_mailbox", "mailbox_id"),
    sqlite_autoincrement=True,
)

search_docs = Table(
    "search_docs",
    metadata,
    # gen << 32 | uid: the rowid of the FTS tables too.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("gen", Integer, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("level", Integer, nullable=False),  # 1 header fields, 2 whole message
    Column("certain", Boolean, nullable=False),
    Column("size", BigInteger, nullable=False),  # bytes fetched
    Column("text_bytes", BigInteger, nullable=False),  # characters indexed
    Column("data", LargeBinary, nullable=False),  # compressed JSON [columns, top headers]
)

meta = Table(
    "meta",
    metadata,
    # The primary key is its unique constraint (0001 also declared a redundant UNIQUE,
    # which SQLite keeps and PostgreSQL drops: the schema says what both have).
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

# Several nodes on one database (store/counters.py, replica/pgbus.py).  ``counters``: the
# high-water marks of the shared allocators ("mailbox_id", "modseq:<mailbox id>"), each
# advanced by one UPDATE, so two nodes never hand out the same value.
counters = Table(
    "counters",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# The change sets the change bus carries between nodes, in commit order by ``id``: the
# NOTIFY says only "there is news"; a node reads every row above the last id it applied,
# also after a lost connection (catch-up).  Trimmed by age (replica/pgbus.py).
change_log = Table(
    "change_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("node", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
    sqlite_autoincrement=True,
)


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: the search index's FTS5 tables (and their shadow
    tables) are made by hand in their migration, so autogenerate and the schema test
    must neither create nor drop them."""
    return not (type_ == "table" and name is not None and name.startswith("search_fts_"))
