"""The RADIUS dictionary fastpptp uses: packet codes, attribute types and their values.

Only what a PPTP concentrator sends or reads (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5,
RFC 3162, RFC 5176 §3, and the Microsoft vendor attributes of RFC 2548 §2), with the RFCs'
names.  Each attribute's value type is declared once in :data:`ATTRIBUTE_TYPES` /
:data:`MS_ATTRIBUTE_TYPES`, so a length can be checked against it (``integer`` and
``ipaddr`` are exactly 4 octets).
"""
from __future__ import annotations

import enum

__all__ = [
    "Code", "Attr", "MsAttr", "ValueType", "VENDOR_MICROSOFT", "ATTRIBUTE_TYPES",
    "MS_ATTRIBUTE_TYPES", "REQUEST_CODES", "RESPONSE_CODES", "AcctStatusType",
    "AcctTerminateCause", "NasPortType", "ServiceType", "FramedProtocol",
    "MppeEncryptionPolicy", "MppeEncryptionTypes", "ErrorCause",
    "VENDOR_CISCO", "VENDOR_MIKROTIK", "CiscoAttr", "MikrotikAttr", "VENDOR_ATTRIBUTE_TYPES",
    "attribute_by_name",
]

VENDOR_MICROSOFT = 311  # RFC 2548 §2: Vendor-Id of the Microsoft attributes
VENDOR_CISCO = 9        # Cisco-AVPair (FreeRADIUS dictionary.cisco)
VENDOR_MIKROTIK = 14988  # Mikrotik-Rate-Limit (FreeRADIUS dictionary.mikrotik)


class Code(enum.IntEnum):
    """RFC 2865 §3, RFC 2866 §4, RFC 5176 §3 packet codes."""
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    STATUS_SERVER = 12
    DISCONNECT_REQUEST = 40
    DISCONNECT_ACK = 41
    DISCONNECT_NAK = 42
    COA_REQUEST = 43
    COA_ACK = 44
    COA_NAK = 45


# request code -> the response codes that may answer it
RESPONSE_CODES: dict[Code, frozenset[Code]] = {
    Code.ACCESS_REQUEST: frozenset({Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE}),
    Code.ACCOUNTING_REQUEST: frozenset({Code.ACCOUNTING_RESPONSE}),
    Code.STATUS_SERVER: frozenset({Code.ACCESS_ACCEPT, Code.ACCOUNTING_RESPONSE}),
    Code.DISCONNECT_REQUEST: frozenset({Code.DISCONNECT_ACK, Code.DISCONNECT_NAK}),
    Code.COA_REQUEST: frozenset({Code.COA_ACK, Code.COA_NAK}),
}
REQUEST_CODES = frozenset(RESPONSE_CODES)


class Attr(enum.IntEnum):
    """Attribute types (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5, RFC 3162, RFC 5176 §3.5)."""
    USER_NAME = 1
    USER_PASSWORD = 2
    CHAP_PASSWORD = 3
    NAS_IP_ADDRESS = 4
    NAS_PORT = 5
    SERVICE_TYPE = 6
    FRAMED_PROTOCOL = 7
    FRAMED_IP_ADDRESS = 8
    FRAMED_IP_NETMASK = 9
    FILTER_ID = 11
    FRAMED_MTU = 12
    REPLY_MESSAGE = 18
    FRAMED_ROUTE = 22
    STATE = 24
    CLASS = 25
    VENDOR_SPECIFIC = 26
    SESSION_TIMEOUT = 27
    IDLE_TIMEOUT = 28
    TERMINATION_ACTION = 29
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    PROXY_STATE = 33
    ACCT_STATUS_TYPE = 40
    ACCT_DELAY_TIME = 41
    ACCT_INPUT_OCTETS = 42
    ACCT_OUTPUT_OCTETS = 43
    ACCT_SESSION_ID = 44
    ACCT_AUTHENTIC = 45
    ACCT_SESSION_TIME = 46
    ACCT_INPUT_PACKETS = 47
    ACCT_OUTPUT_PACKETS = 48
    ACCT_TERMINATE_CAUSE = 49
    ACCT_MULTI_SESSION_ID = 50
    ACCT_LINK_COUNT = 51
    ACCT_INPUT_GIGAWORDS = 52
    ACCT_OUTPUT_GIGAWORDS = 53
    EVENT_TIMESTAMP = 55
    CHAP_CHALLENGE = 60
    NAS_PORT_TYPE = 61
    PORT_LIMIT = 62
    CONNECT_INFO = 77
    MESSAGE_AUTHENTICATOR = 80
    ACCT_INTERIM_INTERVAL = 85
    NAS_PORT_ID = 87
    NAS_IPV6_ADDRESS = 95
    FRAMED_INTERFACE_ID = 96
    FRAMED_IPV6_PREFIX = 97
    ERROR_CAUSE = 101


