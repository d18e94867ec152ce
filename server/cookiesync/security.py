"""Secrets handling: cookie encryption, token hashing, signed links.

- Cookies: AES-256-GCM under a key ring ("kid:base64key,..." newest first);
  the associated data binds a ciphertext to its link, so a row copied onto
  another link fails to decrypt.
- Device tokens, API keys, pairing codes: random, shown once, stored as
  SHA-256 (they carry 128+ bits of entropy, a slow KDF adds nothing);
  pairing codes are short, so they are also rate limited and expire fast.
- Every comparison of secrets is constant-time (`hmac.compare_digest`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyRingError(ValueError):
    pass


class DecryptError(Exception):
    """A cookie could not be decrypted: unknown key id or tampered row."""


class CookieBundle(msgspec.Struct, frozen=True):
    li_at: str
    li_a: str | None
    user_agent: str


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_key_entry(kid: str | None = None) -> str:
    kid = kid or "k" + time.strftime("%Y%m%d%H%M%S")
    return f"{kid}:{_b64e(os.urandom(32))}"


def parse_key_ring(spec: str) -> list[tuple[str, bytes]]:
    """"kid:base64key,..." as (kid, 32 raw bytes), newest first. Settings check the format with it
    at load; the errors name key ids, never key material."""
    parsed: list[tuple[str, bytes]] = []
    for n, item in enumerate(filter(None, (p.strip() for p in spec.split(","))), 1):
        kid, sep, material = item.partition(":")
        # an id is short; a long one is likely key material put before the colon: not echoed
        key = f"key {n} ({kid!r})" if len(kid) <= 16 else f"key {n}"
        if not sep or not kid:
            raise KeyRingError(f"key {n} is not 'id:base64' (keys are comma-separated)")
        try:
            raw = _b64d(material)
        except Exception as exc:
            raise KeyRingError(f"{key} is not base64") from exc
        if len(raw) != 32:
            raise KeyRingError(f"{key} must be 32 bytes (AES-256)")
        if any(kid == seen for seen, _raw in parsed):
            raise KeyRingError(f"{key}: its id appears twice")
        parsed.append((kid, raw))
    if not parsed:
        raise KeyRingError("no encryption key configured")
    return parsed


class KeyRing:
    """Newest key first; older keys only decrypt."""

    def __init__(self, spec: str) -> None:
        parsed = parse_key_ring(spec)
        self.keys: dict[str, AESGCM] = {kid: AESGCM(raw) for kid, raw in parsed}
        self.order: list[str] = [kid for kid, _raw in parsed]

    @property
    def current(self) -> str:
        return self.order[0]

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self.current, nonce + self.keys[self.current].encrypt(nonce, plaintext, aad)

    def decrypt(self, kid: str, blob: bytes, aad: bytes) -> bytes:
        key = self.keys.get(kid)
        if key is None:
            raise DecryptError(f"key {kid!r} is not in the key ring")
        try:
            return key.decrypt(blob[:12], blob[12:], aad)
        except Exception as exc:  # InvalidTag: never echo the data
            raise DecryptError("ciphertext does not authenticate") from exc


def link_aad(user_id: str, plain_id: str) -> bytes:
    return msgspec.json.encode(["cookie", user_id, plain_id])


def encrypt_cookies(ring: KeyRing, bundle: CookieBundle, user_id: str, plain_id: str) -> tuple[str, bytes]:
    return ring.encrypt(msgspec.json.encode(bundle), link_aad(user_id, plain_id))


def decrypt_cookies(ring: KeyRing, kid: str, blob: bytes, user_id: str, plain_id: str) -> CookieBundle:
    return msgspec.json.decode(ring.decrypt(kid, blob, link_aad(user_id, plain_id)), type=CookieBundle)


def proxy_aad(user_id: str) -> bytes:
    """Binds a proxy password's ciphertext to its user: copied onto another row it does not decrypt."""
    return msgspec.json.encode(["proxy", user_id])


def encrypt_proxy_password(ring: KeyRing, password: str, user_id: str) -> tuple[str, bytes]:
    return ring.encrypt(password.encode(), proxy_aad(user_id))


def decrypt_proxy_password(ring: KeyRing, kid: str, blob: bytes, user_id: str) -> str:
    return ring.decrypt(kid, blob, proxy_aad(user_id)).decode()


def cookie_fingerprint(secret: str, li_at: str, li_a: str | None, user_agent: str) -> str:
    """Keyed, so a fingerprint in the history cannot be used to test guesses."""
    msg = msgspec.json.encode([li_at, li_a, user_agent])
    return hmac.digest(secret.encode(), b"fp:" + msg, "sha256").hex()


def same_fingerprint(stored: str | None, fingerprint: str) -> bool:
    """Constant-time, like every comparison of something derived from a secret."""
    return stored is not None and hmac.compare_digest(stored, fingerprint)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def new_pairing_code() -> str:
    raw = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def normalize_pairing_code(code: str) -> str:
    return code.strip().upper().replace(" ", "").replace("-", "")


def same_secret(a: str | bytes, b: str | bytes) -> bool:
    a_b = a.encode() if isinstance(a, str) else a
    b_b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_b, b_b)


class Signer:
    """Compact signed, expiring tokens: base64(payload).base64(hmac)."""

    def __init__(self, secret: str, purpose: str) -> None:
        self.key = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()

    def sign(self, payload: dict, ttl_s: float, now: float | None = None) -> str:
        return self.sign_until(payload, int((now or time.time()) + ttl_s))

    def sign_until(self, payload: dict, exp: int) -> str:
        """The token of `payload` expiring at `exp` (Unix seconds): the same bytes every time, so a
        token minted again from stored claims is the one minted before (the outbox's resends)."""
        body = dict(payload, exp=int(exp))
        raw = _b64e(msgspec.json.encode(body))
        mac = _b64e(hmac.new(self.key, raw.encode(), hashlib.sha256).digest()[:20])
        return f"{raw}.{mac}"

    def verify(self, token: str, now: float | None = None) -> dict | None:
        """Payload if authentic and not expired; None otherwise (no reason leaked)."""
        raw, sep, mac = token.partition(".")
        if not sep:
            return None
        want = _b64e(hmac.new(self.key, raw.encode(), hashlib.sha256).digest()[:20])
        if not hmac.compare_digest(want.encode(), mac.encode()):
            return None
        try:
            body = msgspec.json.decode(_b64d(raw))
        except Exception:
            return None
        if not isinstance(body, dict) or body.get("exp", 0) < (now or time.time()):
            return None
        return body
