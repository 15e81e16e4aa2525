"""Target ``radius``: the RADIUS codec (fastpptp/radius/packet.py) and the sans-I/O client
(fastpptp/radius/client.py ``receive_datagram``) against forged and malformed responses.

The client's two servers have secrets drawn at random for each process: no input knows
them.  The input opens transactions (Access-Request with PAP or MS-CHAPv2 attributes,
Accounting-Request), lets time pass, and answers them with datagrams from a server's
address or a stranger's: raw octets, or a response built from our encoder for an
outstanding request -- forged (signed with a wrong secret, or signed and then changed in
one octet inside its Length) or, for contrast, genuine (signed with the right secret, as a
server would; octets after Length are padding and may be anything).

Invariants: a Response event comes only for a transaction that got a genuine answer (a
forged response is never accepted, never ends or fails a transaction); at most one event per
transaction; outstanding identifiers never exceed 256 per server; ``decode_packet`` raises
only ``DecodeError``, and what it decodes encodes back to the same code, identifier and
attributes; ``parse_access_reply`` on a genuine answer raises only ``DecodeError``.
Header octet: bit 0 ``require_message_authenticator`` off; bits 1-2 tries (1..4).
Records: 0 raw datagram (source by octet); 1 forged answer to request k (code, attributes,
how); 2 genuine answer to request k (code, attributes, padding); 3 time passes (octet / 4 s);
4 new request (kind); 5 cancel k; 6 the codec alone on the chunk.
"""
from __future__ import annotations

import os

from fastpptp.errors import DecodeError
from fastpptp.radius import auth
from fastpptp.radius.client import ClientPolicy, NoResponse, RadiusClient, RadiusServer, Response
from fastpptp.radius.dictionary import Attr, Code
from fastpptp.radius.packet import (
    Attribute, Packet, _decode_attributes, _encode_attributes, decode_packet, encode_response,
)

from ..records import Reader, Writer, check

NAME = "radius"
A, B, STRANGER = ("192.0.2.10", 1812), ("192.0.2.11", 1812), ("192.0.2.99", 1812)
SECRETS = {A: os.urandom(16), B: os.urandom(16)}
RESPONSE_CODES = (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE,
                  Code.ACCOUNTING_RESPONSE)


def _request(kind: int) -> tuple[Code, list[Attribute]]:
    if kind % 3 == 0:
        return Code.ACCESS_REQUEST, auth.pap_attributes(b"alice", b"pw")
    if kind % 3 == 1:
        return Code.ACCESS_REQUEST, [Attribute(Attr.USER_NAME, b"bob")]
    return Code.ACCOUNTING_REQUEST, [Attribute(Attr.USER_NAME, b"carol"),
                                     Attribute(Attr.ACCT_STATUS_TYPE, (1).to_bytes(4, "big")),
                                     Attribute(Attr.ACCT_SESSION_ID, b"s1")]


def _attrs(raw: bytes) -> list[Attribute]:
    try:
        return _decode_attributes(raw)
    except DecodeError:
        return [Attribute(Attr.REPLY_MESSAGE, raw[:200])] if raw else []


def _codec(raw: bytes) -> None:
    try:
        p = decode_packet(raw)
    except DecodeError:
        return
    # octets may differ (a Vendor-Specific holding several sub-attributes is encoded as one
    # each), the attributes may not
    check(_decode_attributes(_encode_attributes(p.attributes)) == p.attributes,
          "decoded attributes do not encode back to themselves")
    if p.code not in (Code.ACCESS_REQUEST, Code.ACCOUNTING_REQUEST, Code.STATUS_SERVER,
                      Code.DISCONNECT_REQUEST, Code.COA_REQUEST):
        # the encoder drops a Message-Authenticator it is not asked to compute
        want = [a for a in p.attributes
                if not (a.type == Attr.MESSAGE_AUTHENTICATOR and a.vendor == 0)]
        try:
            wire = encode_response(Packet(p.code, p.identifier, attributes=want), b"k",
                                   bytes(16), with_message_authenticator=False)
        except Exception as exc:
            raise AssertionError(f"a decoded packet does not encode: {exc!r}") from exc
        again = decode_packet(wire)
        check((again.code, again.identifier, again.attributes) == (p.code, p.identifier, want),
              "a decoded packet does not survive encode/decode")


