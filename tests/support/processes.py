"""Process helpers shared by the peer fixtures: find and end what a started server left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

__all__ = ["kill_session", "port_is_free", "session_pids"]


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` now.  A port picked by the kernel earlier may have
    been taken since by another test run on this machine: a fixture that chose the port itself
    picks another one instead of failing."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def session_pids(sid: int) -> list[int]:
    """PIDs (zombies excepted) of the processes in session ``sid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Field 6 is the session id; the comm field (2) may contain spaces, so split after ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, *, first: signal.Signals = signal.SIGTERM, grace: float = 10.0) -> None:
    """Send ``first`` to every process of session ``sid``, wait up to ``grace`` seconds for them
    to go, then SIGKILL whatever is left (and wait up to 5 s more)."""
    for signum, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.02)
