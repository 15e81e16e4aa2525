"""pppd's authentication and MPPE options -> :class:`AuthPolicy`.

Option semantics follow pppd 2.4.9 (pppd(8), auth.c / ccp.c); options are applied in the
order given, like pppd reads them:

=====================  ===================================================================
``auth``               the peer must authenticate; with no ``require-*`` we request every
                       method we implement (MS-CHAPv2, MS-CHAP, CHAP-MD5, PAP)
``noauth``             the peer need not authenticate (clears ``auth`` and ``require-*``)
``require-pap`` ...    the peer must authenticate, and these methods are the ones we
                       request (several ``require-*`` add up); ``require-chap`` = CHAP-MD5
``refuse-pap`` ...     we will not authenticate *ourselves* to the peer with this method
                       (LCP Naks it, towards a method we accept)
``refuse-eap``         accepted for compatibility; EAP is never accepted (not implemented)
``require-mppe``       MPPE must be negotiated, 40 or 128 bits
``require-mppe-40``    MPPE must be negotiated; 40-bit allowed (adds to other -40/-128)
``require-mppe-128``   MPPE must be negotiated; 128-bit allowed (adds)
``require-mppe-56``    (not pppd 2.4.9; the old MPPE patches) 56-bit allowed (adds)
``nomppe-40/56/128``   that key length not allowed
``+pap`` / ``-pap`` ...  pppd's aliases of ``require-pap`` / ``refuse-pap`` (also chap, mschap,
                       mschap-v2)
``nomppe``             no MPPE (also cancels earlier ``require-mppe*``)
``mppe-stateful``      stateful MPPE allowed if the peer insists (we still ask stateless)
``nomppe-stateful``    stateful MPPE refused (the default; also cancels ``prefer-mppe-stateful``)
``prefer-mppe-stateful``  (fastpptp; no pppd has it) *request* stateful MPPE in both
                       directions; implies ``mppe-stateful``.  pppd only ever requests
                       stateless, so without this stateful mode never runs.  A pppd
                       without ``mppe-stateful`` ends the link when asked for it.
=====================  ===================================================================

Preference (``auth_require``, what the authenticator Config-Requests first and what the
LCP Naks towards): MS-CHAPv2, MS-CHAP, CHAP-MD5, PAP -- pppd's order without EAP.

MPPE keys come only from MS-CHAP (RFC 3079), so when MPPE is required the request and
accept lists are reduced to the MS-CHAP variants (pppd refuses to bring MPPE up after any
other method: "MPPE required, but MS-CHAP[v2] auth not performed").  If that leaves the
authenticator nothing to request, :class:`PolicyError` says so.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from fastpptp.ppp.constants import AuthMethod

#: pppd's preference order as authenticator (EAP, which we do not implement, left out).
PREFERENCE: tuple[AuthMethod, ...] = (
    AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1, AuthMethod.CHAP_MD5, AuthMethod.PAP)
MS_CHAP_METHODS = frozenset({AuthMethod.MSCHAP_V1, AuthMethod.MSCHAP_V2})


class PolicyError(ValueError):
    """An unknown option or a contradictory combination."""


@dataclasses.dataclass(frozen=True)
class MppePolicy:
    """What CCP may agree on for MPPE (RFC 3078)."""

    allowed: bool = False                 # pppd 2.4.9 default: no MPPE option = no MPPE
    required: bool = False
    bits: frozenset[int] = frozenset()    # subset of {40, 56, 128}
    stateful: bool = False                # stateful mode acceptable if the peer insists
    prefer_stateful: bool = False         # request stateful mode (implies stateful)

    @property
    def allow_40(self) -> bool:
        return 40 in self.bits

    @property
    def allow_128(self) -> bool:
        return 128 in self.bits


@dataclasses.dataclass(frozen=True)
class AuthPolicy:
    """Who authenticates whom, with what, and whether MPPE is needed."""

    auth_required: bool = False
    require: tuple[AuthMethod, ...] = ()        # methods we ask the peer to use (ordered)
    refuse: frozenset[AuthMethod] = frozenset({AuthMethod.EAP})
    mppe: MppePolicy = MppePolicy()

    @property
    def auth_require(self) -> tuple[AuthMethod, ...]:
        """Methods to request from the peer, best first ("" = no authentication)."""
        if not self.auth_required:
            return ()
        methods = self.require or PREFERENCE
        if self.mppe.required:
            methods = tuple(m for m in methods if m in MS_CHAP_METHODS)
        return tuple(m for m in PREFERENCE if m in methods)

    @property
    def auth_accept(self) -> tuple[AuthMethod, ...]:
        """Methods we agree to authenticate ourselves with, best first."""
        methods = tuple(m for m in PREFERENCE if m not in self.refuse)
        if self.mppe.required:
            methods = tuple(m for m in methods if m in MS_CHAP_METHODS)
        return methods

    def validate(self) -> "AuthPolicy":
        if self.auth_required and not self.auth_require:
            raise PolicyError("MPPE is required but no MS-CHAP method is allowed for "
                              "authenticating the peer")
        if self.mppe.required and not self.mppe.bits:
            raise PolicyError("MPPE required with no key length allowed")
        return self

    @classmethod
    def from_options(cls, options: Iterable[str] | str) -> "AuthPolicy":
        """Build a policy from pppd option words (a list, or one string of words)."""
        if isinstance(options, str):
            options = options.split()
        required = False
        require: list[AuthMethod] = []
        refuse: set[AuthMethod] = {AuthMethod.EAP}
        mppe_required = False
        mppe_bits: set[int] = set()
        mppe_off = False
        stateful = prefer_stateful = False
        for opt in options:
            opt = opt.strip()
            if not opt:
                continue
            if opt == "auth":
                required = True
            elif opt == "noauth":
                required = False
                require.clear()
            elif opt in _REQUIRE:
                required = True
                if _REQUIRE[opt] not in require:
                    require.append(_REQUIRE[opt])
            elif opt in _REFUSE:
                refuse.add(_REFUSE[opt])
            elif opt in ("require-mppe", "+mppe", "mppe"):
                mppe_required, mppe_off = True, False
                mppe_bits |= {40, 128}
            elif opt in ("require-mppe-40", "+mppe-40"):
                mppe_required, mppe_off = True, False
                mppe_bits.add(40)
            elif opt in ("require-mppe-56", "+mppe-56"):
                # Not in pppd 2.4.9 (the MPPE patches had it); RFC 3078 M bit.
                mppe_required, mppe_off = True, False
                mppe_bits.add(56)
            elif opt in ("require-mppe-128", "+mppe-128"):
                mppe_required, mppe_off = True, False
                mppe_bits.add(128)
            elif opt in ("nomppe", "-mppe"):
                mppe_required, mppe_off = False, True
                mppe_bits.clear()
            elif opt in ("nomppe-40", "-mppe-40"):
                mppe_bits.discard(40)
            elif opt in ("nomppe-56", "-mppe-56"):
                mppe_bits.discard(56)
            elif opt in ("nomppe-128", "-mppe-128"):
                mppe_bits.discard(128)
            elif opt == "mppe-stateful":
                stateful = True
            elif opt == "prefer-mppe-stateful":
                stateful = prefer_stateful = True
            elif opt == "nomppe-stateful":
                stateful = prefer_stateful = False
            elif opt in ("require-eap", "+eap"):
                raise PolicyError("require-eap: EAP is not implemented")
            else:
                raise PolicyError(f"unknown authentication/MPPE option {opt!r}")
        if mppe_required and not mppe_bits:
            raise PolicyError("MPPE required but both 40- and 128-bit keys were refused")
        mppe = MppePolicy(allowed=mppe_required and not mppe_off, required=mppe_required,
                          bits=frozenset(mppe_bits), stateful=stateful,
                          prefer_stateful=prefer_stateful)
        return cls(required, tuple(require), frozenset(refuse), mppe).validate()


_REQUIRE = {
    "require-pap": AuthMethod.PAP,
    "require-chap": AuthMethod.CHAP_MD5,
    "require-mschap": AuthMethod.MSCHAP_V1,
    "require-mschap-v2": AuthMethod.MSCHAP_V2,
}
_REQUIRE.update({"+pap": AuthMethod.PAP, "+chap": AuthMethod.CHAP_MD5,
                 "+mschap": AuthMethod.MSCHAP_V1, "+mschap-v2": AuthMethod.MSCHAP_V2})
_REFUSE = {
    "refuse-pap": AuthMethod.PAP,
    "refuse-chap": AuthMethod.CHAP_MD5,
    "refuse-mschap": AuthMethod.MSCHAP_V1,
    "refuse-mschap-v2": AuthMethod.MSCHAP_V2,
    "refuse-eap": AuthMethod.EAP,
    "-pap": AuthMethod.PAP, "-chap": AuthMethod.CHAP_MD5, "-mschap": AuthMethod.MSCHAP_V1,
    "-mschap-v2": AuthMethod.MSCHAP_V2, "-eap": AuthMethod.EAP,
}
