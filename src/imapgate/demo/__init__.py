"""Real IMAP peers and realistic sample mail, for ``imapgate demo`` and for the tests.

A standalone helper layer: nothing here imports the rest of imapgate, so the tests can use it to
check the gateway against servers nobody on this team wrote.

* :mod:`.sample_mail` — deterministic sample mailbox of a small European company (``info@``)
  and fast bulk messages for large-folder benchmarks;
* :mod:`.dovecot` — a private Dovecot 2.3 instance (the usual "hoster" upstream);
* :mod:`.pymap_server` — pymap, a minimal upstream without CONDSTORE/QRESYNC/NOTIFY.
"""

from __future__ import annotations

from .dovecot import DovecotError, DovecotServer, ensure_vmail_user, find_free_port, mutf7_encode
from .pymap_server import PymapError, PymapServer
from .sample_mail import FOLDERS, MAILBOX_ADDRESS, SampleMessage, generate_bulk, generate_mailbox

__all__ = [
    "FOLDERS",
    "MAILBOX_ADDRESS",
    "DovecotError",
    "DovecotServer",
    "PymapError",
    "PymapServer",
    "SampleMessage",
    "ensure_vmail_user",
    "find_free_port",
    "generate_bulk",
    "generate_mailbox",
    "mutf7_encode",
]
