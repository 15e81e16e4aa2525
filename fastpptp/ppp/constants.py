"""PPP protocol numbers and shared enums (RFC 1661 §2, RFC 1700 / IANA PPP numbers).

One place for the numbers every layer meets, so the data plane, the codecs and the
negotiation automata agree on them.
"""
from __future__ import annotations

import enum


class Protocol(enum.IntEnum):
    """PPP Protocol field values (IANA "PPP DLL Protocol Numbers")."""

    IPV4 = 0x0021
    IPV6 = 0x0057
    COMPRESSED = 0x00FD      # CCP compressed datagram (MPPE/MPPC payload, RFC 1962 §4)
    IPCP = 0x8021            # RFC 1332
    IPV6CP = 0x8057          # RFC 5072
    CCP = 0x80FD             # RFC 1962
    LCP = 0xC021             # RFC 1661
    PAP = 0xC023             # RFC 1334
    LQR = 0xC025
    CHAP = 0xC223            # RFC 1994 (also MS-CHAP v1/v2)
    EAP = 0xC227             # RFC 3748


#: Engine events ride the engine's control queue beside the PPP control frames, with
#: pseudo-protocol numbers above the 16-bit Protocol field (docs/DESIGN.md, "Engine API").
#: Defined here, not in the engine, because ``ppp/`` may not import the engine; the engine
#: (``dataplane.py``, ``_gre_ref.py``, ``_gre.pyx``) imports them from here.
ENGINE_EVENT_BASE = 0x10000
#: Stateful MPPE lost sync (coherency count gap): the link sends CCP Reset-Request.
EV_MPPE_RESET_NEEDED = 0x10001
#: Stateless MPPE lost sync for good: a run of decrypted frames whose inner protocol MPPE
#: never carries (the peer's count wrapped past ours: >= 4096 packets lost).  Raised once
#: per run; the link closes (no CCP reset exists for stateless keys).
EV_MPPE_LOST_SYNC = 0x10002


class AuthMethod(enum.Enum):
    """Authentication methods, named as pppd names them in its options."""

    PAP = "pap"
    CHAP_MD5 = "chap"
    MSCHAP_V1 = "mschap"
    MSCHAP_V2 = "mschap-v2"
    EAP = "eap"

    @property
    def label(self) -> str:
        return {"pap": "PAP", "chap": "CHAP-MD5", "mschap": "MS-CHAP",
                "mschap-v2": "MS-CHAPv2", "eap": "EAP"}[self.value]


# CHAP algorithm octet in the LCP Authentication-Protocol option (RFC 1994 §3, RFC 2433, RFC 2759).
CHAP_ALGORITHM = {AuthMethod.CHAP_MD5: 0x05, AuthMethod.MSCHAP_V1: 0x80, AuthMethod.MSCHAP_V2: 0x81}

# RFC 1661 §5 packet codes shared by LCP and every NCP (LCP adds 8-13).
class Code(enum.IntEnum):
    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8      # LCP only
    ECHO_REQUEST = 9         # LCP only
    ECHO_REPLY = 10          # LCP only
    DISCARD_REQUEST = 11     # LCP only
    IDENTIFICATION = 12      # LCP only, RFC 1570
    TIME_REMAINING = 13      # LCP only, RFC 1570
    RESET_REQUEST = 14       # CCP only, RFC 1962
    RESET_ACK = 15           # CCP only, RFC 1962
