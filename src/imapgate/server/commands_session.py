"""Handlers of the any-state and not-authenticated commands: CAPABILITY,
NOOP, LOGOUT, ID, ENABLE, STARTTLS, LOGIN, AUTHENTICATE PLAIN, NAMESPACE."""

from __future__ import annotations

from .. import __version__
from ..gateway.auth import Outcome
from ..gateway.errors import OperationError
from ..gateway.policy import Actor
from ..protocol import commands as cmd
from ..protocol import limits
from ..protocol import responses as rsp
from ..protocol.command_parser import parse_authenticate_response
from ..protocol.errors import CodecError
from ..protocol.framing import Frame
from .session import ANY, AUTH, NOT_AUTH, Done, Session, State, command

#: ENABLE-able extensions (RFC 5161): what the gateway implements.
ENABLEABLE = ("CONDSTORE", "QRESYNC")


@command(cmd.Capability, ANY)
async def capability(s: Session, c: cmd.Command) -> Done:
    s.send_response(rsp.Capability(tuple(s.capabilities())))
    return Done("CAPABILITY completed")


@command(cmd.Noop, ANY)
async def noop(s: Session, c: cmd.Command) -> Done:
    return Done("NOOP completed")


@command(cmd.Logout, ANY | {State.LOGOUT})
async def logout(s: Session, c: cmd.Command) -> Done:
    s.send_response(rsp.UntaggedStatus("BYE", None, "imapgate logging out"))
    s.select_view(None)
    s.state = State.LOGOUT
    return Done("LOGOUT completed")


@command(cmd.Id, ANY)
async def id_(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Id)
    if c.parameters:
        params = dict(c.parameters)
        name = params.get("name") or params.get("NAME") or ""
        version = params.get("version") or params.get("VERSION") or ""
        s.client_id = f"{name} {version}".strip()[:80]
        s.log.info("client %s", s.client_id or "(unnamed)")
        if s.actor is not None:
            # Clients may send ID after logging in: the journal names it from then on.
            s.actor = _actor_of(s, s.actor.user_id, s.actor.user)
    s.send_response(rsp.IdResponse({"name": "imapgate", "version": __version__}))
    return Done("ID completed")


@command(cmd.Enable, AUTH)
async def enable(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Enable)
    newly: list[str] = []
    for cap in c.capabilities:
        cap = cap.upper()
        if cap in ENABLEABLE and cap not in s.enabled:
            # CONDSTORE first (RFC 7162 §3.2.3: QRESYNC implies it); with a mailbox
            # selected it reports HIGHESTMODSEQ, as Dovecot does.
            s.enable_condstore()
            s.enabled.add(cap)
            newly.append(cap)
    s.send_response(rsp.Enabled(tuple(newly)))
    return Done("ENABLE completed")


@command(cmd.Namespace, AUTH)
async def namespace(s: Session, c: cmd.Command) -> Done:
    s.send_response(rsp.Namespace((rsp.NamespaceDescriptor("", s.gw.replica.delimiter()),), None, None))
    return Done("NAMESPACE completed")


@command(cmd.StartTLS, NOT_AUTH)
async def starttls(s: Session, c: cmd.Command) -> Done:
    if s.tls_context is None:
        raise OperationError("STARTTLS is not configured on this server", "CANNOT", status="BAD")
    if s.is_tls:
        raise OperationError("TLS is already active", "CLIENTBUG", status="BAD")
    if s.framer.buffered:
        # RFC 9051 §6.2.1: data pipelined after STARTTLS would be injected
        # into the TLS session: refuse rather than risk it.
        raise OperationError("data after STARTTLS before the handshake", "CLIENTBUG", status="BAD")
    s.send_response(rsp.TaggedResponse(c.tag, "OK", None, "Begin TLS negotiation now"))
    await s.flush()
    await s.writer.start_tls(s.tls_context)  # a failed handshake: "connection lost: ..."
    s.is_tls = True
    s.enabled.clear()
    tls = s.writer.get_extra_info("ssl_object")
    if tls is not None:
        s.log.info("STARTTLS: %s, %s", tls.version(), (tls.cipher() or ("?",))[0])
    else:
        s.log.info("STARTTLS done")
    raise _AlreadyAnswered()


