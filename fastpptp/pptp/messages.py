"""The 15 PPTP control messages of RFC 2637 §2: one frozen dataclass and one struct each.

Theory of operation
-------------------
Every control message starts with the same 12-octet header (RFC 2637 §1.4):

    Length (2) | PPTP Message Type (2) = 1 | Magic Cookie (4) = 0x1A2B3C4D
    Control Message Type (2) | Reserved0 (2)

followed by a fixed-size body.  Each message class declares its body once, field by field, in
the RFC's order and with the RFC's names (``LAYOUT``); the struct format, the exact size and
the codec follow from that table.  All integers are network byte order.

Round-trip guarantee: ``decode(b).encode() == b`` for every accepted ``b``.  Reserved fields
are kept as ordinary fields (real peers do not always zero them), and the fixed-size strings
(Host Name, Vendor String, Phone Number, Subaddress, Dialed/Dialing Number, Call Statistics)
are exposed NUL-trimmed while the original padded octets are remembered: if the trimmed
value is unchanged, ``encode`` writes the original octets back (garbage after the NUL
included), otherwise it NUL-pads the new value.

Result/Error/Reason codes decode to the per-message ``IntEnum`` when the value is one the RFC
lists and stay plain ``int`` otherwise (e.g. the Result Code 0 that Windows and Android put in
replies): never an exception for an unlisted code; the control connection decides.
"""
from __future__ import annotations

import dataclasses
import enum
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import (BadLength, BadMagicCookie, BadMessageType, TruncatedMessage,
                     UnknownControlMessageType)

__all__ = [
    "MAGIC_COOKIE", "PPTP_PORT", "PROTOCOL_VERSION", "HEADER", "HEADER_SIZE", "MAX_MESSAGE_SIZE",
    "PptpMessageType", "ControlMessageType", "FramingCapabilities", "BearerCapabilities",
    "BearerType", "FramingType", "GeneralErrorCode", "StartCtrlConnResult", "StopCtrlConnReason",
    "StopCtrlConnResult", "EchoResult", "OutgoingCallResult", "IncomingCallResult",
    "CallDisconnectResult", "Message", "StartControlConnectionRequest",
    "StartControlConnectionReply", "StopControlConnectionRequest", "StopControlConnectionReply",
    "EchoRequest", "EchoReply", "OutgoingCallRequest", "OutgoingCallReply",
    "IncomingCallRequest", "IncomingCallReply", "IncomingCallConnected", "CallClearRequest",
    "CallDisconnectNotify", "WanErrorNotify", "SetLinkInfo", "MESSAGE_CLASSES", "decode",
    "peek_header", "SCCRQ", "SCCRP", "StopCCRQ", "StopCCRP", "OCRQ", "OCRP", "ICRQ", "ICRP",
    "ICCN", "CCRQ", "CDN", "WEN", "SLI",
]

PPTP_PORT = 1723
MAGIC_COOKIE = 0x1A2B3C4D
PROTOCOL_VERSION = 0x0100          # version 1, revision 0 (RFC 2637 §2.1)
HEADER = struct.Struct(">HHIHH")   # Length, PPTP Message Type, Magic Cookie, Ctrl Type, Reserved0
HEADER_SIZE = HEADER.size          # 12
MAX_MESSAGE_SIZE = 220             # Incoming-Call-Request, the largest message


class PptpMessageType(enum.IntEnum):
    CONTROL = 1
    MANAGEMENT = 2                 # defined by RFC 2637 §1.4 but never used


class ControlMessageType(enum.IntEnum):
    """RFC 2637 §1.4 Control Message Type."""

    START_CONTROL_CONNECTION_REQUEST = 1
    START_CONTROL_CONNECTION_REPLY = 2
    STOP_CONTROL_CONNECTION_REQUEST = 3
    STOP_CONTROL_CONNECTION_REPLY = 4
    ECHO_REQUEST = 5
    ECHO_REPLY = 6
    OUTGOING_CALL_REQUEST = 7
    OUTGOING_CALL_REPLY = 8
    INCOMING_CALL_REQUEST = 9
    INCOMING_CALL_REPLY = 10
    INCOMING_CALL_CONNECTED = 11
    CALL_CLEAR_REQUEST = 12
    CALL_DISCONNECT_NOTIFY = 13
    WAN_ERROR_NOTIFY = 14
    SET_LINK_INFO = 15


