"""The gateway's side towards the real mailbox: an asyncio IMAP client on the
sans-IO codec, a bounded connection pool, and the sync engine that keeps the
replica current.  Knows nothing of client sessions."""
