"""The replica: the upstream mailbox's state held by the gateway (mailbox
list, per-mailbox message index with the gateway's own modseqs, per-user
private flags, content cache), persisted in the store and kept in memory for
the hot paths.  Knows nothing of IMAP sessions or sockets."""
