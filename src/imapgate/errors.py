"""The one error type for "the operator must fix this".

Start-up and command-line failures that no code can recover from — a wrong
configuration key, a port already in use, a missing certificate file, an
upstream login the hoster refuses, a store another process is writing — are
raised as :class:`OperatorError`.  Its message names the thing (file, address,
key, account) and says what to do.  The command line catches it at its
boundary and prints it as one line, ``imapgate: error: ...``, with the exit
code below; only ``-v`` adds the traceback.
"""

from __future__ import annotations

import errno
import socket

#: Exit status of a configuration error (``EX_CONFIG`` of sysexits.h).  The
#: shipped systemd unit does not restart on it: a typo does not fix itself.
EXIT_CONFIG = 78


class OperatorError(Exception):
    """A failure the operator must fix; ``str()`` is the whole message."""

    exit_code = 1


def bind_error(addr: str, exc: OSError) -> OperatorError:
    """What the operator reads when a listener cannot be opened."""
    host, _, port_text = addr.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host or "0.0.0.0"
    port = int(port_text) if port_text.isdigit() else 0
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        return OperatorError(f"{where} is already in use (another imapgate or IMAP server?)")
    if exc.errno == errno.EACCES:
        return OperatorError(
            f"{where}: binding a port below 1024 needs root or CAP_NET_BIND_SERVICE; "
            "see contrib/imapgate.service (AmbientCapabilities=CAP_NET_BIND_SERVICE)"
            if port < 1024
            else f"{where}: permission denied"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return OperatorError(f"{where}: {host} is not an address of this machine")
    if isinstance(exc, socket.gaierror):
        return OperatorError(f"{where}: unknown host name {host!r}")
    return OperatorError(f"cannot listen on {where}: {exc.strerror or exc}")
