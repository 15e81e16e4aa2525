"""MS-CHAP (RFC 2433), MS-CHAPv2 (RFC 2759) and MPPE key derivation (RFC 3079).

Pure functions, bytes in and bytes out, named after the RFC pseudocode so each one can be
read side by side with its section.  MD4 and DES come from pycryptodome (this machine's
OpenSSL has MD4 only in the absent legacy provider); SHA-1 from hashlib.

Secrets (passwords, hashes, keys) are never logged or put in exception messages.

Theory of operation
  1. RFC 2759 §8: the peer (client) answers an MS-CHAPv2 Challenge with
     generate_nt_response(); the authenticator recomputes it, compares, and proves it knows
     the password too with generate_authenticator_response() ("S=<40 hex>"), which the
     peer checks with check_authenticator_response().
  2. RFC 3079 §3: both sides then derive the MPPE start keys from the password hash hash
     and the NT-Response: get_master_key() -> get_asymmetric_start_key() per direction
     (mppe_keys_mschapv2()).  MS-CHAPv1 (RFC 3079 §2) has one key for both directions
     (mppe_keys_mschapv1()).
  3. RFC 3079 §2.x/§3.x and RFC 3078 §7.3: the first session key is
     GetNewKeyFromSHA(start, start) with the 40/56-bit salt applied
     (initial_session_key()); later keys are derived by the MPPE engine (mppe.py/_mppe.pyx).
"""
from __future__ import annotations

import hashlib
import hmac

from Crypto.Cipher import DES
from Crypto.Hash import MD4

__all__ = [
    "nt_password_hash", "hash_nt_password_hash", "challenge_hash", "des_key_from_7",
    "challenge_response", "generate_nt_response", "generate_authenticator_response",
    "check_authenticator_response", "lm_password_hash", "nt_challenge_response",
    "lm_challenge_response", "get_master_key", "get_asymmetric_start_key",
    "mppe_keys_mschapv2", "mppe_keys_mschapv1", "get_new_key_from_sha",
    "initial_session_key", "reduce_session_key", "key_length_for_bits",
    "MAX_NT_PASSWORD",
]

# RFC 2759 §4: "0-to-256-unicode-char Password".
MAX_NT_PASSWORD = 256
# RFC 2433 §A.2: the LM password is at most 14 OEM characters.
MAX_LM_PASSWORD = 14

# RFC 2759 §8.7 GenerateAuthenticatorResponse magic constants.
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"

# RFC 2433 §A.4 DesHash "StdText".
_LM_STD_TEXT = b"KGS!@#$%"

# RFC 3079 §3.4 magic constants and SHA pads (also used by RFC 3078 §7.3 GetNewKeyFromSHA).
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (b"On the client side, this is the send key; "
                b"on the server side, it is the receive key.")
_MPPE_MAGIC3 = (b"On the client side, this is the receive key; "
                b"on the server side, it is the send key.")
SHS_PAD1 = b"\x00" * 40
SHS_PAD2 = b"\xf2" * 40


def _md4(data: bytes) -> bytes:
    return MD4.new(data).digest()


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def _need(name: str, value: bytes, length: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes")
    value = bytes(value)
    if len(value) != length:
        raise ValueError(f"{name} must be {length} octets, got {len(value)}")
    return value


# --- RFC 2759 §8 (MS-CHAPv2) -------------------------------------------------------------

def _nt_password(password: str) -> bytes:
    if not isinstance(password, str):
        raise TypeError("password must be str")
    if len(password) > MAX_NT_PASSWORD:
        raise ValueError(f"password longer than {MAX_NT_PASSWORD} characters")
    return password.encode("utf-16-le")


def nt_password_hash(password: str) -> bytes:
    """RFC 2759 §8.3 NtPasswordHash: MD4 of the UTF-16LE ("Unicode") password."""
    return _md4(_nt_password(password))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """RFC 2759 §8.4 HashNtPasswordHash: MD4 of the 16-octet password hash."""
    return _md4(_need("password_hash", password_hash, 16))


def _strip_domain(username: bytes) -> bytes:
    # RFC 2759 §4: the Name field may be "DOMAIN\user"; ChallengeHash uses only the user
    # name.  pppd strips everything up to the last backslash (chap_ms.c ChallengeHash).
    i = username.rfind(b"\\")
    return username[i + 1:] if i >= 0 else username


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes,
                   username: bytes) -> bytes:
    """RFC 2759 §8.2 ChallengeHash: SHA1(PeerChallenge | AuthenticatorChallenge | UserName)[:8]."""
    peer_challenge = _need("peer_challenge", peer_challenge, 16)
    authenticator_challenge = _need("authenticator_challenge", authenticator_challenge, 16)
    if isinstance(username, str):
        username = username.encode("utf-8")
    return _sha1(peer_challenge, authenticator_challenge, _strip_domain(bytes(username)))[:8]


