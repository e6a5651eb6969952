"""What the kernel says about this machine's TCP connections (for tests that count the
connections a gateway holds at a peer, as the peer itself counts them)."""

from __future__ import annotations


def established_at(port: int) -> int:
    """Connections a server listening on ``port`` here has ESTABLISHED: the sockets whose
    *local* port is ``port`` (what Dovecot counts).  Not the sockets whose remote port is
    ``port``: an unrelated connection on this machine (another test's PostgreSQL client, say)
    may have been given that number as its ephemeral source port, and its peer's socket then
    has ``port`` as its remote end -- a count by remote port saw phantom connections."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count