def one_input(data: bytes) -> None:
    r = Reader(data)
    h = r.byte()
    policy = ClientPolicy(timeout=3.0, tries=1 + (h >> 1 & 3), dead_time=30.0,
                          require_message_authenticator=not h & 1)
    client = RadiusClient([RadiusServer(A, SECRETS[A]), RadiusServer(B, SECRETS[B])], policy)
    now = 0.0
    sent: list[tuple[tuple[str, int], bytes]] = []      # every datagram the client sent
    genuine: set[int] = set()                            # handles answered genuinely
    by_wire: dict[bytes, int] = {}                       # request octets -> handle
    ended: set[int] = set()
    handles: list[int] = []

    def open_one(kind: int) -> None:
        code, attrs = _request(kind)
        handles.append(client.send(code, attrs, now))

    def drain() -> None:
        for dest, wire in client.datagrams_to_send():
            sent.append((dest, wire))
            by_wire[wire] = _current_handle(client, wire)
        while (ev := client.next_event()) is not None:
            check(ev.handle not in ended, f"second event for transaction {ev.handle}")
            ended.add(ev.handle)
            if isinstance(ev, Response):
                check(ev.handle in genuine, f"forged response accepted for {ev.handle}: "
                      f"{ev.packet}")
                if ev.packet.code in (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT):
                    try:
                        ev.access_reply()
                    except DecodeError:
                        pass
            else:
                check(isinstance(ev, NoResponse), f"unknown event {ev}")
        check(len(client._outstanding) <= 2 * 256, "identifiers over their bound")
        check(client.outstanding <= len(handles), "more transactions than were opened")

    open_one(0)
    drain()
    steps = 0
    while not r.done and steps < 100:
        steps += 1
        tag = r.byte() % 7
        if tag == 0:
            src = (A, B, STRANGER)[r.byte() % 3]
            client.receive_datagram(r.chunk(), src, now)
        elif tag in (1, 2):
            k, code, how = r.byte(), r.byte(), r.byte()
            attrs = _attrs(r.chunk())
            if not sent:
                continue
            dest, wire = sent[k % len(sent)]
            req = decode_packet(wire)
            resp = Packet(RESPONSE_CODES[code % 4], req.identifier, attributes=attrs)
            signed = bool(how & 1) or code & 0x80 == 0
            try:
                if tag == 1 and how & 2:          # the right format, a wrong secret
                    raw = encode_response(resp, SECRETS[dest][:-1] + b"x", req.authenticator,
                                          with_message_authenticator=signed)
                else:
                    raw = encode_response(resp, SECRETS[dest], req.authenticator,
                                          with_message_authenticator=signed)
            except Exception:                    # attributes too long for one packet
                continue
            if tag == 1 and not how & 2:          # signed, then one octet changed
                b = bytearray(raw)
                b[(how >> 2) % len(b)] ^= (code | 1)
                raw = bytes(b)
            elif tag == 2:
                genuine.add(by_wire[wire])
                raw += bytes(how >> 4)            # padding past Length: allowed
            client.receive_datagram(raw, dest, now)
        elif tag == 3:
            now += r.byte() / 4
            t = client.get_timer()
            if t is not None and t <= now:
                client.handle_timer(now)
        elif tag == 4:
            if len(handles) < 600:
                open_one(r.byte())
        elif tag == 5:
            k = r.byte()
            if handles:
                client.cancel(handles[k % len(handles)])
        else:
            _codec(r.chunk())
        drain()


def _current_handle(client: RadiusClient, wire: bytes) -> int:
    """The transaction that just sent ``wire`` (its last datagram)."""
    for handle, txn in client._active.items():
        if txn.wire == wire:
            return handle
    return -1


# --------------------------------------------------------------------------- seeds

def seeds() -> list[bytes]:
    reply = _encode_attributes([Attribute(Attr.REPLY_MESSAGE, b"hello"),
                                Attribute(Attr.FRAMED_IP_ADDRESS, bytes([198, 51, 100, 7])),
                                Attribute(Attr.SESSION_TIMEOUT, (3600).to_bytes(4, "big"))])
    accept = encode_response(Packet(Code.ACCESS_ACCEPT, 7, attributes=_decode_attributes(reply)),
                             b"secret", bytes(16))
    out = []
    for h in (0, 1, 2, 6):
        w = Writer(bytes([h]))
        w.byte(0).byte(0).chunk(accept)
        w.byte(1).byte(0).byte(0).byte(3).chunk(reply)
        w.byte(1).byte(0).byte(1).byte(0x41).chunk(reply)
        w.byte(4).byte(2).byte(3).byte(12).byte(1).byte(1).byte(3).byte(0).chunk(b"")
        w.byte(2).byte(0).byte(0).byte(0x31).chunk(reply)
        w.byte(4).byte(1).byte(5).byte(0).byte(3).byte(40).byte(3).byte(200)
        w.byte(6).chunk(accept)
        w.byte(2).byte(1).byte(3).byte(0).chunk(b"")
        out.append(w.bytes())
    return out
