"""E-mail normalisation and signed, expiring verification tokens (pure; storage makes them
single-use by recording each token's nonce when it is redeemed).

A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, context ‖ payload))`; the
payload names its purpose, the user, the exact address it verifies, an expiry and a random
nonce. Verification checks size, shape, signature (constant time), purpose, expiry and that the
address is still the user's current one, so a changed address must be verified again. Every
failure is the same `InvalidTokenError` sentence: a caller learns nothing about which check
failed, and no token or secret ever appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email

from governance.errors import GovernanceError

MAX_TOKEN_CHARS = 1024
_CONTEXT = b"governance-email-token-v1\x00"
_KEYS = frozenset({"p", "u", "e", "x", "n"})


class InvalidEmailError(GovernanceError):
    """An address that cannot be used."""


class InvalidTokenError(GovernanceError):
    """A verification link that is malformed, forged, expired, used or for another address."""

    def __init__(self) -> None:
        super().__init__("the verification link is invalid or has expired; ask for a new one")


def normalise_email(address: str) -> str:
    """One canonical form per mailbox: lower case, the domain in IDNA (ASCII) form."""
    try:
        parsed = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmailError(f"'{address[:80]}' is not a usable e-mail address: {exc}") from None
    return f"{parsed.local_part.lower()}@{parsed.ascii_domain.lower()}"


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    user: str
    email: str
    expires: datetime
    nonce: str

    @property
    def nonce_digest(self) -> str:
        """What storage records to make the token single-use (never the token itself)."""
        return hashlib.sha256(self.nonce.encode("ascii")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the canonical unpadded encoding decodes (the decoder itself would accept
    stray characters and spare bits, so two strings could carry one MAC)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _mac(secret: bytes, payload_b64: str) -> bytes:
    return hmac.new(secret, _CONTEXT + payload_b64.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if len(secret) < 32:
        raise ValueError("the token secret must be at least 32 bytes")


def mint_token(*, secret: bytes, purpose: str, user: str, email: str, expires: datetime, nonce: str | None = None) -> str:
    """A signed token for `email` of `user`, valid for `purpose` until `expires`."""
    _check_secret(secret)
    if expires.tzinfo is None:
        raise ValueError("token expiry must carry a time zone")
    payload = {"p": purpose, "u": user, "e": normalise_email(email), "x": int(expires.timestamp()),
               "n": nonce or _b64(secrets.token_bytes(16))}
    payload_b64 = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return f"{payload_b64}.{_b64(_mac(secret, payload_b64))}"


def verify_token(token: str, *, secret: bytes, purpose: str, current_email: str | None, now: datetime) -> TokenClaims:
    """The token's claims if it is genuine, unexpired, for `purpose` and for the user's current
    address; otherwise `InvalidTokenError`. Single use is the caller's (storage's) check."""
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise InvalidTokenError()
    payload_b64, mac_b64 = token.split(".")
    try:
        mac = _unb64(mac_b64)
        expected = _mac(secret, payload_b64)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidTokenError() from None
    # SECURITY: constant-time comparison before anything in the payload is trusted.
    if not hmac.compare_digest(mac, expected):
        raise InvalidTokenError()
    try:
        payload = json.loads(_unb64(payload_b64))
    except (binascii.Error, ValueError):
        raise InvalidTokenError() from None
    if not isinstance(payload, dict) or set(payload) != _KEYS or not isinstance(payload["x"], int) \
            or not all(isinstance(payload[k], str) for k in ("p", "u", "e", "n")):
        raise InvalidTokenError()
    expires = datetime.fromtimestamp(payload["x"], tz=UTC)
    if payload["p"] != purpose or now >= expires:
        raise InvalidTokenError()
    if current_email is None or normalise_email(current_email) != payload["e"]:
        raise InvalidTokenError()
    return TokenClaims(purpose=payload["p"], user=payload["u"], email=payload["e"], expires=expires, nonce=payload["n"])


def claimed_user(token: str) -> str | None:
    """The user a token claims to be for, read WITHOUT checking it: only to look up whose
    current address `verify_token` must then check it against."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    try:
        payload = json.loads(_unb64(token.split(".")[0]))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    user = payload.get("u") if isinstance(payload, dict) else None
    return user if isinstance(user, str) else None
