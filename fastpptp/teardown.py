"""Why a session ended: one typed vocabulary for every producer and every consumer.

A session's end has two parts that travel together: the human text (the log line, the
``down`` event, ``SessionInfo.reason``: the peer's Terminate text, the verifier's words...)
and its :class:`Teardown` cause, which code reads.  Nothing recovers the cause from the text.

Producers
  * the PPP link (``ppp/link.py``): LCP's peer Terminate-Request, echo failure, loopback,
    authentication failure, negotiation failure (LCP/CCP/NCP, MPPE required), stateless
    MPPE lost sync, no address for the peer -- ``PPPLink.down_cause`` / ``LinkDown.cause``;
  * the session (``aio/session.py``): the verifier's Session-Timeout and Idle-Timeout, an
    internal error; ``close``/``abort`` take the owner's cause;
  * the owners (``server.py``, ``client.py``): the peer's Call-Clear-Request, the control
    connection lost, an operator's terminate, a RADIUS Disconnect-Request, shutdown.

Precedence (``CallSession.abort``): the link's own cause, if any, wins over the owner's.  The
peer that ends the link often closes TCP before our LCP has finished, and our own Terminate
(a session timeout) is often answered by the peer closing TCP: who began the end is the link.

Consumers map the cause by table, never by text: ``radius.accounting.terminate_cause`` (the
Acct-Terminate-Cause, RFC 2866 §5.10) and ``metrics.teardown_reason`` (the label of
``fastpptp_sessions_teardown_total``).  Each table covers every member (a test checks).

This module imports nothing, so the sans-I/O cores (``ppp/``) may import it.
"""
from __future__ import annotations

import enum

__all__ = ["Teardown"]


class Teardown(enum.Enum):
    """The cause of a session's end (the value is the name used in logs and tests)."""

    # the peer ended it
    PEER_TERMINATE = "peer_terminate"          # LCP Terminate-Request (RFC 1661 §5.5)
    PEER_CALL_CLEAR = "peer_call_clear"        # PPTP Call-Clear-Request / Stop-Control-
                                               # Connection-Request / Call-Disconnect-Notify
    # the carrier went
    CONTROL_LOST = "control_lost"              # TCP gone, PPTP echo unanswered (RFC 2637 §4.1)
    ECHO_TIMEOUT = "echo_timeout"              # LCP Echo-Requests unanswered
    MPPE_LOST_SYNC = "mppe_lost_sync"          # stateless MPPE keys out of step for good
    # the link failed
    AUTH_FAILED = "auth_failed"                # the peer's credentials (or ours) refused
    NEGOTIATION_FAILED = "negotiation_failed"  # LCP/CCP/NCP gave up, MPPE required not agreed,
                                               # LCP Protocol-/Code-Rejected, auth refused
    LOOPBACK = "loopback"                      # our own Magic-Number came back (RFC 1661 §6.4)
    NO_ADDRESS = "no_address"                  # no IP address for the peer (pool exhausted)
    INTERNAL_ERROR = "internal_error"          # our bug or configuration: the session ends
    # our limits, the operator
    SESSION_TIMEOUT = "session_timeout"        # the verifier's Session-Timeout (RFC 2865 §5.27)
    IDLE_TIMEOUT = "idle_timeout"              # the verifier's Idle-Timeout (RFC 2865 §5.28)
    ADMIN = "admin"                            # `fastpptp terminate`, Server.terminate()
    DISCONNECT_REQUEST = "disconnect_request"  # RADIUS Disconnect-Request (RFC 5176 §3)
    SHUTDOWN = "shutdown"                      # the server is stopping (SIGTERM, stop())
    LOCAL_CLOSE = "local_close"                # closed by us for a reason not listed above
                                               # (the client stopping, a tool's end)
