"""Access tokens: ES256 JWTs issued and verified with python-jose. The only module that imports it.

python-jose's own claim handling accepts tokens we must refuse (no `exp`, no `aud` even when an
audience is passed, `iat` in the future, unknown `crit`, duplicate JSON keys, numeric strings as
times, any size) and raises non-JOSE errors on some input (`exp: Infinity`). So jose only checks
the signature here (`jws.verify` with the algorithm pinned); the header and every claim are
parsed and checked by this module first, strictly, and every failure is one `InvalidTokenError`
with no detail for the caller.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jws
from jose.backends import ECKey
from jose.backends.base import Key

from governance.errors import GovernanceError

ALGORITHM = "ES256"
MAX_TOKEN_BYTES = 4096
LEEWAY_SECONDS = 30
_SHAPE = re.compile(r"^[A-Za-z0-9_-]{2,1024}\.[A-Za-z0-9_-]{2,3000}\.[A-Za-z0-9_-]{2,200}$")
_KID = re.compile(r"^[a-z0-9-]{1,40}$")
_HEADER_KEYS = frozenset({"alg", "typ", "kid"})
_CLAIMS = frozenset({"iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti"})


class InvalidTokenError(GovernanceError):
    """A bearer token is missing, malformed, forged, expired or otherwise not acceptable. The
    message never says which: a caller learns nothing from a refusal."""

    exit_code = 2

    def __init__(self) -> None:
        super().__init__("the access token is not valid")


class SigningKeyError(GovernanceError):
    """A token signing key file is unusable (unreadable, readable by others, not an EC P-256 key)."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str  # the user id
    session: str  # the auth session id; logging out ends it
    issued_at: int
    expires_at: int
    token_id: str


