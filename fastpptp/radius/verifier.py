"""RADIUS authentication of PPP logins: a :class:`~fastpptp.ppp.auth.base.VerifyRequest` in,
an Access-Request out, the Access-Accept/-Reject back as a :class:`VerifyResult`.

Theory of operation
  1. The server makes one :class:`RadiusVerifier` (over a started
     :class:`~fastpptp.radius.aio.RadiusDriver`) and, per call, an ``AsyncVerifier`` with the
     call's :class:`NasContext` (:meth:`RadiusVerifier.for_call`): NAS-Port = our call ID,
     Calling-Station-Id = the peer's address, Called-Station-Id = ours.
  2. :func:`access_request_attributes` (pure) builds the Access-Request: the method's
     attributes (radius/auth.py: PAP, CHAP-MD5, MS-CHAPv1, MS-CHAPv2, the peer's fields
     verbatim), NAS-Identifier / NAS-IP-Address, NAS-Port, NAS-Port-Type Virtual,
     Service-Type Framed, Framed-Protocol PPP, the station IDs and pppd's ``avpair``s.
  3. The driver sends it (timeouts, retries, failover: radius/client.py) without blocking
     the loop; no server answering ends in a clean rejection ("no RADIUS server answered"),
     or, with ``auth_order`` "radius,local", in the local (chap-secrets) verdict.
  4. :func:`verify_result` (pure) reads the reply.  Access-Reject: MS-CHAP-Error goes to the
     peer as the MS-CHAP Failure's E=/M= (chap.py adds our R=/C=/V=), a Reply-Message as the
     PAP/CHAP failure text.  Access-Accept: MS-CHAP2-Success verbatim (``S=...``); the MPPE
     keys -- MS-MPPE-Send-Key is the key the *NAS* sends with (RFC 2548 §2.4.2), so it is
     our send key, MS-MPPE-Recv-Key our receive key; MS-CHAPv1's MS-CHAP-MPPE-Keys NT-Key
     (the password hash hash) gives the RFC 3079 §2.4 start key; reply attributes become
     :class:`ReplyAttributes` (Framed-IP-Address, Session-/Idle-Timeout, Acct-Interim-Interval,
     Framed-MTU, Framed-Route, Class, MS DNS/NBNS, the rate limit:
     :func:`fastpptp.radius.rates.rate_limit_from_attributes`; a rate attribute that does not
     parse is ignored -- the session gets no limit from RADIUS -- and counted
     (``bad_rate_attributes``) and logged).
  5. MS-MPPE-Encryption-Policy / -Types against our MPPE policy (:func:`mppe_for_session`):
       * RADIUS requires encryption (Policy 2) and MPPE is off here -> reject;
       * RADIUS requires it and the method gives no keys (PAP, CHAP-MD5) or the reply has
         none -> reject;
       * we require MPPE, the method is MS-CHAP and the reply has no keys -> reject (the
         link could not bring MPPE up);
       * the Types leave none of our strengths -> reject if either side requires MPPE, else
         the keys are dropped (no MPPE for this session);
       * otherwise the session's MPPE policy is ours narrowed to the common strengths, and
         made "required" when RADIUS requires it (``SessionMppe``; the server applies it to
         the call's link before the verdict reaches it).
  6. ``auth_order`` "local,radius": a user the local secrets know is checked locally, any
     other through RADIUS.

Secrets and passwords are never logged.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fastpptp.errors import LocalProtocolError, RemoteProtocolError
from fastpptp.ppp.auth.base import (
    AuthBackend, ReplyAttributes, VerifyRequest, VerifyResult,
)
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.auth.policy import MppePolicy
from fastpptp.ppp.constants import AuthMethod
from fastpptp.radius import auth
from fastpptp.radius.auth import AccessReply
from fastpptp.radius.client import RadiusServer, Response
from fastpptp.radius.config import avpair_attribute
from fastpptp.radius.dictionary import (
    ATTRIBUTE_TYPES, VENDOR_ATTRIBUTE_TYPES, VENDOR_CISCO, VENDOR_MICROSOFT, VENDOR_MIKROTIK, Attr,
    CiscoAttr, Code, FramedProtocol, MikrotikAttr, MppeEncryptionPolicy, MppeEncryptionTypes, MsAttr,
    NasPortType, ServiceType, ValueType,
)
from fastpptp.radius.packet import Attribute, Packet, RadiusDecodeError, text_value
from fastpptp.radius.rates import rate_limit_from_attributes
from fastpptp.radius.settings import RadiusSettings

__all__ = [
    "NasContext", "SessionMppe", "RadiusVerdict", "RadiusVerifier", "radattr_lines", "attribute_name", "access_request_attributes", "verify_result",
    "mppe_for_session", "COUNTERS",
]

log = logging.getLogger("fastpptp.radius")

COUNTERS: dict[str, str] = {
    "requests": "logins sent to RADIUS",
    "accepts": "Access-Accepts that became accepting verdicts",
    "rejects": "Access-Rejects",
    "policy_rejects": "Access-Accepts refused here (MPPE policy, unusable reply)",
    "no_response": "logins no RADIUS server answered",
    "local": "logins decided by the local secrets (auth_order)",
    "bad_rate_attributes": "Access-Accepts whose rate-limit attribute did not parse (no limit applied)",
}

_MS_CHAP = (AuthMethod.MSCHAP_V1, AuthMethod.MSCHAP_V2)
_MPPE_BITS = {MppeEncryptionTypes.RC4_40: 40, MppeEncryptionTypes.RC4_56: 56,
              MppeEncryptionTypes.RC4_128: 128}


@dataclass(frozen=True)
class NasContext:
    """One call as RADIUS sees it: NAS-Port (our call ID), Calling-Station-Id (the peer's
    address), Called-Station-Id (our address the peer connected to)."""
    call_id: int
    calling_station: str
    called_station: str = ""


@dataclass(frozen=True)
class SessionMppe:
    """The MPPE policy a login's session runs with when RADIUS narrowed ours (None: ours)."""
    policy: MppePolicy


