"""imapgate: an IMAP gateway that makes a shared mailbox safe for a whole team."""

__version__ = "0.1.0"
