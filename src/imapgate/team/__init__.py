"""Team state: users, (later) groups, ACLs, claims, journal, recovery.
Knows nothing of IMAP sessions or sockets."""
