"""The control channel: admin commands talking to the running gateway, as
doveadm talks to Dovecot (``imapgate sessions``, ``kick``; ``user remove``
/ ``user disable`` telling the gateway to end that user's sessions, ``folder
set`` telling it to take a folder's new read-state mode at once).

Transport: a Unix domain socket, ``control.sock`` in the store's data_dir,
mode 0600; a peer that is neither the gateway's own user nor root is refused
(SO_PEERCRED), so the file mode is not the only guard.  The CLI runs as a
separate process and reaches the gateway only through it.

Protocol: one JSON object per line each way, one request per connection:

    {"request": "sessions"}                          -> {"ok": true, "sessions": [{...}, ...]}
    {"request": "kick", "user": "alice"}             -> {"ok": true, "ended": 2}
    {"request": "kick", "user": "alice", "session": 7}
    {"request": "user-changed", "name": "alice"}     -> {"ok": true, "ended": 1}
    {"request": "folder-changed", "name": "INBOX"}   -> {"ok": true, "seen": "shared"}
    {"request": "acl-changed"}                       -> {"ok": true, "version": 12}
    anything wrong                                   -> {"ok": false, "error": "..."}

``user-changed``: the gateway looks the user up in the store; when the account
is gone or disabled, their sessions end with ``* BYE`` and what the gateway
holds in memory about them (private flag state) is dropped.  Without the
notification (no gateway was reachable), a periodic check of the open
sessions' accounts (every ``ACCOUNT_CHECK_SECONDS``) does the same.

``folder-changed``: the gateway reads the folders' read-state modes from the
store again (what the sync's periodic check does every ``poll_interval``);
a folder whose mode changed is announced as after a restart would show it:
every session with it open gets the flags as the new mode sees them.  The
answer names the mode now in force (null: the gateway does not know the
folder yet).

``acl-changed``: an ACL entry, a group, a membership or the admin flag
changed in the store; the gateway reloads its ACL table now (the callback it
registered, ``ControlServer.acl_changed``) and answers the version it holds.
Without the notification its 1 s poll of the ACL version does the same
(``gateway/acl_watch.py``).

The IMAP server is not imported here: it hands in a ``SessionProvider`` when
it starts (``Gateway.start_control``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ..replica.replica import Replica
from ..team.users import UserDirectory

log = logging.getLogger("imapgate.control")

#: The socket's file name in the store's data_dir.
CONTROL_SOCKET_NAME = "control.sock"
#: A request is a few dozen bytes; anything longer is not from our CLI.
MAX_REQUEST_BYTES = 64 * 1024
#: Seconds the CLI waits for the gateway's answer (and the gateway for a request).
REQUEST_TIMEOUT = 10.0
#: Seconds between checks that every open session's account still exists and is
#: enabled (catches a removal or disable whose notification did not arrive).
ACCOUNT_CHECK_SECONDS = 30.0
#: Longest path ``bind``/``connect`` take (sun_path is 108 bytes on Linux, with NUL).
_SUN_PATH_MAX = 107

KICK_REASON = "[UNAVAILABLE] session ended by the administrator"
REMOVED_REASON = "[UNAVAILABLE] your gateway account was removed"
DISABLED_REASON = "[UNAVAILABLE] your gateway account was disabled"


@dataclass(frozen=True)
class SessionInfo:
    """One client connection as the admin sees it (a read-only snapshot)."""

    id: int
    user: str | None  # None before login
    user_id: int | None
    client_id: str  # from the ID command ("" when the client sent none)
    address: str
    tls: bool
    folder: str | None  # the selected folder
    since: float  # time.time() of the connect
    idle: bool  # in IDLE right now

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(
            id=int(data["id"]),
            user=data.get("user"),
            user_id=data.get("user_id"),
            client_id=str(data.get("client_id") or ""),
            address=str(data.get("address") or ""),
            tls=bool(data.get("tls")),
            folder=data.get("folder"),
            since=float(data.get("since") or 0.0),
            idle=bool(data.get("idle")),
        )


class SessionProvider(Protocol):
    """What the IMAP server offers the control channel."""

    def session_list(self) -> list[SessionInfo]: ...

    def end_sessions(self, ids: Iterable[int], reason: str) -> int:
        """End these sessions with ``* BYE <reason>`` (a command in progress
        finishes first); returns how many were told to end."""
        ...


class AccountSessions(Protocol):
    """Another front end's logins (the web dashboard's sessions), ended together
    with the account's IMAP sessions."""

    def end_user(self, name: str, keep_user_id: int | None) -> int:
        """End ``name``'s logins except those of account ``keep_user_id``."""
        ...

    def end_accounts(self, active: set[int]) -> int:
        """End every login whose account id is not in ``active``."""
        ...


