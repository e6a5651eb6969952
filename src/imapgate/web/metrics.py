"""``/metrics`` for Prometheus (prometheus-client, text format).

A registry of its own per gateway (not the library's global one: tests and a
demo run several gateways in one process).  Everything that exists without
instrumenting the IMAP server is read at scrape time by one collector, so
nothing on the hot path pays for it:

- ``imapgate_imap_sessions``, ``imapgate_web_sessions``, ``imapgate_event_streams``
- ``imapgate_upstream_up``, ``imapgate_upstream_connections{state="open|in_use"}``,
  ``imapgate_upstream_connections_max``
- ``imapgate_sync_lag_seconds`` (oldest folder sync), ``imapgate_folders``,
  ``imapgate_messages``
- ``imapgate_logins_total{outcome=...}`` (the Authenticator's counters, IMAP
  and web together)

Per-command latency needs a hook in the IMAP session loop, which issue 10 is
restructuring: :meth:`Metrics.observe_command` is that hook (a histogram by
command name); the server calls it with the command's name and its duration
once the composition hands it the function (see docs/architecture.md, "Web").
Until then the histogram exists and stays empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .data import Dashboard

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Command names kept as label values; anything else counts as "OTHER" (a
#: client can send any atom as a command, and every label value is a series).
KNOWN_COMMANDS = frozenset(
    {
        "APPEND", "AUTHENTICATE", "CAPABILITY", "CHECK", "CLOSE", "COPY", "CREATE", "DELETE",
        "ENABLE", "EXAMINE", "EXPUNGE", "FETCH", "GETACL", "ID", "IDLE", "LIST", "LISTRIGHTS",
        "LOGIN", "LOGOUT", "LSUB", "MOVE", "MYRIGHTS", "NAMESPACE", "NOOP", "NOTIFY", "RENAME",
        "SEARCH", "SELECT", "SETACL", "STARTTLS", "STATUS", "STORE", "SUBSCRIBE", "UID", "UNSELECT",
        "UNSUBSCRIBE",
    }
)  # fmt: skip


class _Snapshot(Collector):
    def __init__(self, dashboard: Dashboard, web_sessions: Callable[[], int]) -> None:
        self.dashboard = dashboard
        self.web_sessions = web_sessions

    def collect(self) -> Iterator[Metric]:
        d = self.dashboard
        h = d.health()
        yield GaugeMetricFamily("imapgate_imap_sessions", "Open IMAP client connections", d.imap_sessions())
        yield GaugeMetricFamily("imapgate_web_sessions", "Dashboard logins", self.web_sessions())
        yield GaugeMetricFamily("imapgate_event_streams", "Open live event streams", d.live.stream_count)
        yield GaugeMetricFamily(
            "imapgate_upstream_up", "1 while the hoster answers", 0 if h.upstream == "down" else 1
        )
        conns = GaugeMetricFamily(
            "imapgate_upstream_connections", "Connections to the hoster", labels=["state"]
        )
        conns.add_metric(["open"], h.pool_open)
        conns.add_metric(["in_use"], h.pool_in_use)
        yield conns
        yield GaugeMetricFamily(
            "imapgate_upstream_connections_max", "Connection budget ([upstream] max_connections)", h.pool_max
        )
        if h.sync_lag is not None:
            yield GaugeMetricFamily(
                "imapgate_sync_lag_seconds",
                "Seconds since the least recently synced folder was synced",
                h.sync_lag,
            )
        yield GaugeMetricFamily("imapgate_folders", "Folders in the replica", h.folders)
        yield GaugeMetricFamily("imapgate_messages", "Messages in the replica", h.messages)
        logins = CounterMetricFamily(
            "imapgate_logins", "Login checks by outcome (IMAP and web)", labels=["outcome"]
        )
        for outcome, n in d.login_counts().items():
            logins.add_metric([outcome], n)
        yield logins


class Metrics:
    def __init__(self, dashboard: Dashboard, web_sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Snapshot(dashboard, web_sessions))
        self.command_seconds = Histogram(
            "imapgate_command_seconds",
            "IMAP command latency by command",
            ["command"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def observe_command(self, command: str, seconds: float) -> None:
        """THE HOOK for the IMAP server: call once per tagged command with its
        name (``UID FETCH`` counts as ``UID``) and its duration in seconds."""
        name = command.upper()
        self.command_seconds.labels(name if name in KNOWN_COMMANDS else "OTHER").observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
