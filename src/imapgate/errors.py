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

#: Exit status of a configuration error (``EX_CONFIG`` of sysexits.h).  The
#: shipped systemd unit does not restart on it: a typo does not fix itself.
EXIT_CONFIG = 78


class OperatorError(Exception):
    """A failure the operator must fix; ``str()`` is the whole message."""

    exit_code = 1