def socket_path(data_dir: Path) -> Path:
    return data_dir / CONTROL_SOCKET_NAME


class ControlError(Exception):
    """The gateway answered a control request with an error (its text)."""


class NoGateway(ControlError):
    """No running gateway answers on the control socket."""


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """A name for ``path`` short enough for sun_path: itself, or the same file
    through ``/proc/self/fd/N/`` of its folder (test and deep data_dirs)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# --- client side (the CLI) ---------------------------------------------------------------


def request(data_dir: Path, payload: dict[str, Any], *, timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
    """Send one request to the gateway serving ``data_dir``; its answer.

    Raises ``NoGateway`` when none runs there, ``ControlError`` for an error
    answer or a broken exchange."""
    path = socket_path(data_dir)
    if not path.exists():
        raise NoGateway(f"no running gateway (no control socket {path})")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _reachable(path) as name:
            try:
                sock.connect(name)
            except (ConnectionRefusedError, FileNotFoundError):
                raise NoGateway(f"no running gateway (nobody answers on {path})") from None
            except PermissionError:
                raise ControlError(f"{path}: permission denied (run as the gateway's user)") from None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise ControlError(f"the gateway did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise ControlError(f"control socket {path}: {exc.strerror or type(exc).__name__}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError("the gateway closed the control connection without an answer") from None
    if not isinstance(answer, dict):
        raise ControlError("unexpected answer from the gateway")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error") or "request failed"))
    return answer


def list_sessions(data_dir: Path) -> list[SessionInfo]:
    """The running gateway's sessions (``NoGateway`` when none runs)."""
    answer = request(data_dir, {"request": "sessions"})
    return [SessionInfo.from_json(d) for d in answer.get("sessions", [])]


def kick(data_dir: Path, user: str, session: int | None = None) -> int:
    """End ``user``'s sessions (only ``session`` when given); how many ended."""
    payload: dict[str, Any] = {"request": "kick", "user": user}
    if session is not None:
        payload["session"] = session
    return int(request(data_dir, payload).get("ended", 0))


def notify_folder_changed(data_dir: Path, name: str) -> str | None:
    """Tell a running gateway that folder ``name``'s read-state mode changed in
    the store; the mode it now applies ("" when it does not know the folder),
    or None when no gateway runs (not an error: it takes the mode at start)."""
    try:
        seen = request(data_dir, {"request": "folder-changed", "name": name}).get("seen")
    except NoGateway:
        return None
    return str(seen or "")


def notify_acl_changed(data_dir: Path) -> int | None:
    """Tell a running gateway that the ACLs changed in the store; the ACL version
    it now holds, or None when no gateway runs (not an error: it loads the ACLs
    at start, and its poll of the version catches what a failed notice missed)."""
    try:
        return int(request(data_dir, {"request": "acl-changed"}).get("version", 0))
    except NoGateway:
        return None


def notify_claims_changed(data_dir: Path) -> bool:
    """Tell a running gateway that claims were ended in the store (``claim
    release``): it reloads them and removes the keywords no claim stands behind.
    False when no gateway runs (not an error: it does both at start)."""
    try:
        request(data_dir, {"request": "claims-changed"})
    except NoGateway:
        return False
    return True