class MsAttr(enum.IntEnum):
    """Microsoft vendor attributes (Vendor-Id 311), RFC 2548 §2."""
    MS_CHAP_RESPONSE = 1
    MS_CHAP_ERROR = 2
    MS_CHAP_CPW_1 = 3
    MS_CHAP_CPW_2 = 4
    MS_CHAP_LM_ENC_PW = 5
    MS_CHAP_NT_ENC_PW = 6
    MS_MPPE_ENCRYPTION_POLICY = 7
    MS_MPPE_ENCRYPTION_TYPES = 8
    MS_RAS_VENDOR = 9
    MS_CHAP_DOMAIN = 10
    MS_CHAP_CHALLENGE = 11
    MS_CHAP_MPPE_KEYS = 12
    MS_MPPE_SEND_KEY = 16
    MS_MPPE_RECV_KEY = 17
    MS_CHAP2_RESPONSE = 25
    MS_CHAP2_SUCCESS = 26
    MS_PRIMARY_DNS_SERVER = 28
    MS_SECONDARY_DNS_SERVER = 29
    MS_PRIMARY_NBNS_SERVER = 30
    MS_SECONDARY_NBNS_SERVER = 31


class CiscoAttr(enum.IntEnum):
    """Cisco vendor attributes (Vendor-Id 9) a PPTP concentrator reads."""
    CISCO_AVPAIR = 1          # "name=value", e.g. lcp:interface-config#1=rate-limit output ...


class MikrotikAttr(enum.IntEnum):
    """MikroTik vendor attributes (Vendor-Id 14988) a PPTP concentrator reads."""
    MIKROTIK_RATE_LIMIT = 8   # "rx-rate[/tx-rate] ..." as RouterOS reads it (the NAS's rx/tx)


class ValueType(enum.Enum):
    """RFC 2865 §5 data types (RFC 8044 names): how a value's length is checked."""
    STRING = "string"      # 1-253 octets, text or binary
    INTEGER = "integer"    # exactly 4 octets, big-endian
    IPADDR = "ipaddr"      # exactly 4 octets
    IPV6PREFIX = "ipv6prefix"
    IFID = "ifid"          # exactly 8 octets
    OCTETS = "octets"


_I, _S, _A, _O = ValueType.INTEGER, ValueType.STRING, ValueType.IPADDR, ValueType.OCTETS