@dataclass(frozen=True)
class RadiusVerdict:
    """:meth:`RadiusVerifier.verify`'s answer: the verdict for the auth machine, the session's
    MPPE policy when RADIUS narrowed ours, and the Access-Accept's attributes as radattr.so
    writes them (``Name value`` lines; empty unless RADIUS accepted)."""
    result: VerifyResult
    session_mppe: SessionMppe | None = None
    reply: tuple[str, ...] = ()


def _i(v: int) -> bytes:
    return v.to_bytes(4, "big")


# --------------------------------------------------------------------------- the request

def access_request_attributes(request: VerifyRequest, ctx: NasContext, *,
                              nas_identifier: str | None, nas_ip_address: str | None,
                              avpairs: tuple[Attribute, ...] = ()) -> list[Attribute]:
    """The Access-Request's attributes for ``request`` (raises LocalProtocolError for
    credentials no Access-Request can carry: an empty name, a PAP password over 128 octets)."""
    user = request.name or request.user.encode()
    m, value, ch = request.method, request.response, request.challenge
    if m is AuthMethod.PAP:
        attrs = auth.pap_attributes(user, request.password)
        if len(request.password) > 128:
            raise LocalProtocolError("PAP password longer than 128 octets")
    elif m is AuthMethod.CHAP_MD5:
        attrs = auth.chap_attributes(user, request.identifier, ch, value)
    elif m is AuthMethod.MSCHAP_V1:
        if len(value) != 49:
            raise LocalProtocolError("MS-CHAPv1 response is 49 octets")
        # RFC 2433 §3: LM-Response (24) | NT-Response (24) | Flags (1 = use the NT-Response)
        attrs = auth.mschap1_attributes(user, request.identifier, ch, value[:24], value[24:48],
                                        use_nt=value[48] == 1)
    elif m is AuthMethod.MSCHAP_V2:
        if len(value) != 49:
            raise LocalProtocolError("MS-CHAPv2 response is 49 octets")
        # RFC 2759 §4: Peer-Challenge (16) | Reserved (8) | NT-Response (24) | Flags (1)
        attrs = auth.mschap2_attributes(user, request.identifier, ch, value[:16], value[24:48],
                                        flags=value[48])
    else:
        raise LocalProtocolError(f"{m.label} cannot be relayed to RADIUS")
    if nas_identifier:
        attrs.append(Attribute(Attr.NAS_IDENTIFIER, nas_identifier.encode()))
    if nas_ip_address:
        addr = ipaddress.ip_address(nas_ip_address)
        attrs.append(Attribute(Attr.NAS_IP_ADDRESS if addr.version == 4 else Attr.NAS_IPV6_ADDRESS,
                               addr.packed))
    attrs += [
        Attribute(Attr.NAS_PORT, _i(ctx.call_id)),
        Attribute(Attr.NAS_PORT_TYPE, _i(NasPortType.VIRTUAL)),
        Attribute(Attr.SERVICE_TYPE, _i(ServiceType.FRAMED)),
        Attribute(Attr.FRAMED_PROTOCOL, _i(FramedProtocol.PPP)),
    ]
    if ctx.calling_station:
        attrs.append(Attribute(Attr.CALLING_STATION_ID, ctx.calling_station.encode()))
    if ctx.called_station:
        attrs.append(Attribute(Attr.CALLED_STATION_ID, ctx.called_station.encode()))
    attrs += avpairs
    return attrs