def notify_user_changed(data_dir: Path, name: str) -> int | None:
    """Tell a running gateway that ``name`` was removed or disabled; the number of
    sessions it ended, or None when no gateway runs (not an error: the change is
    in the store and a later start or account check applies it)."""
    try:
        return int(request(data_dir, {"request": "user-changed", "name": name}).get("ended", 0))
    except NoGateway:
        return None


# --- server side (the running gateway) ---------------------------------------------------


class ControlServer:
    def __init__(
        self,
        path: Path,
        users: UserDirectory,
        replica: Replica,
        provider: SessionProvider,
        others: list[AccountSessions] | None = None,
    ) -> None:
        self.path = path
        self.users = users
        self.replica = replica
        self.provider = provider
        #: Other front ends' logins (shared list: a web server joining later counts).
        self.others = others if others is not None else []
        #: Reloads the gateway's ACL table and returns its version (``acl-changed``);
        #: registered by the gateway, None where no ACL table is held (tests).
        self.acl_changed: Callable[[], int] | None = None
        #: Reload the claims from the store (``claim release`` by the CLI).
        self.claims_changed: Callable[[], int] | None = None
        #: Requests answered after awaiting (they wait for the hoster), by name:
        #: registered by the gateway's features (recovery-restore, recovery-purge).
        self.async_requests: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {}
        self._server: asyncio.AbstractServer | None = None
        self._checker: asyncio.Task[None] | None = None
        self._owned = False

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await asyncio.to_thread(_answers, self.path):
                # Another gateway on this store (the store lock normally prevents
                # this): leave its channel alone.
                log.warning("control socket %s is in use by another process; not serving it", self.path)
                return
            self.path.unlink()  # left behind by a gateway that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _reachable(self.path) as name:
                old = os.umask(0o177)  # created 0600: never world-connectable, not even briefly
                try:
                    sock.bind(name)
                finally:
                    os.umask(old)
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._handle, sock=sock, limit=MAX_REQUEST_BYTES)
        except BaseException:
            sock.close()
            raise
        self._owned = True
        self._checker = asyncio.create_task(self._check_loop(), name="account-check")
        log.info("control socket %s", self.path)

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(BaseException):
                await self._checker
            self._checker = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._owned:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._owned = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _peer_allowed(writer):
                answer: dict[str, Any] = {"ok": False, "error": "permission denied"}
            else:
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        line = await reader.readline()
                    payload = json.loads(line)
                    if not isinstance(payload, dict):
                        answer = _bad("not a JSON object")
                    elif payload.get("request") in self.async_requests:
                        # Requests that wait for the hoster (recovery restore/purge).
                        answer = await self.async_requests[payload["request"]](payload)
                    else:
                        answer = self.handle(payload)
                except (ValueError, asyncio.LimitOverrunError):
                    answer = _bad("a request is one JSON object on one line")
                except TimeoutError:
                    answer = _bad("no request")
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def handle(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (synchronously: nothing here waits)."""
        what = payload.get("request")
        if what == "sessions":
            return {"ok": True, "sessions": [s.to_json() for s in self.provider.session_list()]}
        if what == "kick":
            user = payload.get("user")
            sid = payload.get("session")
            if not isinstance(user, str) or not (sid is None or isinstance(sid, int)):
                return _bad('kick needs "user" (a string) and optionally "session" (a number)')
            ids = [
                s.id for s in self.provider.session_list() if s.user == user and (sid is None or s.id == sid)
            ]
            ended = self.provider.end_sessions(ids, KICK_REASON)
            if ended:
                log.info("kick: ended %d session(s) of %s", ended, user)
            return {"ok": True, "ended": ended}
        if what == "user-changed":
            name = payload.get("name")
            if not isinstance(name, str):
                return _bad('user-changed needs "name"')
            return {"ok": True, "ended": self.user_changed(name)}
        if what == "folder-changed":
            name = payload.get("name")
            if not isinstance(name, str):
                return _bad('folder-changed needs "name"')
            return {"ok": True, "seen": self.folder_changed(name)}
        if what == "acl-changed":
            if self.acl_changed is None:
                return _bad("this gateway holds no ACL table")
            return {"ok": True, "version": self.acl_changed()}
        if what == "claims-changed":
            if self.claims_changed is None:
                return _bad("this gateway keeps no claims")
            return {"ok": True, "claims": self.claims_changed()}
        return _bad(f"unknown request {what!r}")

    def folder_changed(self, name: str) -> str | None:
        """Apply the read-state modes now in the store; the mode of ``name``."""
        self.replica.reload_seen_modes()
        mb = self.replica.get(name)
        if mb is None:
            return None
        seen = self.replica.seen_mode(mb)
        log.info("folder %s: read state %s (set by the administrator)", name, seen)
        return seen

    def user_changed(self, name: str) -> int:
        """End the sessions of ``name`` if the account is gone or disabled (or was
        removed and added again: the old sessions belong to the old account)."""
        user = self.users.get(name)
        reason = REMOVED_REASON if user is None else DISABLED_REASON if user.disabled else None
        stale = [
            s
            for s in self.provider.session_list()
            if s.user == name and (reason is not None or (user is not None and s.user_id != user.id))
        ]
        keep = user.id if user is not None and not user.disabled else None
        others = self._end_others(lambda o: o.end_user(name, keep), name)
        return self._end(stale, reason or REMOVED_REASON, name) + others

    def check_accounts(self) -> int:
        """End every session whose account is gone or disabled; how many."""
        sessions = [s for s in self.provider.session_list() if s.user_id is not None]
        if not sessions and not self.others:
            return 0
        current = {u.id: u for u in self.users.list()}
        active = {uid for uid, u in current.items() if not u.disabled}
        ended = self._end_others(lambda o: o.end_accounts(active), "accounts check")
        for name in sorted({s.user for s in sessions if s.user is not None}):
            mine = [s for s in sessions if s.user == name]
            gone = [s for s in mine if s.user_id not in current]
            off = [s for s in mine if s.user_id in current and current[s.user_id].disabled]
            ended += self._end(gone, REMOVED_REASON, name) + self._end(off, DISABLED_REASON, name)
        return ended

    def _end_others(self, end: Callable[[AccountSessions], int], what: str) -> int:
        ended = 0
        for other in list(self.others):
            try:
                ended += end(other)
            except Exception:
                log.exception("ending other logins failed (%s)", what)
        if ended:
            log.info("%s: ended %d dashboard login(s)", what, ended)
        return ended

    def _end(self, sessions: list[SessionInfo], reason: str, name: str) -> int:
        if not sessions:
            return 0
        ended = self.provider.end_sessions([s.id for s in sessions], reason)
        if reason == REMOVED_REASON:
            for uid in {s.user_id for s in sessions if s.user_id is not None}:
                self.replica.forget_user(uid)
        log.info("user %s: %s; ended %d session(s)", name, reason.split("] ", 1)[-1], ended)
        return ended

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(ACCOUNT_CHECK_SECONDS)
            try:
                self.check_accounts()
            except Exception as exc:  # a locked or broken store: try again next time
                log.warning("account check failed: %s", exc)


def _bad(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text}


def _answers(path: Path) -> bool:
    """Does a live process accept connections on ``path``?"""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        with _reachable(path) as name:
            sock.connect(name)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _peer_allowed(writer: asyncio.StreamWriter) -> bool:
    """Only the gateway's own user (or root) may use the channel."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # the 0600 file mode is the guard there
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


def describe_age(since: float, now: float | None = None) -> str:
    """``since`` as a short age for the session list: 42s, 5m, 3h12m, 2d4h."""
    secs = max(0, int((now if now is not None else time.time()) - since))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h{secs % 3600 // 60:02d}m"
    return f"{secs // 86400}d{secs % 86400 // 3600}h"
