"""pppd auth/MPPE option semantics -> AuthPolicy (table driven)."""
import pytest

from fastpptp.ppp.auth.policy import AuthPolicy, MppePolicy, PolicyError
from fastpptp.ppp.constants import AuthMethod as M

V2, V1, MD5, PAP = M.MSCHAP_V2, M.MSCHAP_V1, M.CHAP_MD5, M.PAP
ALL = (V2, V1, MD5, PAP)


@pytest.mark.parametrize("options,require,accept", [
    ("", (), ALL),                                            # pppd client default
    ("noauth", (), ALL),
    ("auth", ALL, ALL),                                       # every method, v2 first
    ("require-pap", (PAP,), ALL),
    ("require-chap", (MD5,), ALL),
    ("require-mschap", (V1,), ALL),
    ("require-mschap-v2", (V2,), ALL),
    ("require-pap require-mschap-v2", (V2, PAP), ALL),        # additive, preference order
    ("auth require-chap", (MD5,), ALL),                       # require-* narrows auth
    ("require-chap noauth", (), ALL),                         # later noauth wins
    ("noauth require-chap", (MD5,), ALL),                     # later require wins
    ("refuse-pap", (), (V2, V1, MD5)),
    ("refuse-chap refuse-mschap", (), (V2, PAP)),
    ("refuse-mschap-v2 refuse-eap", (), (V1, MD5, PAP)),
    ("+pap -chap", (PAP,), (V2, V1, PAP)),                    # pppd aliases
    ("auth require-mppe-128", (V2, V1), (V2, V1)),            # MPPE needs MS-CHAP keys
    ("require-mppe refuse-mschap", (), (V2,)),
    ("require-mschap-v2 require-mppe-128", (V2,), (V2, V1)),
])
def test_auth_lists(options, require, accept):
    p = AuthPolicy.from_options(options)
    assert p.auth_require == require
    assert p.auth_accept == accept
    assert M.EAP not in p.auth_accept                         # never: Nak'd by LCP


@pytest.mark.parametrize("options,mppe", [
    ("", MppePolicy(False, False, frozenset(), False)),       # pppd 2.4.9: no MPPE
    ("require-mppe", MppePolicy(True, True, frozenset({40, 128}), False)),
    ("require-mppe-128", MppePolicy(True, True, frozenset({128}), False)),
    ("require-mppe-40", MppePolicy(True, True, frozenset({40}), False)),
    ("require-mppe-40 require-mppe-128", MppePolicy(True, True, frozenset({40, 128}), False)),
    ("require-mppe nomppe-40", MppePolicy(True, True, frozenset({128}), False)),
    ("require-mppe mppe-stateful", MppePolicy(True, True, frozenset({40, 128}), True)),
    ("require-mppe mppe-stateful nomppe-stateful",
     MppePolicy(True, True, frozenset({40, 128}), False)),
    ("require-mppe-128 nomppe", MppePolicy(False, False, frozenset(), False)),
    ("nomppe require-mppe-128", MppePolicy(True, True, frozenset({128}), False)),
    ("require-mppe-56", MppePolicy(True, True, frozenset({56}), False)),
    # fastpptp's own: request stateful (implies allowing it); nomppe-stateful cancels both
    ("require-mppe-128 prefer-mppe-stateful", MppePolicy(True, True, frozenset({128}), True, True)),
    ("require-mppe-128 prefer-mppe-stateful nomppe-stateful",
     MppePolicy(True, True, frozenset({128}), False, False)),
])
def test_mppe(options, mppe):
    assert AuthPolicy.from_options(options).mppe == mppe


@pytest.mark.parametrize("options,msg", [
    ("require-fish", "unknown"),
    ("require-eap", "EAP is not implemented"),
    ("require-mppe-128 nomppe-128", "both 40- and 128-bit keys were refused"),
    ("require-pap require-mppe", "no MS-CHAP method"),
])
def test_errors(options, msg):
    with pytest.raises(PolicyError, match=msg):
        AuthPolicy.from_options(options)


def test_accepts_a_list_of_words():
    p = AuthPolicy.from_options(["auth", "require-mschap-v2", "require-mppe-128"])
    assert p.auth_required and p.auth_require == (V2,) and p.mppe.allow_128
    assert not p.mppe.allow_40