class FramingCapabilities(enum.IntFlag):
    """SCCRQ/SCCRP Framing Capabilities (RFC 2637 §2.1)."""

    ASYNCHRONOUS = 0x1
    SYNCHRONOUS = 0x2


class BearerCapabilities(enum.IntFlag):
    """SCCRQ/SCCRP Bearer Capabilities (RFC 2637 §2.1)."""

    ANALOG = 0x1
    DIGITAL = 0x2


class BearerType(enum.IntEnum):
    """OCRQ Bearer Type / ICRQ Call Bearer Type (RFC 2637 §2.7, §2.9)."""

    ANALOG = 1
    DIGITAL = 2
    ANY = 3


class FramingType(enum.IntEnum):
    """OCRQ/ICCN Framing Type (RFC 2637 §2.7, §2.11)."""

    ASYNCHRONOUS = 1
    SYNCHRONOUS = 2
    ANY = 3


class GeneralErrorCode(enum.IntEnum):
    """General Error Codes (RFC 2637 §2.16), meaningful when a Result Code says General Error."""

    NONE = 0
    NOT_CONNECTED = 1      # no control connection exists yet for this PAC-PNS pair
    BAD_FORMAT = 2         # length wrong or Magic Cookie wrong
    BAD_VALUE = 3          # a field was out of range or a reserved field was non-zero
    NO_RESOURCE = 4        # insufficient resources to handle this command now
    BAD_CALL_ID = 5        # the Call ID is invalid in this context
    PAC_ERROR = 6          # a generic vendor-specific error occurred in the PAC


class StartCtrlConnResult(enum.IntEnum):
    """Start-Control-Connection-Reply Result Code (RFC 2637 §2.2)."""

    SUCCESSFUL = 1
    GENERAL_ERROR = 2
    ALREADY_EXISTS = 3     # command channel already exists
    NOT_AUTHORIZED = 4     # requester is not authorized to establish a command channel
    BAD_PROTOCOL_VERSION = 5


class StopCtrlConnReason(enum.IntEnum):
    """Stop-Control-Connection-Request Reason (RFC 2637 §2.3)."""

    NONE = 1               # general request to clear control connection
    STOP_PROTOCOL = 2      # can't support peer's version of the protocol
    STOP_LOCAL_SHUTDOWN = 3


class StopCtrlConnResult(enum.IntEnum):
    """Stop-Control-Connection-Reply Result Code (RFC 2637 §2.4)."""

    OK = 1
    GENERAL_ERROR = 2


class EchoResult(enum.IntEnum):
    """Echo-Reply Result Code (RFC 2637 §2.6)."""

    OK = 1
    GENERAL_ERROR = 2


class OutgoingCallResult(enum.IntEnum):
    """Outgoing-Call-Reply Result Code (RFC 2637 §2.8)."""

    CONNECTED = 1
    GENERAL_ERROR = 2
    NO_CARRIER = 3
    BUSY = 4
    NO_DIAL_TONE = 5
    TIME_OUT = 6
    DO_NOT_ACCEPT = 7


class IncomingCallResult(enum.IntEnum):
    """Incoming-Call-Reply Result Code (RFC 2637 §2.10)."""

    CONNECT = 1
    GENERAL_ERROR = 2
    DO_NOT_ACCEPT = 3


class CallDisconnectResult(enum.IntEnum):
    """Call-Disconnect-Notify Result Code (RFC 2637 §2.13)."""

    LOST_CARRIER = 1
    GENERAL_ERROR = 2
    ADMIN_SHUTDOWN = 3
    REQUEST = 4            # answer to a Call-Clear-Request


