"""The IMAP server: listeners, sessions (one per client connection), each
session's view of its selected mailbox, and the command handlers."""
