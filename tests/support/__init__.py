"""Reusable helpers for tests that run the gateway in front of real peers.

* :mod:`.gateway_setup` -- the one config builder and gateway lifecycle of in-process tests
  (``gateway_config``, ``running_gateway``, ``imap_listener``, the ``start_gateway`` fixture);
* :mod:`.gateway` -- GatewayHarness (the whole gateway in a thread); :mod:`.imap` -- imaplib helpers;
* :mod:`.scripted_upstream` -- a scripted IMAP upstream on the project's codec (fast write-path tests);
* the peers (docs/testing.md): :mod:`.postgres`, :mod:`.postfix` (with :mod:`.tls`),
  :mod:`.haproxy`, :mod:`.browser`; their pytest fixtures in :mod:`.peers` (a plugin loaded by
  tests/conftest.py); :mod:`.processes` -- ending what a peer left behind.
"""