# --------------------------------------------------------------------------- MPPE policy

def _has_keys(method: AuthMethod, reply: AccessReply) -> bool:
    if method is AuthMethod.MSCHAP_V2:
        return bool(reply.mppe_send_key and reply.mppe_recv_key)
    if method is AuthMethod.MSCHAP_V1:
        return bool(reply.ms_chap_nt_key or (reply.mppe_send_key and reply.mppe_recv_key))
    return False


def mppe_for_session(method: AuthMethod, reply: AccessReply,
                     ours: MppePolicy) -> tuple[str | None, bool, SessionMppe | None]:
    """MS-MPPE-Encryption-Policy / -Types against our MPPE policy (module docstring, 5).

    Returns (reason to reject or None, keep the keys, the session's policy or None = ours)."""
    rad_required = reply.mppe_encryption_policy == MppeEncryptionPolicy.REQUIRED
    keys = _has_keys(method, reply)
    if rad_required and not (ours.allowed and ours.bits):
        return "RADIUS requires encryption, MPPE is off here", False, None
    if rad_required and method not in _MS_CHAP:
        return f"RADIUS requires encryption, {method.label} gives no MPPE keys", False, None
    if rad_required and not keys:
        return "RADIUS requires encryption but sent no MPPE keys", False, None
    if ours.required and method in _MS_CHAP and not keys:
        return "MPPE is required here but RADIUS sent no MPPE keys", False, None
    if not keys or not ours.allowed:
        return None, keys, None
    bits = frozenset(ours.bits)
    if reply.mppe_encryption_types is not None:
        types = MppeEncryptionTypes(reply.mppe_encryption_types & sum(_MPPE_BITS))
        bits = frozenset(b for flag, b in _MPPE_BITS.items() if flag in types) & bits
    if not bits:
        if ours.required or rad_required:
            return "no MPPE strength both RADIUS (Encryption-Types) and we allow", False, None
        return None, False, None              # no common strength, neither requires: no MPPE
    narrowed = dataclasses.replace(ours, bits=bits, required=ours.required or rad_required)
    return None, True, (SessionMppe(narrowed) if narrowed != ours else None)


# --------------------------------------------------------------------------- the verdict

