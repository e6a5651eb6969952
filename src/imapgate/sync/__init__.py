"""The sync engine: keeps the replica equal to the upstream mailbox.

On the upstream side of the replica (DESIGN "Package layout"): it drives the
upstream pool and applies what the hoster reports through the replica's
transitions.  Split by job:

* ``algorithms``: how one folder (or the folder list) is brought up to date
  (QRESYNC, CONDSTORE, full rescan, new messages, gaps, flag ordering);
* ``records``: upstream FETCH answers turned into replica records;
* ``watcher``: the change watcher (NOTIFY for all folders, else IDLE on the
  busiest one) and unsolicited responses on pooled connections;
* ``scheduler``: debounced, coalesced sync requests, the periodic check and
  the background tasks;
* ``locks``: the in-process (asyncio) ``LockManager``;
* ``engine``: ``SyncEngine``, the one object the service layer talks to.
"""