class _AlreadyAnswered(OperationError):
    """STARTTLS answered before the handshake: nothing more to send."""

    def __init__(self) -> None:
        super().__init__("", None, status="ANSWERED")


async def _authenticate_user(s: Session, user: str, password: str) -> Done:
    # Cache, throttle and the bounded argon2 check live in the service layer
    # (gateway/auth.py), shared with every other front end; it also logs failures.
    result = await s.gw.auth.authenticate(user, password, s.address, client_id=s.client_id)
    if result.outcome is Outcome.LOCKED:
        raise OperationError(
            f"too many failed logins; try again in {int(result.retry_after) + 1} seconds", "UNAVAILABLE"
        )
    if result.outcome is Outcome.BUSY:
        raise OperationError(
            "too many logins are being checked at once; try again in a few seconds", "UNAVAILABLE"
        )
    if result.outcome is Outcome.UNAVAILABLE:
        raise OperationError("the login cannot be checked just now; try again in a moment", "UNAVAILABLE")
    found = result.user
    if found is None:
        raise OperationError("invalid user name or password", "AUTHENTICATIONFAILED")
    s.actor = _actor_of(s, found.id, found.name)
    s.state = State.AUTHENTICATED
    s.framer.max_append_literal = limits.MAX_APPEND_LITERAL
    s.log.info("logged in as %s", found.name)
    return Done("logged in", rsp.CapabilityCode(tuple(s.capabilities())))


def _actor_of(s: Session, user_id: int, user: str) -> Actor:
    client = f"{s.client_id} from {s.address}" if s.client_id else s.address
    return Actor(user_id, user, client, client_id=s.client_id, address=s.address)


@command(cmd.Login, NOT_AUTH)
async def login(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Login)
    if not s.login_allowed:
        raise OperationError("log in only after STARTTLS (plaintext login is disabled)", "PRIVACYREQUIRED")
    try:
        password = c.password.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError("password is not valid UTF-8", "AUTHENTICATIONFAILED") from None
    return await _authenticate_user(s, c.user, password)


@command(cmd.Authenticate, NOT_AUTH)
async def authenticate(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Authenticate)
    if c.mechanism.upper() != "PLAIN":
        raise OperationError(f"unsupported mechanism {c.mechanism}; use PLAIN", "CANNOT")
    if not s.login_allowed:
        raise OperationError(
            "authenticate only after STARTTLS (plaintext login is disabled)", "PRIVACYREQUIRED"
        )
    data = c.initial_response
    if data is None:
        s.send_response(rsp.ContinuationRequest())  # an empty challenge (RFC 4959)
        await s.flush()
        s.framer.raw_line()
        ev = await s.next_event(60)
        if ev is None or isinstance(ev, CodecError) or not isinstance(ev, Frame):
            raise OperationError("authentication exchange failed", "CLIENTBUG", status="BAD")
        try:
            data = parse_authenticate_response(ev.data)
        except CodecError as exc:
            raise OperationError(exc.reason, "CLIENTBUG", status="BAD") from None
        if data is None:
            raise OperationError("authentication cancelled", None, status="BAD")
    # SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd
    parts = data.split(b"\x00")
    if len(parts) != 3:
        raise OperationError("malformed PLAIN response", "CLIENTBUG", status="BAD")
    authzid, user_b, password_b = parts
    try:
        user = user_b.decode("utf-8")
        password = password_b.decode("utf-8")
        if authzid and authzid.decode("utf-8") != user:
            raise OperationError("acting as another user is not allowed", "AUTHORIZATIONFAILED")
    except UnicodeDecodeError:
        raise OperationError("credentials are not valid UTF-8", "AUTHENTICATIONFAILED") from None
    return await _authenticate_user(s, user, password)
