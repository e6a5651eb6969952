"""Mail client autoconfiguration, so a team member types only their address
and password:

- Thunderbird (and K-9, Evolution, ...): ``GET
  /.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=...`` and
  ``/mail/config-v1.1.xml`` (the "autoconfig.<domain>" lookup), the
  clientConfig 1.1 format;
- Outlook: ``POST /autodiscover/autodiscover.xml`` with an Autodiscover
  request naming ``EMailAddress`` (the "autodiscover.<domain>" lookup), the
  2006a response schema with one IMAP ``Protocol`` per listener.

The IMAP server is this gateway: its listeners from ``[server]`` (implicit TLS
first, then STARTTLS, then plain when no certificate is configured — never
offered while ``allow_plaintext`` is off, since nobody could log in), its host
name ``[web] public_host`` or the name the request came to. The login is the
address's local part (``alice@example.com`` logs in as ``alice``: the
gateway's user names), which both formats can express. Outgoing mail
(SMTP submission through the gateway) comes with issue 14.
"""

from __future__ import annotations

import re
from html import escape

from .data import ImapEndpoint

#: Autodiscover request bodies are a few hundred bytes.
MAX_REQUEST_BYTES = 16 * 1024
_EMAIL_RE = re.compile(r"<EMailAddress>\s*([^<\s]{1,320})\s*</EMailAddress>", re.IGNORECASE)
_HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}\Z")


def public_host(configured: str, request_host: str) -> str:
    """The host clients should use: the configured one, else the request's host
    (port dropped) without an ``autoconfig.``/``autodiscover.`` prefix."""
    if configured:
        return configured
    host = request_host.rsplit(":", 1)[0] if not request_host.startswith("[") else request_host
    host = host.strip().lower()
    for prefix in ("autoconfig.", "autodiscover."):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    return host if _HOST_RE.match(host) else "localhost"


def email_from_autodiscover(body: bytes) -> str | None:
    m = _EMAIL_RE.search(body[:MAX_REQUEST_BYTES].decode("utf-8", "replace"))
    return m.group(1) if m else None


def _domain(email: str | None, host: str) -> str:
    if email and "@" in email:
        domain = email.rsplit("@", 1)[1].lower()
        if _HOST_RE.match(domain):
            return domain
    return host


def thunderbird(host: str, endpoints: list[ImapEndpoint], email: str | None) -> str:
    servers = "".join(
        f"""
    <incomingServer type="imap">
      <hostname>{escape(host)}</hostname>
      <port>{e.port}</port>
      <socketType>{e.socket}</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>"""
        for e in endpoints
    )
    domain = escape(_domain(email, host))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <displayName>Team mailbox ({escape(host)})</displayName>
    <displayShortName>imapgate</displayShortName>{servers}
  </emailProvider>
</clientConfig>
"""


def outlook(host: str, endpoints: list[ImapEndpoint], email: str | None) -> str:
    login = escape(email.split("@", 1)[0]) if email else ""
    protocols = "".join(
        f"""
      <Protocol>
        <Type>IMAP</Type>
        <Server>{escape(host)}</Server>
        <Port>{e.port}</Port>
        <LoginName>{login}</LoginName>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>{"on" if e.socket == "SSL" else "off"}</SSL>
        <Encryption>{ {"SSL": "SSL", "STARTTLS": "TLS"}.get(e.socket, "None") }</Encryption>
        <AuthRequired>on</AuthRequired>
      </Protocol>"""
        for e in endpoints
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>{protocols}
    </Account>
  </Response>
</Autodiscover>
"""