def _v1_keys(nt_key: bytes, challenge: bytes) -> bytes:
    """RFC 3079 §2.4 (as pppd's radius plugin, mppe_set_keys): the MS-CHAPv1 start key from
    MS-CHAP-MPPE-Keys' NT-Key (NtPasswordHashHash): SHA1(PHH | PHH | Challenge)[:16]."""
    phh = nt_key[:16]
    return hashlib.sha1(phh + phh + challenge).digest()[:16]


def verify_result(request: VerifyRequest, packet: Packet, reply: AccessReply, ours: MppePolicy, *,
                  on_bad_rate: Callable[[ValueError], None] | None = None,
                  ) -> tuple[VerifyResult, SessionMppe | None]:
    """The verdict on ``request`` from its verified Access-Accept/-Reject (``packet``, parsed
    as ``reply``), with the session's MPPE policy when RADIUS narrowed ours.  A rate-limit
    attribute that does not parse leaves the session without a limit from RADIUS (the login
    stands) and is handed to ``on_bad_rate``."""
    method = request.method
    messages = " ".join(reply.reply_messages)
    if not reply.accepted:
        failure = ""
        if method in _MS_CHAP and reply.ms_chap_error is not None:
            failure = text_value(reply.ms_chap_error)
        elif method not in _MS_CHAP and messages:
            failure = messages
        reason = "RADIUS Access-Reject" + (f": {messages}" if messages else "")
        return VerifyResult(False, reason=reason, failure_message=failure), None
    reject, keep_keys, session = mppe_for_session(method, reply, ours)
    if reject is not None:
        return VerifyResult(False, reason=reject), None
    send = recv = b""
    if keep_keys:
        if reply.mppe_send_key and reply.mppe_recv_key:
            # RFC 2548 §2.4.2/§2.4.3: the NAS's send key is ours to send with
            send, recv = reply.mppe_send_key[:16], reply.mppe_recv_key[:16]
        elif method is AuthMethod.MSCHAP_V1 and reply.ms_chap_nt_key:
            send = recv = _v1_keys(reply.ms_chap_nt_key, request.challenge)
    success = ""
    if method is AuthMethod.MSCHAP_V2:
        if reply.ms_chap2_success is None:
            return VerifyResult(False, reason="RADIUS accepted MS-CHAPv2 without MS-CHAP2-Success"), None
        success = text_value(reply.ms_chap2_success)
    try:
        rate = rate_limit_from_attributes(packet.attributes)
    except ValueError as exc:
        rate = None
        if on_bad_rate is not None:
            on_bad_rate(exc)
    dns = tuple(a for a in (reply.primary_dns, reply.secondary_dns) if a is not None)
    nbns = tuple(a for a in (reply.primary_nbns, reply.secondary_nbns) if a is not None)
    attributes = ReplyAttributes(
        framed_ip=reply.framed_ip_address, session_timeout=reply.session_timeout or None,
        idle_timeout=reply.idle_timeout or None, rate_limit=rate,
        acct_interim_interval=reply.acct_interim_interval, framed_mtu=reply.framed_mtu,
        framed_routes=reply.framed_routes, classes=reply.classes, dns=dns, nbns=nbns)
    return VerifyResult(True, message=messages, authenticator_response=success,
                        mppe_send_key=send, mppe_recv_key=recv, attributes=attributes), session


# --------------------------------------------------------------------------- radattr

_ACRONYMS = {"IP": "IP", "IPV6": "IPv6", "MTU": "MTU", "NAS": "NAS", "MS": "MS", "CHAP": "CHAP",
             "MPPE": "MPPE", "DNS": "DNS", "NBNS": "NBNS", "CHAP2": "CHAP2", "RAS": "RAS",
             "CPW": "CPW", "LM": "LM", "NT": "NT", "PW": "PW", "AVPAIR": "AVPair"}