def _trim(raw: bytes) -> bytes:
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def _code(enum_cls: type[enum.IntEnum] | type[enum.IntFlag], value: int) -> int:
    """``value`` as its IntEnum/IntFlag member, or the bare number when it is not listed."""
    try:
        return enum_cls(value)
    except ValueError:
        return value


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of the 15 control messages.  Subclasses set ``TYPE`` and ``LAYOUT``."""

    TYPE: ClassVar[ControlMessageType]
    #: body fields after the 12-octet header: (attribute name, struct code); ``Ns`` = string
    LAYOUT: ClassVar[tuple[tuple[str, str], ...]]
    #: attribute name -> IntEnum/IntFlag it decodes to when the value is listed
    CODES: ClassVar[dict[str, type[enum.IntEnum] | type[enum.IntFlag]]] = {}
    #: attribute name -> the string whose length it carries (filled in when left None)
    LENGTHS: ClassVar[dict[str, str]] = {}
    STRUCT: ClassVar[struct.Struct]
    SIZE: ClassVar[int]
    _STRINGS: ClassVar[dict[str, int]]

    reserved0: int = 0
    #: original padded octets of the string fields (name, bytes); see the module docstring
    raw_strings: tuple[tuple[str, bytes], ...] = field(default=(), compare=False, repr=False)

    def __init_subclass__(cls, **kw: object) -> None:
        super().__init_subclass__(**kw)
        cls.STRUCT = struct.Struct(">HHIHH" + "".join(code for _, code in cls.LAYOUT))
        cls.SIZE = cls.STRUCT.size
        cls._STRINGS = {name: int(code[:-1]) for name, code in cls.LAYOUT if code.endswith("s")}

    def __post_init__(self) -> None:
        for name, size in self._STRINGS.items():
            value = getattr(self, name)
            if isinstance(value, str):
                value = value.encode("utf-8")
                object.__setattr__(self, name, value)
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError(f"{type(self).__name__}.{name} must be bytes or str")
            if len(value) > size:
                raise ValueError(f"{type(self).__name__}.{name} longer than {size} octets")
        for name, string in self.LENGTHS.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, len(getattr(self, string)))

    @property
    def message_type(self) -> ControlMessageType:
        return self.TYPE

    def encode(self) -> bytes:
        raw = dict(self.raw_strings)
        values: list[int | bytes | bytearray] = []
        for name, _code in self.LAYOUT:
            value = getattr(self, name)
            if name in self._STRINGS:
                original = raw.get(name)
                if original is not None and _trim(original) == value:
                    value = original          # keep the peer's padding octets verbatim
                # struct pads a short ``s`` field with NULs
            values.append(int(value) if not isinstance(value, (bytes, bytearray)) else value)
        try:
            return self.STRUCT.pack(self.SIZE, PptpMessageType.CONTROL, MAGIC_COOKIE,
                                    self.TYPE, self.reserved0, *values)
        except struct.error as exc:   # a field out of range: the caller's bug
            raise ValueError(f"cannot encode {type(self).__name__}: {exc}") from None

    @classmethod
    def _from_body(cls, data: bytes) -> "Message":
        unpacked = cls.STRUCT.unpack(data)
        reserved0 = unpacked[4]
        kwargs: dict[str, int | bytes] = {}
        raw: list[tuple[str, bytes]] = []
        for (name, _fmt), value in zip(cls.LAYOUT, unpacked[5:], strict=True):
            if name in cls._STRINGS:
                raw.append((name, value))
                value = _trim(value)
            elif name in cls.CODES:
                value = _code(cls.CODES[name], value)
            kwargs[name] = value
        return cls(reserved0=reserved0, raw_strings=tuple(raw), **kwargs)

    def describe(self) -> str:
        """One log line listing every field (accel-ppp habit; no secrets live here)."""
        parts = []
        for f in dataclasses.fields(self):
            if f.name == "raw_strings":
                continue
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = f"{value.value}({value.name})"
            parts.append(f"{f.name}={value!r}" if isinstance(value, bytes) else f"{f.name}={value}")
        return f"{type(self).__name__} " + " ".join(parts)


# --- the 15 messages, RFC 2637 §2.1 - §2.15 ---------------------------------------------

@dataclass(frozen=True, kw_only=True)
class StartControlConnectionRequest(Message):
    """§2.1 SCCRQ (156 octets): the PNS or PAC opens the control connection."""

    TYPE = ControlMessageType.START_CONTROL_CONNECTION_REQUEST
    LAYOUT = (("protocol_version", "H"), ("reserved1", "H"), ("framing_capabilities", "I"),
              ("bearer_capabilities", "I"), ("maximum_channels", "H"),
              ("firmware_revision", "H"), ("host_name", "64s"), ("vendor_string", "64s"))
    CODES = {"framing_capabilities": FramingCapabilities,
             "bearer_capabilities": BearerCapabilities}
    protocol_version: int = PROTOCOL_VERSION
    reserved1: int = 0
    framing_capabilities: int = FramingCapabilities.ASYNCHRONOUS
    bearer_capabilities: int = BearerCapabilities.ANALOG
    maximum_channels: int = 0
    firmware_revision: int = 0
    host_name: bytes = b""
    vendor_string: bytes = b""


@dataclass(frozen=True, kw_only=True)
class StartControlConnectionReply(Message):
    """§2.2 SCCRP (156 octets)."""

    TYPE = ControlMessageType.START_CONTROL_CONNECTION_REPLY
    LAYOUT = (("protocol_version", "H"), ("result_code", "B"), ("error_code", "B"),
              ("framing_capabilities", "I"), ("bearer_capabilities", "I"),
              ("maximum_channels", "H"), ("firmware_revision", "H"), ("host_name", "64s"),
              ("vendor_string", "64s"))
    CODES = {"result_code": StartCtrlConnResult, "error_code": GeneralErrorCode,
             "framing_capabilities": FramingCapabilities,
             "bearer_capabilities": BearerCapabilities}
    protocol_version: int = PROTOCOL_VERSION
    result_code: int = StartCtrlConnResult.SUCCESSFUL
    error_code: int = GeneralErrorCode.NONE
    framing_capabilities: int = FramingCapabilities.ASYNCHRONOUS
    bearer_capabilities: int = BearerCapabilities.ANALOG
    maximum_channels: int = 0
    firmware_revision: int = 0
    host_name: bytes = b""
    vendor_string: bytes = b""


@dataclass(frozen=True, kw_only=True)
class StopControlConnectionRequest(Message):
    """§2.3 StopCCRQ (16 octets)."""

    TYPE = ControlMessageType.STOP_CONTROL_CONNECTION_REQUEST
    LAYOUT = (("reason", "B"), ("reserved1", "B"), ("reserved2", "H"))
    CODES = {"reason": StopCtrlConnReason}
    reason: int = StopCtrlConnReason.NONE
    reserved1: int = 0
    reserved2: int = 0


@dataclass(frozen=True, kw_only=True)
class StopControlConnectionReply(Message):
    """§2.4 StopCCRP (16 octets)."""

    TYPE = ControlMessageType.STOP_CONTROL_CONNECTION_REPLY
    LAYOUT = (("result_code", "B"), ("error_code", "B"), ("reserved1", "H"))
    CODES = {"result_code": StopCtrlConnResult, "error_code": GeneralErrorCode}
    result_code: int = StopCtrlConnResult.OK
    error_code: int = GeneralErrorCode.NONE
    reserved1: int = 0


@dataclass(frozen=True, kw_only=True)
class EchoRequest(Message):
    """§2.5 Echo-Request (16 octets): keep-alive of the control connection."""

    TYPE = ControlMessageType.ECHO_REQUEST
    LAYOUT = (("identifier", "I"),)
    identifier: int = 0


@dataclass(frozen=True, kw_only=True)
class EchoReply(Message):
    """§2.6 Echo-Reply (20 octets)."""

    TYPE = ControlMessageType.ECHO_REPLY
    LAYOUT = (("identifier", "I"), ("result_code", "B"), ("error_code", "B"),
              ("reserved1", "H"))
    CODES = {"result_code": EchoResult, "error_code": GeneralErrorCode}
    identifier: int = 0
    result_code: int = EchoResult.OK
    error_code: int = GeneralErrorCode.NONE
    reserved1: int = 0


@dataclass(frozen=True, kw_only=True)
class OutgoingCallRequest(Message):
    """§2.7 OCRQ (168 octets): the PNS asks the PAC to place a call."""

    TYPE = ControlMessageType.OUTGOING_CALL_REQUEST
    LAYOUT = (("call_id", "H"), ("call_serial_number", "H"), ("minimum_bps", "I"),
              ("maximum_bps", "I"), ("bearer_type", "I"), ("framing_type", "I"),
              ("packet_recv_window_size", "H"), ("packet_processing_delay", "H"),
              ("phone_number_length", "H"), ("reserved1", "H"), ("phone_number", "64s"),
              ("subaddress", "64s"))
    CODES = {"bearer_type": BearerType, "framing_type": FramingType}
    LENGTHS = {"phone_number_length": "phone_number"}
    call_id: int = 0
    call_serial_number: int = 0
    minimum_bps: int = 0
    maximum_bps: int = 0
    bearer_type: int = BearerType.ANY
    framing_type: int = FramingType.ANY
    packet_recv_window_size: int = 0
    packet_processing_delay: int = 0
    phone_number_length: int | None = None     # None: len(phone_number)
    reserved1: int = 0
    phone_number: bytes = b""
    subaddress: bytes = b""


@dataclass(frozen=True, kw_only=True)
class OutgoingCallReply(Message):
    """§2.8 OCRP (32 octets)."""

    TYPE = ControlMessageType.OUTGOING_CALL_REPLY
    LAYOUT = (("call_id", "H"), ("peer_call_id", "H"), ("result_code", "B"),
              ("error_code", "B"), ("cause_code", "H"), ("connect_speed", "I"),
              ("packet_recv_window_size", "H"), ("packet_processing_delay", "H"),
              ("physical_channel_id", "I"))
    CODES = {"result_code": OutgoingCallResult, "error_code": GeneralErrorCode}
    call_id: int = 0
    peer_call_id: int = 0
    result_code: int = OutgoingCallResult.CONNECTED
    error_code: int = GeneralErrorCode.NONE
    cause_code: int = 0
    connect_speed: int = 0
    packet_recv_window_size: int = 0
    packet_processing_delay: int = 0
    physical_channel_id: int = 0


@dataclass(frozen=True, kw_only=True)
class IncomingCallRequest(Message):
    """§2.9 ICRQ (220 octets): the PAC reports an incoming call to the PNS."""

    TYPE = ControlMessageType.INCOMING_CALL_REQUEST
    LAYOUT = (("call_id", "H"), ("call_serial_number", "H"), ("call_bearer_type", "I"),
              ("physical_channel_id", "I"), ("dialed_number_length", "H"),
              ("dialing_number_length", "H"), ("dialed_number", "64s"),
              ("dialing_number", "64s"), ("subaddress", "64s"))
    CODES = {"call_bearer_type": BearerType}
    LENGTHS = {"dialed_number_length": "dialed_number",
               "dialing_number_length": "dialing_number"}
    call_id: int = 0
    call_serial_number: int = 0
    call_bearer_type: int = BearerType.ANALOG
    physical_channel_id: int = 0
    dialed_number_length: int | None = None
    dialing_number_length: int | None = None
    dialed_number: bytes = b""
    dialing_number: bytes = b""
    subaddress: bytes = b""


@dataclass(frozen=True, kw_only=True)
class IncomingCallReply(Message):
    """§2.10 ICRP (24 octets)."""

    TYPE = ControlMessageType.INCOMING_CALL_REPLY
    LAYOUT = (("call_id", "H"), ("peer_call_id", "H"), ("result_code", "B"),
              ("error_code", "B"), ("packet_recv_window_size", "H"),
              ("packet_transmit_delay", "H"), ("reserved1", "H"))
    CODES = {"result_code": IncomingCallResult, "error_code": GeneralErrorCode}
    call_id: int = 0
    peer_call_id: int = 0
    result_code: int = IncomingCallResult.CONNECT
    error_code: int = GeneralErrorCode.NONE
    packet_recv_window_size: int = 0
    packet_transmit_delay: int = 0
    reserved1: int = 0


@dataclass(frozen=True, kw_only=True)
class IncomingCallConnected(Message):
    """§2.11 ICCN (28 octets)."""

    TYPE = ControlMessageType.INCOMING_CALL_CONNECTED
    LAYOUT = (("peer_call_id", "H"), ("reserved1", "H"), ("connect_speed", "I"),
              ("packet_recv_window_size", "H"), ("packet_transmit_delay", "H"),
              ("framing_type", "I"))
    CODES = {"framing_type": FramingType}
    peer_call_id: int = 0
    reserved1: int = 0
    connect_speed: int = 0
    packet_recv_window_size: int = 0
    packet_transmit_delay: int = 0
    framing_type: int = FramingType.ASYNCHRONOUS


@dataclass(frozen=True, kw_only=True)
class CallClearRequest(Message):
    """§2.12 Call-Clear-Request (16 octets): PNS -> PAC; Call ID is the PNS's own."""

    TYPE = ControlMessageType.CALL_CLEAR_REQUEST
    LAYOUT = (("call_id", "H"), ("reserved1", "H"))
    call_id: int = 0
    reserved1: int = 0


