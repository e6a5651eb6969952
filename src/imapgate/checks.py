"""``imapgate check``: is this installation ready to serve?

One line per check, ``OK``, ``WARN`` or ``FAIL`` with the reason; the command
exits 1 when anything failed.  Nothing is changed: the store is opened
read-only (never created, never migrated), listeners are bound and closed
at once, upstream connections log out again.

Upstream, the check does what ``serve`` does anyway: it logs in, and opens up
to ``max_connections`` connections to see how many the hoster allows
(serially, each kept until all are open, then logged out).  While a gateway
runs on this store it holds its own connections: then only one is opened.

The store and hoster checks live in ``gateway/admin_checks.py``: this module,
like the rest of the command line, reaches the store and the hoster only
through the service layer (the TLS check uses the server's own loader, so it
cannot disagree with ``serve``).
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import socket
from collections.abc import Iterator

from .config import Config, parse_address
from .errors import OperatorError, bind_error
from .gateway.admin_checks import Result, check_store, check_upstream, is_loopback, store_holder
from .server.tls import certificate_info, tls_context

#: A certificate expiring sooner than this is a warning (Let's Encrypt renews at 30 days left).
CERT_WARN_DAYS = 14


def check_config(cfg: Config) -> Iterator[Result]:
    yield Result("OK", "config", f"{cfg.path} loads")
    for w in cfg.warnings:
        yield Result("WARN", "config", w)


def check_tls(cfg: Config) -> Iterator[Result]:
    sv = cfg.server
    if not sv.certificate or not sv.private_key:
        hosts = [parse_address(a)[0] for a in sv.listen]
        if all(is_loopback(h) for h in hosts):
            yield Result("OK", "tls", "no certificate: plain IMAP on localhost only (allow_plaintext)")
        else:
            yield Result(
                "WARN",
                "tls",
                "no certificate and allow_plaintext = true on a network address: "
                "team passwords cross the network in clear text",
            )
        return
    try:
        tls_context(sv)
    except OperatorError as exc:
        yield Result("FAIL", "tls", str(exc))
        return
    yield Result("OK", "tls", f"certificate {sv.certificate} and key {sv.private_key} belong together")
    try:
        info = certificate_info(sv.certificate)
    except OperatorError as exc:
        yield Result("WARN", "tls", str(exc))
        return
    days = info.days_left()
    until = info.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if days < 0:
        yield Result("FAIL", "tls", f"the certificate expired on {until}: renew it and restart the gateway")
    elif info.not_before > datetime.datetime.now(datetime.UTC):
        since = info.not_before.strftime("%Y-%m-%d %H:%M UTC")
        yield Result("FAIL", "tls", f"the certificate is not valid before {since}")
    elif days < CERT_WARN_DAYS:
        yield Result(
            "WARN", "tls", f"the certificate expires in {days:.0f} days ({until}): renew it and restart"
        )
    else:
        yield Result("OK", "tls", f"the certificate is valid until {until} ({days:.0f} days)")
    if info.names:
        yield Result("OK", "tls", f"host names: {', '.join(info.names)}")
    else:
        yield Result(
            "WARN",
            "tls",
            f"the certificate names no host (no subjectAltName; CN={info.common_name or '-'}): "
            "clients will refuse it",
        )


def check_listen(cfg: Config, holder: str | None) -> Iterator[Result]:
    addresses = [(a, False) for a in cfg.server.listen] + [(a, True) for a in cfg.server.tls_listen]
    for addr, is_tls in addresses:
        kind = "TLS" if is_tls else ("STARTTLS" if cfg.server.certificate else "plain")
        if holder is not None:
            yield Result("OK", "listen", f"{addr} ({kind}): not tested, the store is in use by {holder}")
            continue
        host, port = parse_address(addr)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = infos[0]
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
        except OSError as exc:
            err = str(bind_error(addr, exc))
            if exc.errno == errno.EACCES:
                yield Result("WARN", "listen", f"{err} (this process has neither)")
            else:
                yield Result("FAIL", "listen", err)
            continue
        yield Result("OK", "listen", f"{addr} ({kind}) is free")


def run_checks(cfg: Config) -> list[Result]:
    holder = store_holder(cfg.store.data_dir)
    results = [*check_config(cfg), *check_tls(cfg), *check_listen(cfg, holder)]
    results += asyncio.run(check_upstream(cfg, holder))
    results += list(check_store(cfg, holder))
    return results