def des_key_from_7(key7: bytes) -> bytes:
    """RFC 2759 §8.6 / §9.3: spread 56 key bits over 8 octets, low bit = odd parity."""
    key7 = _need("key7", key7, 7)
    bits = int.from_bytes(key7, "big")
    out = bytearray(8)
    for i in range(8):
        b = ((bits >> (49 - 7 * i)) & 0x7F) << 1
        # Odd parity: the parity bit makes the number of one bits in the octet odd.
        if bin(b).count("1") % 2 == 0:
            b |= 1
        out[i] = b
    return bytes(out)


def _des_encrypt(clear8: bytes, key7: bytes) -> bytes:
    return DES.new(des_key_from_7(key7), DES.MODE_ECB).encrypt(clear8)


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2759 §8.5 ChallengeResponse: DES(challenge) under the three 7-octet thirds of
    the 21-octet zero-padded password hash."""
    challenge = _need("challenge", challenge, 8)
    z = _need("password_hash", password_hash, 16) + b"\x00" * 5
    return b"".join(_des_encrypt(challenge, z[i:i + 7]) for i in (0, 7, 14))


def generate_nt_response(auth_challenge: bytes, peer_challenge: bytes, username: bytes,
                         password: str) -> bytes:
    """RFC 2759 §8.1 GenerateNTResponse -> 24-octet NT-Response."""
    ch = challenge_hash(peer_challenge, auth_challenge, username)
    return challenge_response(ch, nt_password_hash(password))


def _authenticator_digest(password_hash_hash: bytes, nt_response: bytes,
                          peer_challenge: bytes, auth_challenge: bytes,
                          username: bytes) -> bytes:
    nt_response = _need("nt_response", nt_response, 24)
    digest = _sha1(password_hash_hash, nt_response, _AUTH_MAGIC1)
    ch = challenge_hash(peer_challenge, auth_challenge, username)
    return _sha1(digest, ch, _AUTH_MAGIC2)


def generate_authenticator_response(password: str, nt_response: bytes,
                                    peer_challenge: bytes, auth_challenge: bytes,
                                    username: bytes) -> str:
    """RFC 2759 §8.7 GenerateAuthenticatorResponse -> "S=" + 40 upper-case hex digits."""
    phh = hash_nt_password_hash(nt_password_hash(password))
    digest = _authenticator_digest(phh, nt_response, peer_challenge, auth_challenge, username)
    return "S=" + digest.hex().upper()


def check_authenticator_response(password: str, nt_response: bytes, peer_challenge: bytes,
                                 auth_challenge: bytes, username: bytes,
                                 received: str | bytes) -> bool:
    """RFC 2759 §8.8 CheckAuthenticatorResponse (peer side), constant-time compare.

    ``received`` is the 42-character "S=..." string from the Success packet's message
    (str or ASCII bytes); hex digits are accepted in either case, as pppd does."""
    expected = generate_authenticator_response(
        password, nt_response, peer_challenge, auth_challenge, username).encode("ascii")
    if isinstance(received, str):
        try:
            received = received.encode("ascii")
        except UnicodeEncodeError:
            return False
    received = bytes(received)
    if len(received) != len(expected):
        return False
    # Upper-case only the hex part: "s=" is not a valid prefix.
    received = received[:2] + received[2:].upper()
    return hmac.compare_digest(received, expected)


# --- RFC 2433 (MS-CHAPv1) ----------------------------------------------------------------

def lm_password_hash(password: str) -> bytes:
    """RFC 2433 §A.2 LmPasswordHash: DES("KGS!@#$%") under each 7-octet half of the
    upper-cased, 14-octet zero-padded OEM password.

    The OEM code page is taken as Latin-1 (characters outside it become "?"); longer
    passwords are truncated to 14 characters as Windows and pppd do."""
    if not isinstance(password, str):
        raise TypeError("password must be str")
    oem = password.upper().encode("latin-1", errors="replace")[:MAX_LM_PASSWORD]
    oem = oem.ljust(MAX_LM_PASSWORD, b"\x00")
    return _des_encrypt(_LM_STD_TEXT, oem[:7]) + _des_encrypt(_LM_STD_TEXT, oem[7:])


def nt_challenge_response(challenge: bytes, password: str) -> bytes:
    """RFC 2433 §A.5 NtChallengeResponse -> 24 octets."""
    return challenge_response(challenge, nt_password_hash(password))


def lm_challenge_response(challenge: bytes, password: str) -> bytes:
    """RFC 2433 §A.1 LmChallengeResponse -> 24 octets (pppd sends zeros instead)."""
    return challenge_response(challenge, lm_password_hash(password))


# --- RFC 3079 MPPE keys --------------------------------------------------------------------

def key_length_for_bits(bits: int) -> int:
    """RFC 3079: 40- and 56-bit MPPE use 8-octet keys, 128-bit uses 16 octets."""
    if bits in (40, 56):
        return 8
    if bits == 128:
        return 16
    raise ValueError(f"MPPE key strength must be 40, 56 or 128 bits, not {bits}")


def _check_key_len(key_len: int) -> None:
    if key_len not in (8, 16):
        raise ValueError(f"key_len must be 8 or 16, not {key_len}")


def get_master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 §3.4 GetMasterKey: SHA1(PasswordHashHash | NTResponse | Magic1)[:16]."""
    return _sha1(_need("password_hash_hash", password_hash_hash, 16),
                 _need("nt_response", nt_response, 24), _MPPE_MAGIC1)[:16]