#: never written: key material and the signature
_SECRET_ATTRIBUTES = {(0, Attr.USER_PASSWORD), (0, Attr.CHAP_PASSWORD), (0, Attr.MESSAGE_AUTHENTICATOR),
                      (VENDOR_MICROSOFT, MsAttr.MS_MPPE_SEND_KEY), (VENDOR_MICROSOFT, MsAttr.MS_MPPE_RECV_KEY),
                      (VENDOR_MICROSOFT, MsAttr.MS_CHAP_MPPE_KEYS), (0, Attr.STATE)}
_ENUMS: dict[int, type[enum.IntEnum]] = {0: Attr, VENDOR_MICROSOFT: MsAttr, VENDOR_CISCO: CiscoAttr,
                                          VENDOR_MIKROTIK: MikrotikAttr}


def attribute_name(type_: int, vendor: int = 0) -> str:
    """The dictionary name of an attribute (``Framed-IP-Address``, ``MS-Primary-DNS-Server``,
    ``Cisco-AVPair``), or ``Attr-<vendor>-<type>`` for one ours does not name."""
    table = _ENUMS.get(vendor)
    if table is not None and type_ in table._value2member_map_:
        words = table(type_).name.split("_")
        return "-".join(_ACRONYMS.get(w, w.capitalize()) for w in words)
    return f"Attr-{vendor}-{type_}" if vendor else f"Attr-{type_}"


def radattr_lines(packet: Packet) -> tuple[str, ...]:
    """An Access-Accept's attributes as pppd's radattr.so writes them to
    ``/var/run/radattr.<ifname>`` for ip-up scripts: ``Name value`` per line (integers in
    decimal, addresses dotted, text as is, other octets in hex), key material left out."""
    lines = []
    for a in packet.attributes:
        if (a.vendor, a.type) in _SECRET_ATTRIBUTES:
            continue
        vt = (ATTRIBUTE_TYPES if a.vendor == 0 else VENDOR_ATTRIBUTE_TYPES.get(a.vendor, {})).get(a.type)
        if vt is ValueType.INTEGER and len(a.value) == 4:
            value = str(int.from_bytes(a.value, "big"))
        elif vt is ValueType.IPADDR and len(a.value) == 4:
            value = str(ipaddress.IPv4Address(a.value))
        elif vt is ValueType.STRING and a.value.isascii() and a.value.decode().isprintable():
            value = a.value.decode()
        else:
            value = "0x" + a.value.hex()
        lines.append(f"{attribute_name(a.type, a.vendor)} {value}")
    return tuple(lines)


# --------------------------------------------------------------------------- the verifier

class _Client(Protocol):
    servers: tuple[RadiusServer, ...]


class RequestSender(Protocol):
    """What the verifier needs of :class:`~fastpptp.radius.aio.RadiusDriver`: ``request``
    gives the verified Response or raises RadiusNoResponse (a RemoteProtocolError)."""

    @property
    def client(self) -> _Client: ...

    async def request(self, code: Code, attributes: Iterable[Attribute]) -> Response: ...


