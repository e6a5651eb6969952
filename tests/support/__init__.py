"""Reusable helpers for tests that run the gateway in front of real peers.

* :mod:`.gateway` -- GatewayHarness (the whole gateway in a thread); :mod:`.imap` -- imaplib helpers;
* the peers (docs/testing.md): :mod:`.postgres`, :mod:`.postfix` (with :mod:`.tls`),
  :mod:`.haproxy`, :mod:`.browser`; their pytest fixtures in :mod:`.peers` (a plugin loaded by
  tests/conftest.py); :mod:`.processes` -- ending what a peer left behind.
"""
