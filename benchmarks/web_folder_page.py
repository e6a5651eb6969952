"""Server time of the dashboard's folder page for a 10,000-message folder (target: <= 100 ms).

In-process, no hoster: a store with 10,000 messages in INBOX whose ENVELOPEs are in the content
cache (as after IMAP clients fetched them), and ``Dashboard.list_messages`` timed for the first,
a middle and the last page, and for the ``unread`` filter (which walks the whole folder), with
the team columns: five members with a private read state of INBOX ("read by") and 1,000
messages answered through the gateway (``answer_marks``: "answered by").  This
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
    from imapgate.store.schema import answer_marks

    for name in ("bob", "carol", "dave", "erin"):
        member = gw.users.add(name, f"{name}-pw")
        gw.replica.private_state(mb, member.id)  # their first look: a read state of their own
    gw.replica.private_state(mb, user.id)
    with gw.journal.engine.begin() as conn:
        conn.execute(
            answer_marks.insert(),
            [{"ts": 1.7e9 + u, "user_name": "bob", "message_id": f"<m{u}@x>", "mailbox": "INBOX", "uid": u}
             for u in range(N - 999, N + 1)],
        )  # fmt: skip
    actor = Actor(user.id, "alice")
    for show_read_by in (True, False):
        print(f"show_read_by = {str(show_read_by).lower()}")
        await _pages(Dashboard(gw, show_read_by=show_read_by), actor)
    await gw.pool.close()
    gw.auth.close()


async def _pages(d: Dashboard, actor: Actor) -> None:
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
        if d.show_read_by and page == 1 and flt == "all":
            assert result.messages[0].answered_by == ("bob",) and result.messages[0].read_by is not None
        print(
            f"{label:10} median {statistics.median(times):6.2f} ms  max {max(times):6.2f} ms  "
            f"({len(result.messages)} rows of {result.matching})"
        )


if __name__ == "__main__":
    asyncio.run(main())