ATTRIBUTE_TYPES: dict[int, ValueType] = {
    Attr.USER_NAME: _S, Attr.USER_PASSWORD: _O, Attr.CHAP_PASSWORD: _O,
    Attr.NAS_IP_ADDRESS: _A, Attr.NAS_PORT: _I, Attr.SERVICE_TYPE: _I, Attr.FRAMED_PROTOCOL: _I,
    Attr.FRAMED_IP_ADDRESS: _A, Attr.FRAMED_IP_NETMASK: _A, Attr.FILTER_ID: _S, Attr.FRAMED_MTU: _I,
    Attr.REPLY_MESSAGE: _S, Attr.FRAMED_ROUTE: _S, Attr.STATE: _O, Attr.CLASS: _O,
    Attr.VENDOR_SPECIFIC: _O, Attr.SESSION_TIMEOUT: _I, Attr.IDLE_TIMEOUT: _I,
    Attr.TERMINATION_ACTION: _I, Attr.CALLED_STATION_ID: _S, Attr.CALLING_STATION_ID: _S,
    Attr.NAS_IDENTIFIER: _S, Attr.PROXY_STATE: _O, Attr.ACCT_STATUS_TYPE: _I,
    Attr.ACCT_DELAY_TIME: _I, Attr.ACCT_INPUT_OCTETS: _I, Attr.ACCT_OUTPUT_OCTETS: _I,
    Attr.ACCT_SESSION_ID: _S, Attr.ACCT_AUTHENTIC: _I, Attr.ACCT_SESSION_TIME: _I,
    Attr.ACCT_INPUT_PACKETS: _I, Attr.ACCT_OUTPUT_PACKETS: _I, Attr.ACCT_TERMINATE_CAUSE: _I,
    Attr.ACCT_MULTI_SESSION_ID: _S, Attr.ACCT_LINK_COUNT: _I, Attr.ACCT_INPUT_GIGAWORDS: _I,
    Attr.ACCT_OUTPUT_GIGAWORDS: _I, Attr.EVENT_TIMESTAMP: _I, Attr.CHAP_CHALLENGE: _O,
    Attr.NAS_PORT_TYPE: _I, Attr.PORT_LIMIT: _I, Attr.CONNECT_INFO: _S,
    Attr.MESSAGE_AUTHENTICATOR: _O, Attr.ACCT_INTERIM_INTERVAL: _I, Attr.NAS_PORT_ID: _S,
    Attr.NAS_IPV6_ADDRESS: _O, Attr.FRAMED_INTERFACE_ID: ValueType.IFID,
    Attr.FRAMED_IPV6_PREFIX: ValueType.IPV6PREFIX, Attr.ERROR_CAUSE: _I,
}

MS_ATTRIBUTE_TYPES: dict[int, ValueType] = {
    MsAttr.MS_CHAP_RESPONSE: _O, MsAttr.MS_CHAP_ERROR: _O, MsAttr.MS_CHAP_CPW_1: _O,
    MsAttr.MS_CHAP_CPW_2: _O, MsAttr.MS_CHAP_LM_ENC_PW: _O, MsAttr.MS_CHAP_NT_ENC_PW: _O,
    MsAttr.MS_MPPE_ENCRYPTION_POLICY: _I, MsAttr.MS_MPPE_ENCRYPTION_TYPES: _I,
    MsAttr.MS_RAS_VENDOR: _I, MsAttr.MS_CHAP_DOMAIN: _O, MsAttr.MS_CHAP_CHALLENGE: _O,
    MsAttr.MS_CHAP_MPPE_KEYS: _O, MsAttr.MS_MPPE_SEND_KEY: _O, MsAttr.MS_MPPE_RECV_KEY: _O,
    MsAttr.MS_CHAP2_RESPONSE: _O, MsAttr.MS_CHAP2_SUCCESS: _O,
    MsAttr.MS_PRIMARY_DNS_SERVER: _A, MsAttr.MS_SECONDARY_DNS_SERVER: _A,
    MsAttr.MS_PRIMARY_NBNS_SERVER: _A, MsAttr.MS_SECONDARY_NBNS_SERVER: _A,
}


# vendor -> its attributes' value types (Microsoft's above; the others are text)
VENDOR_ATTRIBUTE_TYPES: dict[int, dict[int, ValueType]] = {
    VENDOR_MICROSOFT: MS_ATTRIBUTE_TYPES,
    VENDOR_CISCO: {CiscoAttr.CISCO_AVPAIR: _S},
    VENDOR_MIKROTIK: {MikrotikAttr.MIKROTIK_RATE_LIMIT: _S},
}

