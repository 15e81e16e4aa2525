"""Prometheus metrics for fastpptp-server (``--metrics-listen ADDR:PORT``).

Theory of operation:

1. Nothing is counted per packet for the metrics: the engine already counts every packet and
   every drop (``Engine.counters(call_id)``, ``Engine.totals()``, ``Engine.loops``), and the
   server counts its rare events -- calls accepted or refused, sessions set up and torn down,
   logins, admission refusals -- as plain integers in :class:`ServerStats`, on its event loop.
2. A scrape arrives on prometheus_client's own HTTP server, a daemon thread (one per request).
   Its :class:`ServerCollector` asks the event loop for a :class:`MetricsSnapshot`
   (``loop.call_soon_threadsafe``) and waits for it; :func:`take_snapshot` runs on the loop.
3. Why the snapshot is taken on the loop and not read from the scrape thread: the server's
   tables (sessions, pool, admission) belong to the loop, and a session's engine counters leave
   the engine when it closes -- they move into ``ServerStats.closed`` in the same loop callback.
   Summing live sessions + closed sessions + engine totals in one loop callback is therefore
   consistent: a session is counted exactly once, and the ``_total`` series never go backwards
   (a scrape thread reading the engine while the loop tears a session down could count it twice
   or not at all).  The loop's share is only the reading and summing of plain integers
   (``engine.counters`` takes the engine's lock for a copy, the data-plane thread is held for
   microseconds); building the metric families and the text exposition happen on the scrape
   thread.  :attr:`MetricsSnapshot.took` reports the loop's share
   (``fastpptp_metrics_snapshot_seconds``).
4. RADIUS (when configured): each RADIUS client (the verifier's, ``role="auth"``, and the
   accountant's, ``role="acct"``) keeps per-server counters and latency buckets as plain
   integers (:class:`~fastpptp.radius.client.ServerCounters`); the verifier, the accountant
   and the DAE listener keep their own counter dicts.  The snapshot copies them
   (:class:`RadiusSnapshot`) in the same loop callback; their HELP texts are the modules'
   COUNTERS meanings.
5. Labels are bounded: states, reasons and methods come from small fixed sets; a teardown
   cause (:class:`~fastpptp.teardown.Teardown`) is mapped to a few labels by :func:`teardown_reason`.
   Per-session series (``session``, ``user`` labels) only with ``--metrics-per-session``.

prometheus_client is imported only when metrics are served or collected, so the server runs
without it when ``--metrics-listen`` is not given.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from .aio.accounting import COUNTERS as ACCT_COUNTERS
from .ppp.link import Phase
from .radius.accounting import BACKLOG_COUNTERS
from .radius.aio import RadiusDriver
from .radius.client import DROP_REASONS, LATENCY_BUCKETS, SERVER_COUNTERS, RadiusClient
from .radius.dae import COUNTERS as DAE_COUNTERS
from .radius.verifier import COUNTERS as AUTH_COUNTERS
from .teardown import Teardown

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from .aio.accounting import Accountant
    from .aio.dae import DaeListener
    from .aio.session import CallSession
    from .admission import Admission
    from .config import AddressPool
    from .radius.verifier import RadiusVerifier
    from .server import ServerConfig

__all__ = ["ServerStats", "MetricsSnapshot", "SessionSample", "ServerCollector", "MetricsServer",
           "take_snapshot", "teardown_reason", "parse_listen", "SESSION_STATES", "TEARDOWN_LABELS",
           "RadiusSnapshot", "RadiusServerSample", "radius_snapshot"]

log = logging.getLogger("fastpptp.metrics")

#: ``fastpptp_sessions{state}``: the PPP phase of a live session (RFC 1661 §3.2), with
#: Network split into "network" (NCPs negotiating) and "up" (IPCP opened: traffic flows).
SESSION_STATES = ("establish", "authenticate", "network", "up", "terminate")

TEARDOWN_OTHER = "other"
TEARDOWN_SHUTDOWN = "shutdown"
TEARDOWN_ADMIN = "admin"

#: ``fastpptp_sessions_teardown_total{reason}``: the label of each
#: :class:`~fastpptp.teardown.Teardown` cause (every member: a test checks).  Each cause
#: names itself; a local close for no listed cause is ``other``.
TEARDOWN_LABELS: Mapping[Teardown, str] = MappingProxyType({
    Teardown.AUTH_FAILED: "auth_failed",
    Teardown.ECHO_TIMEOUT: "echo_timeout",                  # LCP Echo-Requests unanswered
    Teardown.LOOPBACK: "loopback",
    Teardown.PEER_TERMINATE: "peer_terminate",              # LCP Terminate-Request from the peer
    Teardown.MPPE_LOST_SYNC: "mppe_lost_sync",              # stateless MPPE, >= 4096 lost
    Teardown.NEGOTIATION_FAILED: "negotiation_failed",
    Teardown.INTERNAL_ERROR: "error",
    Teardown.PEER_CALL_CLEAR: "peer_call_clear",            # PPTP Call-Clear-Request
    Teardown.CONTROL_LOST: "control_connection_lost",
    Teardown.SHUTDOWN: TEARDOWN_SHUTDOWN,
    Teardown.ADMIN: TEARDOWN_ADMIN,                         # fastpptp terminate, the API
    Teardown.DISCONNECT_REQUEST: TEARDOWN_ADMIN,            # RADIUS Disconnect-Request
    Teardown.SESSION_TIMEOUT: "session_timeout",            # Session-Timeout / maxconnect
    Teardown.IDLE_TIMEOUT: "idle_timeout",                  # Idle-Timeout / idle
    Teardown.NO_ADDRESS: "no_address",                      # pool empty, address refused
    Teardown.LOCAL_CLOSE: TEARDOWN_OTHER,
})


def teardown_reason(cause: Teardown, *, shutdown: bool = False) -> str:
    """The label of a session's teardown cause (bounded set: the values of
    :data:`TEARDOWN_LABELS`).  While the server stops (``shutdown``), a session that ended
    for no protocol cause of its own (the operator's, ours, none listed) counts as
    ``shutdown``; a protocol cause (the peer's Terminate...) keeps its label."""
    label = TEARDOWN_LABELS[cause]
    if shutdown and label in (TEARDOWN_OTHER, TEARDOWN_ADMIN):
        return TEARDOWN_SHUTDOWN
    return label


@dataclasses.dataclass
class ServerStats:
    """The server's event counters: plain integers, changed on the event loop only."""

    calls_accepted: int = 0
    sessions_setup: int = 0                  # IPCP up
    calls_refused: Counter[str] = dataclasses.field(default_factory=Counter)       # by reason
    teardowns: Counter[str] = dataclasses.field(default_factory=Counter)           # teardown_reason()
    auth_successes: Counter[str] = dataclasses.field(default_factory=Counter)      # by AuthMethod value
    auth_failures: Counter[str] = dataclasses.field(default_factory=Counter)
    admission_refusals: Counter[str] = dataclasses.field(default_factory=Counter)  # Refusal name, lower
    closed: Counter[str] = dataclasses.field(default_factory=Counter)   # engine counters of closed sessions

    def session_closed(self, reason: str, counters: Mapping[str, int]) -> None:
        """A session is gone: count its teardown class and keep its final engine counters."""
        self.teardowns[reason] += 1
        self.closed.update(counters)


# --------------------------------------------------------------------------- snapshot
@dataclasses.dataclass(frozen=True, slots=True)
class SessionSample:
    """One live session in a snapshot (only with per-session metrics)."""

    call_id: int
    user: str
    state: str
    uptime: float
    counters: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class RadiusServerSample:
    """One RADIUS server of one client (:class:`~fastpptp.radius.client.ServerCounters`)."""

    role: str                            # "auth" (the verifier's client) or "acct" (the accountant's)
    server: str                          # ADDR:PORT ([ADDR]:PORT for IPv6)
    requests: int
    retransmits: int
    responses: int
    timeouts: int
    dropped: Mapping[str, int]           # by DROP_REASONS
    latency_sum: float
    latency_buckets: tuple[int, ...]     # per LATENCY_BUCKETS bound, then above the last; not cumulative


@dataclasses.dataclass(frozen=True)
class RadiusSnapshot:
    """The RADIUS counters of one scrape; a part that is not running is empty / None."""

    servers: tuple[RadiusServerSample, ...] = ()
    auth: Mapping[str, int] | None = None          # RadiusVerifier.counters (verifier COUNTERS)
    accounting: Mapping[str, int] | None = None    # Accountant.counters (COUNTERS + BACKLOG_COUNTERS)
    dae: Mapping[str, int] | None = None           # DaeCore.counters (dae COUNTERS)


@dataclasses.dataclass(frozen=True)
class MetricsSnapshot:
    """Everything one scrape reports, read on the event loop in one callback."""

    sessions_by_state: Mapping[str, int]
    control_connections: int
    calls_accepted: int
    sessions_setup: int
    calls_refused: Mapping[str, int]
    teardowns: Mapping[str, int]
    auth_successes: Mapping[str, int]
    auth_failures: Mapping[str, int]
    admission_refusals: Mapping[str, int]
    admission_tracked_sources: int
    admission_evicted: int
    engine: Mapping[str, int]            # engine totals + live sessions + closed sessions
    engine_wakeups: int
    pool_size: int
    pool_used: int
    pool_free: int
    sessions: tuple[SessionSample, ...] = ()
    radius: RadiusSnapshot = RadiusSnapshot()
    #: the running GRE port's counters (``Engine.port_counters()``; {} when none runs) and its
    #: kind ("raw", "packet", "xdp"): ``fastpptp_gre_port_*_total{port}``
    gre_port: Mapping[str, int] = dataclasses.field(default_factory=dict)
    gre_port_kind: str = ""
    took: float = 0.0                    # seconds the loop spent taking it


class SnapshotEngine(Protocol):
    """The engine calls a snapshot makes (both twins; thread-safe, under the engine lock)."""

    def counters(self, call_id: int) -> dict[str, int]: ...

    def totals(self) -> dict[str, int]: ...

    @property
    def loops(self) -> int: ...

    def port_counters(self) -> dict[str, int]: ...


class SnapshotServer(Protocol):
    """What :func:`take_snapshot` reads of :class:`fastpptp.server.Server` (a fake in tests)."""

    config: ServerConfig
    stats: ServerStats
    sessions: dict[int, CallSession]
    pool: AddressPool
    admission: Admission
    radius_verifier: RadiusVerifier | None

    @property
    def engine(self) -> SnapshotEngine: ...

    @property
    def accounting(self) -> Accountant | None: ...

    @property
    def dae(self) -> DaeListener | None: ...


# Dead: waiting for the peer's first frame (PAC), or between teardown and removal
_PHASE_STATE = {Phase.DEAD: "establish", Phase.ESTABLISH: "establish", Phase.AUTHENTICATE: "authenticate",
                Phase.NETWORK: "network", Phase.TERMINATE: "terminate"}


def take_snapshot(server: SnapshotServer, *, per_session: bool = False,
                  clock: Callable[[], float] = time.perf_counter) -> MetricsSnapshot:
    """Read the server's state and the engine's counters (call it on the server's loop)."""
    t0 = clock()
    engine = server.engine
    stats = server.stats
    sums: Counter[str] = Counter(engine.totals())
    sums.update(stats.closed)
    states = dict.fromkeys(SESSION_STATES, 0)
    samples: list[SessionSample] = []
    rows: list[dict[str, int]] = []
    now = asyncio.get_running_loop().time() if per_session else 0.0
    for call_id, s in server.sessions.items():
        if s.closed:
            continue
        try:
            c = engine.counters(call_id)
        except KeyError:                  # not yet in the engine, or already out of it
            continue
        rows.append(c)
        state = "up" if s.info.up else _PHASE_STATE[s.link.phase]
        states[state] += 1
        if per_session:
            samples.append(SessionSample(call_id, s.info.user or "", state, now - s.info.started, c))
    if rows:
        # column sums: every row has the engine's counter names (the same engine made them);
        # about 3x faster than Counter.update per row with 1 000 sessions
        names = tuple(rows[0])
        for name, column in zip(names, zip(*map(operator.itemgetter(*names), rows), strict=True), strict=True):
            sums[name] += sum(column)
    adm = server.admission
    port = getattr(engine, "gre_port", None)       # both twins; its ``kind`` labels the port's series
    return MetricsSnapshot(
        sessions_by_state=states, control_connections=adm.open_connections,
        calls_accepted=stats.calls_accepted, sessions_setup=stats.sessions_setup,
        calls_refused=dict(stats.calls_refused), teardowns=dict(stats.teardowns),
        auth_successes=dict(stats.auth_successes), auth_failures=dict(stats.auth_failures),
        admission_refusals=dict(stats.admission_refusals),
        admission_tracked_sources=adm.tracked_sources(), admission_evicted=adm.evicted,
        engine=dict(sums), engine_wakeups=int(engine.loops),
        pool_size=len(set(server.config.remote_ips)), pool_used=len(server.pool.in_use), pool_free=len(server.pool),
        sessions=tuple(samples), radius=radius_snapshot(server),
        gre_port=dict(engine.port_counters()), gre_port_kind=str(getattr(port, "kind", "")) if port else "",
        took=clock() - t0)


def _server_label(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server_samples(role: str, client: RadiusClient) -> list[RadiusServerSample]:
    return [RadiusServerSample(role, _server_label(srv.address), c.requests, c.retransmits, c.responses,
                               c.timeouts, dict(c.dropped), c.latency_sum, tuple(c.latency_buckets))
            for srv, c in zip(client.servers, client.server_counters, strict=True)]


def radius_snapshot(server: SnapshotServer) -> RadiusSnapshot:
    """The RADIUS counters of the verifier's and the accountant's clients (the ones on a
    RadiusDriver: an embedder's fake driver has no per-server counters), the verifier, the
    accountant and the DAE listener (call it on the server's loop)."""
    servers: list[RadiusServerSample] = []
    verifier, accountant, dae = server.radius_verifier, server.accounting, server.dae
    if verifier is not None and isinstance(verifier.driver, RadiusDriver):
        servers += _server_samples("auth", verifier.driver.client)
    if accountant is not None and isinstance(accountant.driver, RadiusDriver):
        servers += _server_samples("acct", accountant.driver.client)
    return RadiusSnapshot(
        servers=tuple(servers),
        auth=dict(verifier.counters) if verifier is not None else None,
        accounting=accountant.counters if accountant is not None else None,      # a fresh dict
        dae=dict(dae.core.counters) if dae is not None else None)


# --------------------------------------------------------------------------- collector
#: Engine counter -> (metric name, help) for the counters that are not drops.
ENGINE_SERIES: tuple[tuple[str, str, str], ...] = (
    ("rx_bytes", "fastpptp_rx_bytes_total", "IP bytes received from peers over GRE and delivered"),
    ("tx_bytes", "fastpptp_tx_bytes_total", "IP bytes sent to peers over GRE"),
    ("rx_packets", "fastpptp_rx_packets_total", "IP packets received from peers over GRE and delivered"),
    ("tx_packets", "fastpptp_tx_packets_total", "IP packets sent to peers over GRE"),
    ("rx_control", "fastpptp_rx_control_frames_total", "PPP control frames received (queued for the control plane)"),
    ("tx_control", "fastpptp_tx_control_frames_total", "PPP control frames sent"),
    ("tx_acks", "fastpptp_tx_acks_total", "GRE acknowledgement-only packets sent"),
    ("lost", "fastpptp_lost_packets_total", "GRE sequence numbers never received (gaps given up on)"),
    ("reordered", "fastpptp_reordered_packets_total", "GRE packets received out of order and put back in order"),
    ("icmp_errors", "fastpptp_icmp_errors_total", "ICMP errors reported by the kernel on the GRE socket"),
)
_PER_SESSION = (
    ("rx_bytes", "fastpptp_session_rx_bytes_total"), ("tx_bytes", "fastpptp_session_tx_bytes_total"),
    ("rx_packets", "fastpptp_session_rx_packets_total"), ("tx_packets", "fastpptp_session_tx_packets_total"),
)
#: GRE port counter (fastpptp/_greport.pyx PORT_COUNTER_NAMES) -> HELP of
#: ``fastpptp_gre_port_<name>_total{port}`` (docs/DESIGN.md, "GRE ports"); a counter the port
#: adds later is served too, with a generic HELP.
GRE_PORT_SERIES: dict[str, str] = {
    "rx_packets": "GRE packets the port received (fast and slow path)",
    "rx_batches": "Receive batches of the port (each one wake-up's worth of GRE packets)",
    "tx_packets": "GRE packets the port sent (fast and slow path)",
    "tx_batches": "Send batches (flushes) of the port",
    "rx_ring_full": "GRE packets the kernel dropped because the port's receive ring was full",
    "tx_ring_full": "GRE packets not sent: the transmit ring or the socket send buffer was full",
    "kernel_drops": "GRE packets the kernel reported dropping (ENOBUFS from the qdisc or driver)",
    "tx_errors": "GRE packets whose send failed with another error",
    "rx_slowpath": "GRE packets received through the raw socket (fragments, other interfaces)",
    "tx_slowpath": "GRE packets sent through the raw socket (no next hop yet, too big, other egress)",
    "icmp_errors": "ICMP errors the kernel reported about sent GRE packets",
    "rx_not_ours": "Frames the fast path received that were not PPTP GRE for us, or were truncated",
    "tx_full": "Times the port had no room to send: back-pressure, the TUNs are not read",
    "tun_paused": "Times the I/O loop stopped reading the TUNs because the port was full",
}
PER_SESSION_WARNING = ("one series per session and user: cardinality grows with the sessions; "
                       "only with --metrics-per-session")


class ServerCollector:
    """prometheus_client custom collector: one :class:`MetricsSnapshot` per scrape, from
    ``snapshot`` (which may wait for the event loop), turned into metric families here."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._snapshot()))


def families(snap: MetricsSnapshot) -> list[Metric]:
    """The metric families of one snapshot (names: ``fastpptp_`` prefix, base units, ``_total``)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    out: list[Metric] = []

    def gauge(name: str, doc: str, value: float) -> None:
        out.append(GaugeMetricFamily(name, doc, value=value))

    def counter(name: str, doc: str, value: float) -> None:
        out.append(CounterMetricFamily(name, doc, value=value))

    def labelled(name: str, doc: str, label: str, values: Iterable[tuple[str, int]], *,
                 kind: str = "counter") -> None:
        fam: CounterMetricFamily | GaugeMetricFamily
        if kind == "counter":
            fam = CounterMetricFamily(name, doc, labels=[label])
        else:
            fam = GaugeMetricFamily(name, doc, labels=[label])
        for k, v in sorted(values):
            fam.add_metric([k], v)
        out.append(fam)

    labelled("fastpptp_sessions", "Live sessions by PPP phase (up: IPCP opened)", "state",
             snap.sessions_by_state.items(), kind="gauge")
    gauge("fastpptp_control_connections", "Admitted PPTP control connections open", snap.control_connections)
    counter("fastpptp_calls_accepted_total", "Outgoing-Call-Requests accepted (sessions started)",
            snap.calls_accepted)
    labelled("fastpptp_calls_refused_total", "Outgoing-Call-Requests refused", "reason",
             snap.calls_refused.items())
    counter("fastpptp_sessions_setup_total", "Sessions that reached IPCP up", snap.sessions_setup)
    labelled("fastpptp_sessions_teardown_total", "Sessions torn down, by reason class", "reason",
             snap.teardowns.items())
    labelled("fastpptp_auth_successes_total", "Successful logins by authentication method", "method",
             snap.auth_successes.items())
    labelled("fastpptp_auth_failures_total", "Failed logins by authentication method", "method",
             snap.auth_failures.items())
    labelled("fastpptp_admission_refusals_total", "Control connections refused by admission control",
             "reason", snap.admission_refusals.items())
    gauge("fastpptp_admission_tracked_sources", "Source addresses remembered by the rate and lockout tables",
          snap.admission_tracked_sources)
    counter("fastpptp_admission_evicted_sources_total",
            "Live source addresses forgotten because an admission table was full", snap.admission_evicted)
    e = snap.engine
    for key, name, doc in ENGINE_SERIES:
        counter(name, doc, e.get(key, 0))
    labelled("fastpptp_dropped_packets_total",
             "Packets the data plane dropped, by reason (every drop counter of the engine; "
             "queue_full: the control queue to the control plane was full, or no reorder buffer)",
             "reason", ((k[5:], v) for k, v in e.items() if k.startswith("drop_")))
    counter("fastpptp_engine_wakeups_total", "Wake-ups of the engine's I/O loop (each handles a batch)",
            snap.engine_wakeups)
    gauge("fastpptp_address_pool_size", "Addresses in the client address pool", snap.pool_size)
    gauge("fastpptp_address_pool_used", "Client addresses in use (pool and static)", snap.pool_used)
    gauge("fastpptp_address_pool_free", "Pool addresses free", snap.pool_free)
    gauge("fastpptp_metrics_snapshot_seconds", "Event-loop time the last scrape's snapshot took", snap.took)
    for key, value in snap.gre_port.items():
        fam = CounterMetricFamily(f"fastpptp_gre_port_{key}_total",
                                  GRE_PORT_SERIES.get(key, f"GRE port counter {key}"), labels=["port"])
        fam.add_metric([snap.gre_port_kind], value)
        out.append(fam)
    out += radius_families(snap.radius)
    if snap.sessions:
        labels = ["session", "user"]
        fams = {key: CounterMetricFamily(name, f"Per session: {key.replace('_', ' ')} ({PER_SESSION_WARNING})",
                                         labels=labels) for key, name in _PER_SESSION}
        drops = CounterMetricFamily("fastpptp_session_dropped_packets_total",
                                    f"Per session: packets dropped, all reasons ({PER_SESSION_WARNING})",
                                    labels=labels)
        uptime = GaugeMetricFamily("fastpptp_session_uptime_seconds",
                                   f"Per session: seconds since the call was accepted ({PER_SESSION_WARNING})",
                                   labels=labels)
        for s in snap.sessions:
            lv = [str(s.call_id), s.user]
            for key, _ in _PER_SESSION:
                fams[key].add_metric(lv, s.counters.get(key, 0))
            drops.add_metric(lv, sum(v for k, v in s.counters.items() if k.startswith("drop_")))
            uptime.add_metric(lv, s.uptime)
        out += [*fams.values(), drops, uptime]
    return out


def _meanings(table: Mapping[str, str], names: Iterable[tuple[str, str]]) -> str:
    """``label: meaning; ...`` for the HELP text of a labelled family."""
    return "; ".join(f"{label}: {table[key]}" for key, label in names)


#: RADIUS client per-server series: SERVER_COUNTERS key, metric name, the sample's value
_RADIUS_SERVER_SERIES: tuple[tuple[str, str, Callable[[RadiusServerSample], int]], ...] = (
    ("requests", "fastpptp_radius_requests_total", lambda s: s.requests),
    ("retransmits", "fastpptp_radius_retransmits_total", lambda s: s.retransmits),
    ("responses", "fastpptp_radius_responses_total", lambda s: s.responses),
    ("timeouts", "fastpptp_radius_timeouts_total", lambda s: s.timeouts),
)
#: the verifier counters that are no login result (their own families)
_AUTH_NOT_RESULTS = {"requests": "fastpptp_radius_auth_requests_total",
                     "bad_rate_attributes": "fastpptp_radius_auth_bad_rate_attributes_total"}
#: DAE counters -> (family, labels); the rest each a family of its own (fastpptp_dae_<name>_total)
_DAE_DROPS = tuple((k, k[3:]) for k in DAE_COUNTERS
                   if k.startswith("rx_") and k not in ("rx_requests", "rx_duplicates"))
_DAE_REPLIES = {"tx_disconnect_ack": ("disconnect", "ack"), "tx_disconnect_nak": ("disconnect", "nak"),
                "tx_coa_ack": ("coa", "ack"), "tx_coa_nak": ("coa", "nak")}
_DAE_SINGLE = {"rx_requests": "fastpptp_dae_requests_total", "rx_duplicates": "fastpptp_dae_duplicates_total",
               "sessions_disconnected": "fastpptp_dae_sessions_disconnected_total",
               "sessions_changed": "fastpptp_dae_sessions_changed_total",
               "action_errors": "fastpptp_dae_action_errors_total"}


def radius_families(r: RadiusSnapshot) -> list[Metric]:
    """The RADIUS client, verifier, accountant and DAE families (only for the parts running)."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    out: list[Metric] = []
    if r.servers:
        labels = ["server", "role"]
        for key, name, value in _RADIUS_SERVER_SERIES:
            fam = CounterMetricFamily(name, f"RADIUS client, per server: {SERVER_COUNTERS[key]}", labels=labels)
            for s in r.servers:
                fam.add_metric([s.server, s.role], value(s))
            out.append(fam)
        dropped = CounterMetricFamily(
            "fastpptp_radius_dropped_responses_total",
            "RADIUS client, per server: datagrams from the server dropped, by reason ("
            + _meanings(DROP_REASONS, ((k, k) for k in DROP_REASONS)) + ")",
            labels=[*labels, "reason"])
        latency = HistogramMetricFamily(
            "fastpptp_radius_response_seconds",
            "RADIUS client, per server: seconds from the last send of a request to its valid response",
            labels=labels)
        bounds = [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]     # le="5.0", as client libraries write it
        for s in r.servers:
            for reason in DROP_REASONS:
                dropped.add_metric([s.server, s.role, reason], s.dropped.get(reason, 0))
            cumulative, total = [], 0
            for bound, n in zip(bounds, s.latency_buckets, strict=True):
                total += n
                cumulative.append((bound, float(total)))
            latency.add_metric([s.server, s.role], cumulative, s.latency_sum)
        out += [dropped, latency]
    if r.auth is not None:
        results = [k for k in AUTH_COUNTERS if k not in _AUTH_NOT_RESULTS]
        fam = CounterMetricFamily("fastpptp_radius_auth_results_total",
                                  "RADIUS authentication: logins by result ("
                                  + _meanings(AUTH_COUNTERS, ((k, k) for k in results)) + ")",
                                  labels=["result"])
        for k in results:
            fam.add_metric([k], r.auth.get(k, 0))
        out.append(fam)
        for key, name in _AUTH_NOT_RESULTS.items():
            out.append(CounterMetricFamily(name, f"RADIUS authentication: {AUTH_COUNTERS[key]}",
                                           value=r.auth.get(key, 0)))
    if r.accounting is not None:
        for key, meaning in {**ACCT_COUNTERS, **BACKLOG_COUNTERS}.items():
            out.append(CounterMetricFamily(f"fastpptp_radius_accounting_{key}_total",
                                           f"RADIUS accounting: {meaning}", value=r.accounting.get(key, 0)))
    if r.dae is not None:
        d = r.dae
        for key, name in _DAE_SINGLE.items():
            out.append(CounterMetricFamily(name, f"Dynamic Authorization (RFC 5176): {DAE_COUNTERS[key]}",
                                           value=d.get(key, 0)))
        drops = CounterMetricFamily("fastpptp_dae_dropped_requests_total",
                                    "Dynamic Authorization: requests dropped, by reason ("
                                    + _meanings(DAE_COUNTERS, _DAE_DROPS) + ")", labels=["reason"])
        for key, label in _DAE_DROPS:
            drops.add_metric([label], d.get(key, 0))
        replies = CounterMetricFamily("fastpptp_dae_replies_total",
                                      "Dynamic Authorization: replies sent, by request code and result",
                                      labels=["code", "result"])
        for key, (code, result) in _DAE_REPLIES.items():
            replies.add_metric([code, result], d.get(key, 0))
        out += [drops, replies]
    return out


# --------------------------------------------------------------------------- HTTP
def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT``; ``:PORT`` = all addresses) -> (addr, port)."""
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics listen address {text!r}: want ADDR:PORT")
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    return addr or "0.0.0.0", int(port)


class MetricsServer:
    """``/metrics`` on prometheus_client's HTTP server (a daemon thread), fed by snapshots
    taken on ``loop`` (see the module docstring, 3.)."""

    def __init__(self, server: SnapshotServer, loop: asyncio.AbstractEventLoop, *,
                 per_session: bool = False, timeout: float = 5.0):
        self._server = server
        self._loop = loop
        self._per_session = per_session
        self._timeout = timeout
        self._httpd: WSGIServer | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("metrics server not started")
        return int(self._httpd.server_port)

    def snapshot(self) -> MetricsSnapshot:
        """Called on a scrape thread: a snapshot taken on the loop (TimeoutError if the loop
        does not get to it within ``timeout``; the scrape then fails with HTTP 500)."""
        fut: concurrent.futures.Future[MetricsSnapshot] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(take_snapshot(self._server, per_session=self._per_session))
            except BaseException as exc:           # handed to the scrape thread
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        try:
            return fut.result(self._timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            log.warning("metrics scrape: the event loop did not answer within %.1f s", self._timeout)
            raise

    def start(self, addr: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServerCollector(self.snapshot))
        self._httpd, _thread = start_http_server(port, addr, registry=registry)
        log.info("metrics on http://%s:%d/metrics%s", addr, self.port,
                 " (per-session series)" if self._per_session else "")

    async def close(self) -> None:
        """Stop serving (the HTTP thread's poll loop ends within half a second, off the loop)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