@dataclass(frozen=True, kw_only=True)
class CallDisconnectNotify(Message):
    """§2.13 CDN (148 octets): PAC -> PNS; Call ID is the PAC's own."""

    TYPE = ControlMessageType.CALL_DISCONNECT_NOTIFY
    LAYOUT = (("call_id", "H"), ("result_code", "B"), ("error_code", "B"),
              ("cause_code", "H"), ("reserved1", "H"), ("call_statistics", "128s"))
    CODES = {"result_code": CallDisconnectResult, "error_code": GeneralErrorCode}
    call_id: int = 0
    result_code: int = CallDisconnectResult.REQUEST
    error_code: int = GeneralErrorCode.NONE
    cause_code: int = 0
    reserved1: int = 0
    call_statistics: bytes = b""


@dataclass(frozen=True, kw_only=True)
class WanErrorNotify(Message):
    """§2.14 WAN-Error-Notify (40 octets): PAC -> PNS error counters."""

    TYPE = ControlMessageType.WAN_ERROR_NOTIFY
    LAYOUT = (("peer_call_id", "H"), ("reserved1", "H"), ("crc_errors", "I"),
              ("framing_errors", "I"), ("hardware_overruns", "I"), ("buffer_overruns", "I"),
              ("timeout_errors", "I"), ("alignment_errors", "I"))
    peer_call_id: int = 0
    reserved1: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    hardware_overruns: int = 0
    buffer_overruns: int = 0
    timeout_errors: int = 0
    alignment_errors: int = 0


