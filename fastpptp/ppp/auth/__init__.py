"""PPP authentication: PAP (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAP v1/v2 (RFC 2433/2759).

* :mod:`.base`    -- events (AuthSucceeded/AuthFailed), AuthResult, AuthBackend, timers, errors
* :mod:`.pap`     -- PapPeer / PapAuthenticator
* :mod:`.chap`    -- ChapPeer / ChapAuthenticator for the three CHAP algorithms
* :mod:`.policy`  -- pppd's auth/MPPE options -> AuthPolicy (LCP auth lists, CCP MPPE)
* :mod:`.secrets` -- pppd chap-secrets/pap-secrets, SecretsFileBackend, CallableBackend

The machines are driven by :class:`fastpptp.ppp.link.PPPLink`.
"""