_VENDOR_OF: dict[type[enum.IntEnum], int] = {
    Attr: 0, MsAttr: VENDOR_MICROSOFT, CiscoAttr: VENDOR_CISCO, MikrotikAttr: VENDOR_MIKROTIK,
}


def attribute_by_name(name: str) -> tuple[int, int, ValueType] | None:
    """(vendor, type, value type) of an attribute by its dictionary name, case-insensitive
    (``NAS-Port-Id``, ``MS-CHAP-Challenge``, ``Cisco-AVPair``...); None when unknown."""
    key = name.strip().replace("-", "_").upper()
    for enum_type, vendor in _VENDOR_OF.items():
        member = enum_type.__members__.get(key)
        if member is not None:
            table = ATTRIBUTE_TYPES if vendor == 0 else VENDOR_ATTRIBUTE_TYPES[vendor]
            return vendor, int(member), table.get(int(member), ValueType.OCTETS)
    return None


class AcctStatusType(enum.IntEnum):
    """RFC 2866 §5.1, RFC 2866 §5.1 (Accounting-On/Off), RFC 2869 §2.1 (Interim-Update)."""
    START = 1
    STOP = 2
    INTERIM_UPDATE = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


class AcctTerminateCause(enum.IntEnum):
    """RFC 2866 §5.10."""
    USER_REQUEST = 1
    LOST_CARRIER = 2
    LOST_SERVICE = 3
    IDLE_TIMEOUT = 4
    SESSION_TIMEOUT = 5
    ADMIN_RESET = 6
    ADMIN_REBOOT = 7
    PORT_ERROR = 8
    NAS_ERROR = 9
    NAS_REQUEST = 10
    NAS_REBOOT = 11
    PORT_UNNEEDED = 12
    PORT_PREEMPTED = 13
    PORT_SUSPENDED = 14
    SERVICE_UNAVAILABLE = 15
    CALLBACK = 16
    USER_ERROR = 17
    HOST_REQUEST = 18


class NasPortType(enum.IntEnum):
    """RFC 2865 §5.41 (the values a PPTP server uses)."""
    ASYNC = 0
    SYNC = 1
    VIRTUAL = 5


class ServiceType(enum.IntEnum):
    """RFC 2865 §5.6."""
    LOGIN = 1
    FRAMED = 2


class FramedProtocol(enum.IntEnum):
    """RFC 2865 §5.7."""
    PPP = 1


class MppeEncryptionPolicy(enum.IntEnum):
    """RFC 2548 §2.4.4 MS-MPPE-Encryption-Policy."""
    ALLOWED = 1
    REQUIRED = 2


class MppeEncryptionTypes(enum.IntFlag):
    """RFC 2548 §2.4.5 MS-MPPE-Encryption-Types (0x08 = 56-bit: Microsoft's later use,
    as FreeRADIUS's dictionary.microsoft and pppd's radius plugin read it)."""
    RC4_40 = 0x02
    RC4_128 = 0x04
    RC4_56 = 0x08


class ErrorCause(enum.IntEnum):
    """RFC 5176 §3.5 Error-Cause values a NAS answers with."""
    RESIDUAL_SESSION_CONTEXT_REMOVED = 201
    INVALID_EAP_PACKET = 202
    UNSUPPORTED_ATTRIBUTE = 401
    MISSING_ATTRIBUTE = 402
    NAS_IDENTIFICATION_MISMATCH = 403
    INVALID_REQUEST = 404
    UNSUPPORTED_SERVICE = 405
    UNSUPPORTED_EXTENSION = 406
    INVALID_ATTRIBUTE_VALUE = 407
    ADMINISTRATIVELY_PROHIBITED = 501
    REQUEST_NOT_ROUTABLE = 502
    SESSION_CONTEXT_NOT_FOUND = 503
    SESSION_CONTEXT_NOT_REMOVABLE = 504
    OTHER_PROXY_PROCESSING_ERROR = 505
    RESOURCES_UNAVAILABLE = 506
    REQUEST_INITIATED = 507