@dataclass(frozen=True, kw_only=True)
class SetLinkInfo(Message):
    """§2.15 Set-Link-Info (24 octets): PNS -> PAC ACCMs (PAC -> PNS seen in the wild too)."""

    TYPE = ControlMessageType.SET_LINK_INFO
    LAYOUT = (("peer_call_id", "H"), ("reserved1", "H"), ("send_accm", "I"),
              ("receive_accm", "I"))
    peer_call_id: int = 0
    reserved1: int = 0
    send_accm: int = 0xFFFFFFFF
    receive_accm: int = 0xFFFFFFFF


# Short names, as the RFC and pptpd/accel-ppp logs abbreviate them.
SCCRQ = StartControlConnectionRequest
SCCRP = StartControlConnectionReply
StopCCRQ = StopControlConnectionRequest
StopCCRP = StopControlConnectionReply
OCRQ = OutgoingCallRequest
OCRP = OutgoingCallReply
ICRQ = IncomingCallRequest
ICRP = IncomingCallReply
ICCN = IncomingCallConnected
CCRQ = CallClearRequest
CDN = CallDisconnectNotify
WEN = WanErrorNotify
SLI = SetLinkInfo

MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (
        SCCRQ, SCCRP, StopCCRQ, StopCCRP, EchoRequest, EchoReply, OCRQ, OCRP, ICRQ, ICRP,
        ICCN, CCRQ, CDN, WEN, SLI)
}
assert max(c.SIZE for c in MESSAGE_CLASSES.values()) == MAX_MESSAGE_SIZE