class RadiusVerifier:
    """Checks logins against RADIUS (and the local secrets, per ``settings.auth_order``).

    ``driver``: a started RadiusDriver over ``settings.auth_servers``; ``mppe``: our MPPE
    policy; ``local_backend()``: the local secrets now (chap-secrets; reloaded on SIGHUP),
    or None; ``hostname``: the NAS-Identifier when the settings name neither it nor a
    NAS-IP-Address (RFC 2865 §4.1 asks for one of the two)."""

    def __init__(self, driver: RequestSender, settings: RadiusSettings, mppe: MppePolicy, *,
                 local_backend: Callable[[], AuthBackend | None] | None = None,
                 hostname: str = "fastpptp") -> None:
        self.driver = driver
        self.settings = settings
        self.mppe = mppe
        self._local_backend = local_backend
        self._avpairs = tuple(avpair_attribute(n, v) for n, v in settings.avpairs)
        self._nas_identifier = settings.nas_identifier
        if not settings.nas_identifier and not settings.nas_ip_address:
            self._nas_identifier = hostname
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    def for_call(self, ctx: NasContext,
                 on_accept: Callable[[RadiusVerdict], None] | None = None
                 ) -> Callable[[VerifyRequest], Awaitable[VerifyResult]]:
        """The call's AsyncVerifier; ``on_accept`` gets an accepting verdict (its session
        MPPE policy, its reply attributes) before the verdict goes to the auth machine."""
        async def verify(request: VerifyRequest) -> VerifyResult:
            verdict = await self.verify(request, ctx)
            if verdict.result.accepted and on_accept is not None:
                on_accept(verdict)
            return verdict.result
        return verify

    async def verify(self, request: VerifyRequest,
                     ctx: NasContext) -> RadiusVerdict:
        order = self.settings.auth_order
        local = self._local()
        if order == "local,radius" and local is not None and self._local_knows(local, request):
            self.counters["local"] += 1
            return RadiusVerdict(local.verify(request))
        try:
            attrs = access_request_attributes(
                request, ctx, nas_identifier=self._nas_identifier,
                nas_ip_address=self.settings.nas_ip_address, avpairs=self._avpairs)
        except (LocalProtocolError, ValueError) as exc:
            return RadiusVerdict(VerifyResult(False, reason=f"cannot ask RADIUS: {exc}"))
        self.counters["requests"] += 1
        try:
            response = await self.driver.request(Code.ACCESS_REQUEST, attrs)
        except RemoteProtocolError:         # RadiusNoResponse: every server tried
            self.counters["no_response"] += 1
            if order == "radius,local" and local is not None:
                log.warning("call %d: no RADIUS server answered for %r: local secrets", ctx.call_id,
                            request.user)
                self.counters["local"] += 1
                return RadiusVerdict(local.verify(request))
            log.warning("call %d peer %s: no RADIUS server answered for %r", ctx.call_id,
                        ctx.calling_station, request.user)
            return RadiusVerdict(VerifyResult(False, reason="no RADIUS server answered"))
        try:
            if response.packet.code == Code.ACCESS_CHALLENGE:
                raise RadiusDecodeError("Access-Challenge (not used by PPP logins)")
            reply = response.access_reply()
            result, session = verify_result(
                request, response.packet, reply, self.mppe,
                on_bad_rate=lambda exc: self._bad_rate(ctx, request, exc))
        except (RadiusDecodeError, LocalProtocolError) as exc:
            self.counters["policy_rejects"] += 1
            log.warning("call %d: unusable RADIUS reply for %r: %s", ctx.call_id, request.user, exc)
            return RadiusVerdict(VerifyResult(False, reason=f"unusable RADIUS reply: {exc}"))
        if result.accepted:
            self.counters["accepts"] += 1
        elif reply.accepted:
            self.counters["policy_rejects"] += 1
            log.info("call %d peer %s: %r accepted by RADIUS, refused here: %s", ctx.call_id,
                     ctx.calling_station, request.user, result.reason)
        else:
            self.counters["rejects"] += 1
            log.info("call %d peer %s: %r rejected by RADIUS server %s", ctx.call_id,
                     ctx.calling_station, request.user,
                     "%s:%d" % self.driver.client.servers[response.server].address)
        lines = radattr_lines(response.packet) if result.accepted else ()
        return RadiusVerdict(result, session, lines)

    def _bad_rate(self, ctx: NasContext, request: VerifyRequest, exc: ValueError) -> None:
        self.counters["bad_rate_attributes"] += 1
        log.warning("call %d: %r: RADIUS rate limit ignored: %s", ctx.call_id, request.user, exc)

    def _local(self) -> LocalVerifier | None:
        backend = self._local_backend() if self._local_backend is not None else None
        if backend is None or self.settings.auth_order == "radius":
            return None
        return LocalVerifier(backend)

    @staticmethod
    def _local_knows(local: LocalVerifier, request: VerifyRequest) -> bool:
        names = [request.user] + ([request.user.rsplit("\\", 1)[1]] if "\\" in request.user else [])
        return any(local.backend.get_secret(n, request.server_name) is not None for n in names)