def get_asymmetric_start_key(master_key: bytes, key_len: int, is_send: bool,
                             is_server: bool) -> bytes:
    """RFC 3079 §3.4 GetAsymetricStartKey.

    Magic2 is the client's send key (= the server's receive key), Magic3 the client's
    receive key (= the server's send key)."""
    _check_key_len(key_len)
    master_key = _need("master_key", master_key, 16)
    if is_send:
        magic = _MPPE_MAGIC3 if is_server else _MPPE_MAGIC2
    else:
        magic = _MPPE_MAGIC2 if is_server else _MPPE_MAGIC3
    return _sha1(master_key, SHS_PAD1, magic, SHS_PAD2)[:key_len]


def mppe_keys_mschapv2(password: str, nt_response: bytes, is_server: bool,
                       key_len: int = 16) -> tuple[bytes, bytes]:
    """RFC 3079 §3: (send_start_key, recv_start_key) for our side of an MS-CHAPv2 login.

    pppd always derives 16 octets and the kernel uses the first 8 for 40-bit; since the
    keys are SHA-1 prefixes, key_len=8 gives exactly those 8 octets."""
    phh = hash_nt_password_hash(nt_password_hash(password))
    master = get_master_key(phh, nt_response)
    return (get_asymmetric_start_key(master, key_len, True, is_server),
            get_asymmetric_start_key(master, key_len, False, is_server))


def mppe_keys_mschapv1(password: str, challenge: bytes, key_len: int, *,
                       lm_keys: bool = False) -> bytes:
    """RFC 3079 §2: the MS-CHAPv1 start key (the same key is used in both directions).

    128-bit (key_len 16), RFC 3079 §2.4 GetStartKey: SHA1(PHH | PHH | Challenge)[:16].

    40/56-bit (key_len 8): RFC 3079 §2.1/§2.2 use the first 8 octets of the LAN Manager
    password hash (``lm_keys=True``).  pppd (chap_ms.c mppe_set_keys) and the Linux kernel
    instead use the first 8 octets of the SHA-1 key above for every strength; interop with
    pppd peers beats the RFC here, so that is the default."""
    _check_key_len(key_len)
    challenge = _need("challenge", challenge, 8)
    if key_len == 8 and lm_keys:
        return lm_password_hash(password)[:8]
    phh = hash_nt_password_hash(nt_password_hash(password))
    return _sha1(phh, phh, challenge)[:key_len]


def get_new_key_from_sha(start_key: bytes, session_key: bytes, key_len: int) -> bytes:
    """RFC 3078 §7.3 / RFC 3079 §2.4 GetNewKeyFromSHA ("GetKey"):
    SHA1(StartKey | SHSpad1 | SessionKey | SHSpad2)[:key_len]."""
    _check_key_len(key_len)
    if len(start_key) < key_len or len(session_key) < key_len:
        raise ValueError("start and session keys must be at least key_len octets")
    return _sha1(bytes(start_key[:key_len]), SHS_PAD1,
                 bytes(session_key[:key_len]), SHS_PAD2)[:key_len]


def reduce_session_key(key: bytes, bits: int) -> bytes:
    """RFC 3079 §2.1/§2.2/§3.1/§3.2: salt a key down to 40 bits (first 3 octets
    D1 26 9E) or 56 bits (first octet D1); 128-bit keys are unchanged."""
    key_len = key_length_for_bits(bits)
    key = bytes(key[:key_len])
    if len(key) != key_len:
        raise ValueError("key shorter than the key length for this strength")
    if bits == 40:
        return b"\xd1\x26\x9e" + key[3:]
    if bits == 56:
        return b"\xd1" + key[1:]
    return key


def initial_session_key(start_key: bytes, bits: int) -> bytes:
    """RFC 3079 §3.5 (and §2.5): the first session key, GetNewKeyFromSHA(start, start)
    reduced to the key strength.  No RC4 step here (Linux mppe_rekey(initial_key=1))."""
    key_len = key_length_for_bits(bits)
    return reduce_session_key(get_new_key_from_sha(start_key, start_key, key_len), bits)
