"""The local verifier: checks a :class:`VerifyRequest` against secrets we hold, at once.

This is what the authenticators did by themselves before verification became pluggable:
an :class:`~fastpptp.ppp.auth.base.AuthBackend` (chap-secrets, a callback) gives the
plaintext secret of the peer's user name, and the peer's answer is recomputed from it:

* PAP: ``backend.check_password(user, password, server_name)``;
* CHAP-MD5: MD5(Identifier | secret | Challenge) (RFC 1994 §4.1);
* MS-CHAPv1: the NT-Response, UseNT = 1 (RFC 2433 §4, as pppd); MPPE start key per RFC 3079;
* MS-CHAPv2: the NT-Response (RFC 2759 §4), the authenticator response S= (§5) and the
  RFC 3079 MPPE start keys from the NT-Response, ours to send first.

A name ``DOMAIN\\user`` that the backend does not know is tried again as ``user`` (Windows
sends the domain when one was typed; the MS-CHAPv2 hashes use the bare name anyway).
"""
from __future__ import annotations

import hashlib
import hmac

from fastpptp.crypto import mschap
from fastpptp.ppp.auth.base import AuthBackend, VerifyRequest, VerifyResult
from fastpptp.ppp.constants import AuthMethod

MSCHAP_RESPONSE_LEN = 49      # RFC 2433 §3 / RFC 2759 §3: the Response Value's size


def chap_md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: MD5 over Identifier, secret, Challenge Value."""
    return hashlib.md5(bytes([identifier]) + secret + challenge).digest()


class LocalVerifier:
    """:class:`~fastpptp.ppp.auth.base.SyncVerifier` over an AuthBackend."""

    def __init__(self, backend: AuthBackend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"LocalVerifier({self.backend!r})"

    def verify(self, request: VerifyRequest) -> VerifyResult:
        if request.method is AuthMethod.PAP:
            return self._verify_pap(request)
        return self._verify_chap(request)

    def _verify_pap(self, request: VerifyRequest) -> VerifyResult:
        try:
            ok = bool(self.backend.check_password(request.user, request.password.decode("utf-8"),
                                                  request.server_name))
        except UnicodeDecodeError:
            ok = False
        return VerifyResult(ok, reason="" if ok else "wrong PAP user name or password")

    def _lookup(self, user: str, server_name: str) -> tuple[str, str | None]:
        secret = self.backend.get_secret(user, server_name)
        if secret is None and "\\" in user:
            bare = user.rsplit("\\", 1)[1]
            secret = self.backend.get_secret(bare, server_name)
            if secret is not None:
                user = bare
        return user, secret

    def _verify_chap(self, request: VerifyRequest) -> VerifyResult:
        user, secret = self._lookup(request.user, request.server_name)
        method, challenge, value = request.method, request.challenge, request.response
        if secret is None:
            return VerifyResult(False, user, "unknown user")
        rejected = VerifyResult(False, user, f"wrong {method.label} response (bad password?)")
        if method is AuthMethod.CHAP_MD5:
            if len(value) == 16 and hmac.compare_digest(
                    chap_md5_response(request.identifier, secret.encode("utf-8"), challenge),
                    value):
                return VerifyResult(True, user)
            return rejected
        if len(value) != MSCHAP_RESPONSE_LEN:
            return rejected
        nt = value[24:48]
        if method is AuthMethod.MSCHAP_V1:
            if value[48] == 1 and hmac.compare_digest(
                    mschap.nt_challenge_response(challenge, secret), nt):
                key = mschap.mppe_keys_mschapv1(secret, challenge, 16)
                return VerifyResult(True, user, mppe_send_key=key, mppe_recv_key=key)
            return rejected
        peer_challenge = value[:16]
        if hmac.compare_digest(
                mschap.generate_nt_response(challenge, peer_challenge, request.name, secret), nt):
            s = mschap.generate_authenticator_response(secret, nt, peer_challenge, challenge,
                                                       request.name)
            send, recv = mschap.mppe_keys_mschapv2(secret, nt, True, 16)
            return VerifyResult(True, user, authenticator_response=s,
                                mppe_send_key=send, mppe_recv_key=recv)
        return rejected