@dataclass(frozen=True)
class TokenKeys:
    """The static key map: `kid` -> key. `active` signs; every key verifies (rotation: add a new
    key, make it active, remove the old one once its tokens have expired)."""

    private: Mapping[str, ec.EllipticCurvePrivateKey]
    active: str

    @classmethod
    def load(cls, directory: Path) -> TokenKeys:
        """Keys from `directory/*.pem` (0600), the newest name signing; creates the first key."""
        directory.mkdir(parents=True, exist_ok=True)
        files = sorted(directory.glob("*.pem"))
        if not files:
            # INVARIANT: replicas starting together on a new directory agree on one first key
            with open(directory / ".create.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not sorted(directory.glob("*.pem")):
                    _create_key(directory)
            files = sorted(directory.glob("*.pem"))
        keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        for path in files:
            kid = path.stem
            if not _KID.fullmatch(kid):
                raise SigningKeyError(f"token key file {path} has a name that is not a key id (lowercase letters, digits, '-')")
            keys[kid] = _read_key(path)
        return cls(private=keys, active=files[-1].stem)

    def __post_init__(self) -> None:
        # jose's own key objects, built once (constructing one per token costs more than verifying)
        object.__setattr__(self, "_signing", ECKey(self.private[self.active], ALGORITHM))
        object.__setattr__(self, "_verifying", {k: ECKey(v.public_key(), ALGORITHM) for k, v in self.private.items()})

    def signing(self) -> Key:
        key: Key = self.__dict__["_signing"]
        return key

    def public(self, kid: str) -> Key | None:
        found: Key | None = self.__dict__["_verifying"].get(kid)  # SECURITY: a dictionary lookup, never a path or URL
        return found


def _create_key(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    digest = hashes.Hash(hashes.SHA256())
    digest.update(key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    kid = f"k{datetime.now().strftime('%Y%m%d%H%M%S')}-{digest.finalize().hex()[:8]}"
    try:
        fd = os.open(directory / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SigningKeyError(f"token key file {path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"token key file {path} is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"token key file {path} is not an EC P-256 key (ES256)")
    return key


def issue(keys: TokenKeys, *, issuer: str, audience: str, subject: str, session: str, now: datetime,
          lifetime: int) -> tuple[str, TokenClaims]:
    """A signed access token for `subject` in `session`, valid for `lifetime` seconds."""
    iat = int(now.timestamp())
    claims = TokenClaims(subject=subject, session=session, issued_at=iat, expires_at=iat + lifetime,
                         token_id=secrets.token_urlsafe(12))
    payload = {"iss": issuer, "aud": audience, "sub": subject, "sid": session, "iat": iat, "nbf": iat,
               "exp": claims.expires_at, "jti": claims.token_id}
    token = jws.sign(payload, keys.signing(), headers={"kid": keys.active, "typ": "JWT"}, algorithm=ALGORITHM)
    return token, claims


def _b64(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise ValueError("bad length")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    # SECURITY: only the canonical encoding is accepted (no trailing bits set), so one token has
    # exactly one spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise ValueError("non-canonical base64url")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError("duplicate key")
        out[k] = v
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _time(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int in Python; floats, strings and huge numbers are refused
    if type(value) is not int or not 0 < value < 2**40:
        raise ValueError(f"{name} is not a whole number of seconds")
    return value


def _text_claim(claims: Mapping[str, Any], name: str, limit: int = 128) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValueError(f"{name} is missing")
    return value


def verify(token: str, keys: TokenKeys, *, issuer: str, audience: str, now: datetime, max_lifetime: int) -> TokenClaims:
    """The claims of a valid token, or `InvalidTokenError`. Everything is checked here: shape
    and size, a header of exactly alg ES256 / typ JWT / a known kid, the signature (jose, with
    the algorithm pinned), and every claim present, typed and in range."""
    try:
        return _verify(token, keys, issuer=issuer, audience=audience, now=now, max_lifetime=max_lifetime)
    except InvalidTokenError:
        raise
    except Exception:  # noqa: BLE001 - SECURITY: any failure at all is a refusal, never a 500
        raise InvalidTokenError() from None


def _verify(token: str, keys: TokenKeys, *, issuer: str, audience: str, now: datetime, max_lifetime: int) -> TokenClaims:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or not _SHAPE.fullmatch(token):
        raise InvalidTokenError()  # also refuses a JWE (five segments) and an unsigned token
    head_b64, body_b64, sig_b64 = token.split(".")
    header = _json(_b64(head_b64))
    if set(header) - _HEADER_KEYS or header.get("alg") != ALGORITHM or header.get("typ", "JWT") != "JWT":
        raise InvalidTokenError()  # jku, x5u, jwk, x5c, crit, b64 ... are never honoured
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise InvalidTokenError()
    public = keys.public(kid)
    if public is None:
        raise InvalidTokenError()
    claims = _json(_b64(body_b64))
    if len(_b64(sig_b64)) != 64:  # an ES256 signature is r || s, 32 bytes each
        raise InvalidTokenError()
    if set(claims) != _CLAIMS:
        raise InvalidTokenError()
    # SECURITY: the algorithm is pinned; jose checks only the signature, over the exact bytes.
    signed = jws.verify(token, public, algorithms=[ALGORITHM])
    if signed != _b64(body_b64):
        raise InvalidTokenError()
    if claims["iss"] != issuer or claims["aud"] != audience:
        raise InvalidTokenError()
    iat, nbf, exp = _time(claims, "iat"), _time(claims, "nbf"), _time(claims, "exp")
    t = now.timestamp()
    if not math.isfinite(t) or iat > t + LEEWAY_SECONDS or nbf > t + LEEWAY_SECONDS or exp <= t:
        raise InvalidTokenError()
    if exp - iat > max_lifetime or exp <= iat:
        raise InvalidTokenError()
    return TokenClaims(subject=_text_claim(claims, "sub", 36), session=_text_claim(claims, "sid", 32), issued_at=iat,
                       expires_at=exp, token_id=_text_claim(claims, "jti", 32))