def peek_header(data: bytes | bytearray) -> tuple[int, int, int, int]:
    """Validate the 12-octet header at the start of ``data``.

    Returns (length, control message type, reserved0, magic cookie).  Checks, in the order a
    receiver can: the magic cookie (RFC 2637 §1.4: a wrong cookie means the stream is out of
    sync and the connection must be closed), the PPTP Message Type, the Control Message Type
    and that Length is the exact size of that type.
    """
    if len(data) < HEADER_SIZE:
        raise TruncatedMessage(f"{len(data)} octets, a PPTP header needs {HEADER_SIZE}")
    length, pptp_type, cookie, ctrl_type, reserved0 = HEADER.unpack_from(data)
    if cookie != MAGIC_COOKIE:
        raise BadMagicCookie(f"magic cookie 0x{cookie:08X}")
    if pptp_type != PptpMessageType.CONTROL:
        raise BadMessageType(f"PPTP Message Type {pptp_type}")
    cls = MESSAGE_CLASSES.get(ctrl_type)
    if cls is None:
        raise UnknownControlMessageType(f"Control Message Type {ctrl_type}")
    if length != cls.SIZE:
        raise BadLength(f"{cls.__name__} with Length {length}, must be {cls.SIZE}")
    return length, ctrl_type, reserved0, cookie


def decode(data: bytes) -> Message:
    """Decode exactly one control message (``len(data)`` must equal its Length field)."""
    data = bytes(data)
    length, ctrl_type, _, _ = peek_header(data)
    if len(data) < length:
        raise TruncatedMessage(f"{len(data)} octets of a {length}-octet message")
    if len(data) > length:
        raise BadLength(f"{len(data)} octets for a {length}-octet message")
    return MESSAGE_CLASSES[ctrl_type]._from_body(data)
