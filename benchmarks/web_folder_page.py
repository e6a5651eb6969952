"""Server time of the dashboard's folder page for a 10,000-message folder (target: <= 100 ms).

In-process, no hoster: a store with 10,000 messages in INBOX whose ENVELOPEs are in the content
cache (as after IMAP clients fetched them), and ``Dashboard.list_messages`` timed for the first,
a middle and the last page, and for the ``unread`` filter (which walks the whole folder).  This
benchmark has no direct-Dovecot twin: Dovecot has no dashboard; the figure is absolute.

    .venv/bin/python -m benchmarks.web_folder_page
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from imapgate.config import from_dict
from imapgate.gateway.app import Gateway
from imapgate.gateway.policy import Actor
from imapgate.replica.mailbox import MessageRecord
from imapgate.web.data import Dashboard

N = 10_000
ENVELOPE = (
    b'("Mon, 1 Jul 2024 10:00:00 +0000" "Order %d: =?utf-8?q?Lieferverz=C3=B6gerung?=" '
    b'(("Kunde %d" NIL "kunde%d" "example.org")) NIL NIL (("Info" NIL "info" "example.com")) NIL NIL NIL '
    b'"<m%d@example.org>")'
)


async def main() -> None:
    base = Path(tempfile.mkdtemp())
    cfg = from_dict(
        {"upstream": {"host": "127.0.0.1", "port": 9, "tls": "none", "user": "u", "password": "p"},
         "server": {"allow_plaintext": True}, "store": {"data_dir": str(base)}},
        base_dir=base,
    )  # fmt: skip
    gw = Gateway.build(cfg)
    user = gw.users.add("alice", "alice-pw")
    mb = gw.replica.upsert_mailbox("INBOX", "/", ())
    gw.replica.set_sync_state(mb, uidnext=1, upstream_modseq=1, synced=True)
    recs = [
        MessageRecord(u, ("\\Seen",) if u % 3 else (), 1, 1.7e9 + u, 0, 2000, f"<m{u}@x>")
        for u in range(1, N + 1)
    ]
    gw.replica.add_messages(mb, recs)
    gw.content.put_many(
        mb.id, mb.uidvalidity, {(u, b"ENVELOPE"): ENVELOPE % (u, u, u, u) for u in range(1, N + 1)}
    )
    d = Dashboard(gw)
    actor = Actor(user.id, "alice")
    for label, flt, page in [
        ("page 1", "all", 1),
        ("page 100", "all", 100),
        ("page 200", "all", 200),
        ("unread p1", "unread", 1),
    ]:
        times = []
        for _ in range(20):
            start = time.perf_counter()
            result = await d.list_messages(actor, "INBOX", flt, page)  # type: ignore[arg-type]
            times.append((time.perf_counter() - start) * 1000)
        assert result.messages
        print(
            f"{label:10} median {statistics.median(times):6.2f} ms  max {max(times):6.2f} ms  "
            f"({len(result.messages)} rows of {result.matching})"
        )
    await gw.pool.close()
    gw.auth.close()


if __name__ == "__main__":
    asyncio.run(main())
