"""Authentication through the real app: every forged, malformed or ended credential gets the same
401 problem and nothing else; sessions, refresh rotation, logout, the login limit, API keys and
roles behave as governance/auth/service.py promises. Forged tokens are built by hand (base64url,
JSON text, `cryptography` signatures) so each attack is exactly what its name says, and each test
first shows that a correctly built token for the same user and session is accepted."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update

from governance.identity import service as identity
from governance.identity.roles import Role, revoke_role
from governance.storage.tables import AuditEventRow, AuthSessionRow
from governance.workspace import Workspace
from tests.integration.helpers import NOW, OPERATOR, PASSWORD, add_approver, add_login, bearer

ALICE, BOB = "alice@ust.hk", "bob@ox.ac.uk"
UNAUTHENTICATED = {"type": "urn:governance:problem:unauthenticated", "title": "Authentication required", "status": 401,
                   "detail": "a valid access token or API key is required"}
AUDIT = AuditEventRow.__table__  # type: ignore[attr-defined]
SESSIONS = AuthSessionRow.__table__  # type: ignore[attr-defined]
CLAIMS = ("iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti")


# ---------------------------------------------------------------- building tokens by hand

def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def segment(part: Any) -> str:
    """A dict becomes compact JSON; str is taken as the exact JSON text; bytes as they are."""
    raw = part if isinstance(part, bytes) else (part if isinstance(part, str) else json.dumps(part, separators=(",", ":"))).encode()
    return b64(raw)


def es256(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS form: r || s, not DER


def sign(header: Any, payload: Any, key: ec.EllipticCurvePrivateKey) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{b64(es256(key, signing_input.encode()))}"


def sign_hmac(alg: str, header: Any, payload: Any, secret: bytes) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[alg]
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), digest).digest())}"


ATTACKER = ec.generate_private_key(ec.SECP256R1())


def attacker_jwk() -> dict[str, str]:
    numbers = ATTACKER.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}


def attacker_cert() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "governance")])
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ATTACKER.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + timedelta(days=30))
            .sign(ATTACKER, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()  # x5c is standard base64


@dataclass
class Victim:
    """A logged-in user with a real session, the server's signing key, and a second user."""

    ws: Workspace
    client: Any
    key: ec.EllipticCurvePrivateKey
    kid: str
    sub: str
    sid: str
    other: dict[str, Any]  # bob's real claims

    def header(self, **extra: Any) -> dict[str, Any]:
        return {"alg": "ES256", "typ": "JWT", "kid": self.kid, **extra}

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        s = self.ws.settings
        claims = {"iss": s.jwt_issuer, "aud": s.jwt_audience, "sub": self.sub, "sid": self.sid, "iat": now, "nbf": now,
                  "exp": now + 300, "jti": secrets.token_urlsafe(12)}
        return {k: v for k, v in {**claims, **changes}.items() if v is not OMIT}

    def valid(self) -> str:
        return sign(self.header(), self.claims(), self.key)

    def json_claims(self, exp_text: str) -> str:
        """The claims as JSON text with `exp` spelled exactly as given (Infinity, NaN, 1e10 ...)."""
        text = json.dumps(self.claims(exp=0), separators=(",", ":"))
        return text.replace('"exp":0', f'"exp":{exp_text}')


OMIT = object()


def payload_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(unb64(token.split(".")[1]))
    return claims


def login(client: Any, address: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/v1/auth/login", json={"email": address, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def me(client: Any, token: str | None = None, **headers: str) -> Any:
    return client.get("/v1/me", headers={**({"Authorization": f"Bearer {token}"} if token is not None else {}), **headers})


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.text[:300]
    assert response.json() == UNAUTHENTICATED
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.fixture
def victim(ws: Workspace, api: Any) -> Victim:
    add_login(ws, ALICE, organisation="hkust")
    add_login(ws, BOB, organisation="oxford")
    alice, bob = payload_of(login(api, ALICE)["access_token"]), payload_of(login(api, BOB)["access_token"])
    keys = ws.authenticator.keys
    return Victim(ws=ws, client=api, key=keys.private[keys.active], kid=keys.active, sub=alice["sub"], sid=alice["sid"],
                  other=bob)


@contextmanager
def app_over(ws: Workspace, **settings: Any) -> Iterator[tuple[Workspace, Any]]:
    """A second app (another 'replica') over the same database and keys, with other settings."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    other = Workspace(dataclasses.replace(ws.settings, **settings), db=ws.db, mailer=ws.mailer)
    with TestClient(create_app(workspace=other), raise_server_exceptions=False) as client:
        yield other, client


def audit_text(ws: Workspace) -> str:
    with ws.db.connect() as conn:
        rows = conn.execute(select(AUDIT)).all()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


def audit_rows(ws: Workspace, action: str) -> list[Any]:
    with ws.db.connect() as conn:
        return list(conn.execute(select(AUDIT).where(AUDIT.c.action == action).order_by(AUDIT.c.seq)).all())


# ---------------------------------------------------------------- forged and malformed tokens

def _none(alg: str, signed: bool) -> Callable[[Victim], str]:
    def build(v: Victim) -> str:
        token = sign(v.header(alg=alg), v.claims(), v.key)
        return token if signed else token.rsplit(".", 1)[0] + "."
    return build


def _hmac(alg: str, form: str) -> Callable[[Victim], str]:
    def build(v: Victim) -> str:
        encoding = serialization.Encoding.PEM if form == "pem" else serialization.Encoding.DER
        public = v.key.public_key().public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)
        return sign_hmac(alg, v.header(alg=alg), v.claims(), public)
    return build


def _tampered_payload(v: Victim) -> str:
    head, _, sig = v.valid().split(".")
    return f"{head}.{segment(v.claims(sub=v.other['sub'], sid=v.other['sid']))}.{sig}"


def _tampered_signature(v: Victim) -> str:
    head, body, sig = v.valid().split(".")
    raw = bytearray(unb64(sig))
    raw[10] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"


def _non_canonical_signature(v: Victim) -> str:
    head, body, sig = v.valid().split(".")
    # 64 bytes make 86 characters; the last one carries 4 unused bits. Setting one decodes to the
    # same signature, so only the spelling is wrong.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig[-1]) | 0b0001]
    assert unb64(sig[:-1] + last) == unb64(sig) and last != sig[-1]
    return f"{head}.{body}.{sig[:-1]}{last}"


def _standard_alphabet(v: Victim) -> str:
    token = v.valid()
    while "-" not in token and "_" not in token:
        token = v.valid()
    return token.replace("-", "+").replace("_", "/")


def _padded(v: Victim) -> str:
    head, body, sig = v.valid().split(".")
    return f"{head}{'=' * (-len(head) % 4) or '=='}.{body}.{sig}"


def _jwe(v: Victim) -> str:
    parts = [segment({"alg": "dir", "enc": "A256GCM", "kid": v.kid}), "", b64(secrets.token_bytes(12)),
             b64(secrets.token_bytes(200)), b64(secrets.token_bytes(16))]
    return ".".join(parts)


def _with_exp(text: str) -> Callable[[Victim], str]:
    return lambda v: sign(v.header(), v.json_claims(text), v.key)


def _claim(**changes: Any) -> Callable[[Victim], str]:
    return lambda v: sign(v.header(), v.claims(**changes), v.key)


def _head(**extra: Any) -> Callable[[Victim], str]:
    return lambda v: sign(v.header(**extra), v.claims(), v.key)


def _attacker(**extra: Any) -> Callable[[Victim], str]:
    """Signed with the attacker's key, which the header points at or embeds."""
    def build(v: Victim) -> str:
        values = {k: (attacker_jwk() if val == "JWK" else [attacker_cert()] if val == "X5C" else val) for k, val in extra.items()}
        return sign({"alg": "ES256", "typ": "JWT", **values}, v.claims(), ATTACKER)
    return build


def _text_header(text: str) -> Callable[[Victim], str]:
    return lambda v: sign(text.replace("KID", v.kid), v.claims(), v.key)


def _dup_payload(name: str) -> Callable[[Victim], str]:
    def build(v: Victim) -> str:
        good = v.claims()
        first = {"sub": v.other["sub"], "sid": v.other["sid"], "exp": good["exp"] + 10**6}[name]
        text = json.dumps(good, separators=(",", ":"))
        return sign(v.header(), "{" + f'"{name}":{json.dumps(first)},' + text[1:], v.key)
    return build


now = lambda: int(time.time())  # noqa: E731

ATTACKS: list[tuple[str, Callable[[Victim], str]]] = [
    *[(f"alg_{a}_{'signed' if s else 'unsigned'}", _none(a, s)) for a in ("none", "None", "NONE") for s in (False, True)],
    ("alg_lowercase_es256", _head(alg="es256")),
    ("alg_es512", _head(alg="ES512")),
    *[(f"{alg}_with_public_key_{form}", _hmac(alg, form)) for alg in ("HS256", "HS384") for form in ("pem", "der")],
    ("expired", lambda v: sign(v.header(), v.claims(iat=now() - 301, nbf=now() - 301, exp=now() - 1), v.key)),
    ("iat_and_nbf_in_future", lambda v: sign(v.header(), v.claims(iat=now() + 120, nbf=now() + 120, exp=now() + 400), v.key)),
    ("nbf_in_future", lambda v: sign(v.header(), v.claims(nbf=now() + 120), v.key)),
    ("iat_in_future", lambda v: sign(v.header(), v.claims(iat=now() + 120, exp=now() + 400), v.key)),
    ("wrong_aud", _claim(aud="someone-else")),
    ("aud_as_list", lambda v: sign(v.header(), v.claims(aud=[v.ws.settings.jwt_audience]), v.key)),
    ("wrong_iss", _claim(iss="https://attacker.example")),
    *[(f"missing_{c}", _claim(**{c: OMIT})) for c in CLAIMS],
    ("extra_roles_claim", _claim(roles=["admin"])),
    ("null_sub", _claim(sub=None)),
    ("tampered_payload", _tampered_payload),
    ("tampered_signature", _tampered_signature),
    ("signature_by_another_key", lambda v: sign(v.header(), v.claims(), ATTACKER)),
    ("der_signature", lambda v: (lambda t: f"{t}.{b64(v.key.sign(t.encode(), ec.ECDSA(hashes.SHA256())))}")(
        f"{segment(v.header())}.{segment(v.claims())}")),
    ("unknown_kid", _head(kid="k20990101000000-deadbeef")),
    ("no_kid", lambda v: sign({"alg": "ES256", "typ": "JWT"}, v.claims(), v.key)),
    ("kid_dot_dot_passwd", _head(kid="../../etc/passwd")),
    ("kid_dev_null", _head(kid="/dev/null")),
    ("kid_pem_file_name", lambda v: sign(v.header(kid=f"{v.kid}.pem"), v.claims(), v.key)),
    ("kid_path_to_real_key", lambda v: sign(v.header(kid=f"../jwt-keys/{v.kid}"), v.claims(), v.key)),
    ("typ_jwe", _head(typ="JWE")),
    ("jku_attacker", _attacker(kid="attacker", jku="https://attacker.example/jwks.json")),
    ("jku_real_key", _head(jku="https://attacker.example/jwks.json")),
    ("x5u_attacker", _attacker(x5u="https://attacker.example/cert.pem")),
    ("jwk_attacker", _attacker(jwk="JWK")),
    ("jwk_attacker_with_real_kid", lambda v: sign({**v.header(), "jwk": attacker_jwk()}, v.claims(), ATTACKER)),
    ("jwk_real_key", lambda v: sign(v.header(jwk=attacker_jwk()), v.claims(), v.key)),
    ("x5c_attacker", _attacker(x5c="X5C")),
    ("crit_exp", _head(crit=["exp"])),
    ("crit_b64", _head(crit=["b64"], b64=False)),
    ("duplicate_alg_in_header", _text_header('{"alg":"none","alg":"ES256","typ":"JWT","kid":"KID"}')),
    ("duplicate_kid_in_header", _text_header('{"alg":"ES256","typ":"JWT","kid":"k-other","kid":"KID"}')),
    ("duplicate_sub_in_payload", _dup_payload("sub")),
    ("duplicate_sid_in_payload", _dup_payload("sid")),
    ("duplicate_exp_in_payload", _dup_payload("exp")),
    ("exp_infinity", _with_exp("Infinity")),
    ("exp_minus_infinity", _with_exp("-Infinity")),
    ("exp_nan", _with_exp("NaN")),
    ("exp_exponent_float", _with_exp("1e10")),
    ("exp_overflowing_float", _with_exp("1e400")),
    ("exp_string", _claim(exp="9999999999")),
    ("exp_float", lambda v: sign(v.header(), v.claims(exp=now() + 300.5), v.key)),
    ("exp_integral_float", lambda v: sign(v.header(), v.claims(exp=float(now() + 300)), v.key)),
    ("exp_bool", _claim(exp=True)),
    ("exp_huge_int", _claim(exp=10**30)),
    ("exp_negative", _claim(exp=-1)),
    ("exp_null", _claim(exp=None)),
    ("payload_not_an_object", lambda v: sign(v.header(), [v.claims()], v.key)),
    ("payload_not_utf8", lambda v: sign(v.header(), b"\xff\xfe{}", v.key)),
    ("jwe_five_segments", _jwe),
    ("non_canonical_signature", _non_canonical_signature),
    ("standard_base64_alphabet", _standard_alphabet),
    ("padded_base64", _padded),
    ("four_segments", lambda v: v.valid() + "." + b64(b"x")),
    ("two_segments", lambda v: v.valid().rsplit(".", 1)[0]),
    ("oversized_10mb", lambda v: sign(v.header(), " " * 10_000_000 + json.dumps(v.claims()), v.key)),
    ("garbage", lambda v: "garbage"),
    ("garbage_dots", lambda v: "..."),
    ("garbage_shaped", lambda v: f"{b64(secrets.token_bytes(30))}.{b64(secrets.token_bytes(90))}.{b64(secrets.token_bytes(64))}"),
]


@pytest.mark.parametrize("forge", [a[1] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_forged_or_malformed_access_token_gets_only_the_generic_401(victim: Victim, forge: Callable[[Victim], str]) -> None:
    valid = me(victim.client, victim.valid())
    assert valid.status_code == 200 and valid.json()["email"] == ALICE  # the same construction, done right, passes
    assert_refused(me(victim.client, forge(victim)))
    assert_refused(me(victim.client, **{"X-API-Key": forge(victim)}))


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}, {"Authorization": ""}, {"X-API-Key": ""},
    {"Authorization": "Bearer gk_"}, {"Authorization": "Bearer gk__"}, {"Authorization": "Bearer gk_abc_"},
    {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}, {"Authorization": "Bearer " + "A" * 5000},
], ids=["none", "empty_bearer", "bare_scheme", "empty_header", "empty_api_key", "key_mark_only", "key_no_prefix",
        "key_no_secret", "basic", "long_garbage"])
def test_missing_or_empty_credentials_get_the_generic_401(victim: Victim, headers: dict[str, str]) -> None:
    assert me(victim.client, victim.valid()).status_code == 200
    assert_refused(victim.client.get("/v1/me", headers=headers))


def _padded_token(v: Victim, length: int) -> str:
    """A correctly signed token of exactly `length` characters: the JSON is padded with spaces."""
    for head_len in range(1024, 1, -1):
        body_len = length - head_len - 86 - 2
        if body_len <= 3000 and head_len % 4 != 1 and body_len % 4 != 1:
            break

    def padded(obj: dict[str, Any], chars: int) -> str:
        text = json.dumps(obj, separators=(",", ":"))
        size = chars * 3 // 4  # base64url of n bytes without padding: ceil(4n/3) characters
        return "{" + " " * (size - len(text)) + text[1:]
    token = sign(padded(v.header(), head_len), padded(v.claims(), body_len), v.key)
    assert len(token) == length
    return token


def test_tokens_are_limited_to_4096_bytes(victim: Victim) -> None:
    assert me(victim.client, _padded_token(victim, 4096)).status_code == 200
    assert_refused(me(victim.client, _padded_token(victim, 4097)))


def test_leeway_for_clock_skew_is_30_seconds_and_no_more(victim: Victim) -> None:
    skewed = sign(victim.header(), victim.claims(iat=now() + 15, nbf=now() + 15, exp=now() + 300), victim.key)
    assert me(victim.client, skewed).status_code == 200
    assert_refused(me(victim.client, sign(victim.header(), victim.claims(iat=now() + 45, nbf=now() + 45, exp=now() + 300),
                                          victim.key)))


def test_a_token_living_longer_than_the_settings_allow_is_refused(victim: Victim) -> None:
    lifetime = victim.ws.settings.access_token_seconds
    t = now() - 10
    assert me(victim.client, sign(victim.header(), victim.claims(iat=t, nbf=t, exp=t + lifetime), victim.key)).status_code == 200
    assert_refused(me(victim.client, sign(victim.header(), victim.claims(iat=t, nbf=t, exp=t + lifetime + 1), victim.key)))
    assert_refused(me(victim.client, sign(victim.header(), victim.claims(iat=t, nbf=t, exp=t + 10 * lifetime), victim.key)))


def test_a_trailing_newline_is_not_another_spelling_of_a_valid_token(victim: Victim) -> None:
    from governance.auth.service import AuthenticationError

    token = victim.valid()
    assert victim.ws.authenticator.authenticate(token, now=datetime.now(UTC)).user_id == victim.sub
    for spelling in (token + "\n", token + "\r\n", " " + token, token + " "):
        with pytest.raises(AuthenticationError):
            victim.ws.authenticator.authenticate(spelling, now=datetime.now(UTC))


# ---------------------------------------------------------------- accounts, sessions, refresh, logout

def test_a_disabled_user_is_refused_at_once_after_forget_user_and_within_the_cache_bound_otherwise(ws: Workspace) -> None:
    add_login(ws, ALICE)
    add_login(ws, BOB)
    with app_over(ws, auth_cache_seconds=60.0) as (slow, client):  # a cache long enough that only forgetting explains a refusal
        token = login(client, ALICE)["access_token"]
        assert me(client, token).status_code == 200
        identity.set_disabled(engine=slow, now=NOW, email=ALICE, disabled=True, actor="tests")
        assert me(client, token).status_code == 200  # still trusted from the cache ...
        slow.authenticator.forget_user(payload_of(token)["sub"])
        assert_refused(me(client, token))  # ... until this process forgets, then at once
    with app_over(ws, auth_cache_seconds=0.2) as (fast, client):
        token = login(client, BOB)["access_token"]
        assert me(client, token).status_code == 200
        identity.set_disabled(engine=fast, now=NOW, email=BOB, disabled=True, actor="tests")  # as if through another replica
        time.sleep(0.3)
        assert_refused(me(client, token))
        assert login_status(client, BOB) == 401


def login_status(client: Any, address: str, password: str = PASSWORD) -> int:
    code: int = client.post("/v1/auth/login", json={"email": address, "password": password}).status_code
    return code


def test_logout_ends_the_access_token_and_the_refresh_token_at_once(ws: Workspace) -> None:
    add_login(ws, ALICE)
    with app_over(ws, auth_cache_seconds=60.0) as (_, client):
        tokens = login(client, ALICE)
        assert me(client, tokens["access_token"]).status_code == 200
        assert client.post("/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
        assert_refused(me(client, tokens["access_token"]))
        assert_refused(client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))
        assert me(client, login(client, ALICE)["access_token"]).status_code == 200  # a new login is a new session


def test_refresh_rotates_and_reusing_an_old_refresh_token_ends_the_session(ws: Workspace) -> None:
    add_login(ws, ALICE)
    with app_over(ws, auth_cache_seconds=60.0) as (_, client):
        first = login(client, ALICE)
        second = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        second_tokens = second.json()
        assert second_tokens["refresh_token"] != first["refresh_token"]
        assert payload_of(second_tokens["access_token"])["sid"] == payload_of(first["access_token"])["sid"]
        assert me(client, second_tokens["access_token"]).status_code == 200
        assert me(client, first["access_token"]).status_code == 200
        # the first refresh token again: a thief or the user, we cannot tell, so the session ends
        assert_refused(client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}))
        assert_refused(client.post("/v1/auth/refresh", json={"refresh_token": second_tokens["refresh_token"]}))
        assert_refused(me(client, second_tokens["access_token"]))
        assert_refused(me(client, first["access_token"]))
    ended = audit_rows(ws, "auth.session_end")
    assert len(ended) == 1 and "refresh_token_reused" in ended[0].reasons
    for secret in (first["refresh_token"], second_tokens["refresh_token"], first["access_token"]):
        assert secret.rsplit(".", 1)[-1] not in audit_text(ws)


def test_a_guessed_refresh_token_for_a_known_session_is_refused_without_ending_the_session(ws: Workspace) -> None:
    add_login(ws, ALICE)
    with app_over(ws, auth_cache_seconds=60.0) as (_, client):
        tokens = login(client, ALICE)
        sid = payload_of(tokens["access_token"])["sid"]  # anyone who saw an access token knows it
        assert_refused(client.post("/v1/auth/refresh", json={"refresh_token": f"{sid}.{'x' * 43}"}))
        assert me(client, tokens["access_token"]).status_code == 200
        assert client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
    assert audit_rows(ws, "auth.session_end") == []


def test_an_access_token_ends_with_its_session(victim: Victim) -> None:
    token = login(victim.client, ALICE)["access_token"]
    assert me(victim.client, token).status_code == 200
    with victim.ws.db.begin() as conn:
        conn.execute(update(SESSIONS).where(SESSIONS.c.id == payload_of(token)["sid"])
                     .values(expires_at=(datetime.now(UTC) - timedelta(seconds=1)).isoformat()))
    victim.ws.authenticator.forget_user(victim.sub)
    assert_refused(me(victim.client, token))


def test_login_is_limited_after_five_failures_and_audited_without_secrets(ws: Workspace, api: Any) -> None:
    add_login(ws, ALICE)
    add_login(ws, BOB)
    tokens = login(api, ALICE)
    wrong = [f"wrong password number {i}" for i in range(5)]
    for password in wrong:
        assert_refused(api.post("/v1/auth/login", json={"email": ALICE, "password": password}))
    assert_refused(api.post("/v1/auth/login", json={"email": "nobody@ust.hk", "password": "a wrong password"}))
    limited = api.post("/v1/auth/login", json={"email": ALICE, "password": PASSWORD})  # the right one, too late
    assert limited.status_code == 429
    assert limited.json()["type"] == "urn:governance:problem:rate-limited"
    assert 1 <= int(limited.headers["retry-after"]) <= ws.settings.login_failure_window_seconds
    assert "access_token" not in limited.json()
    assert login_status(api, BOB) == 200  # the limit is per account
    logins = audit_rows(ws, "auth.login")
    outcomes = [(r.outcome, json.loads(r.reasons)) for r in logins]
    assert outcomes.count(("ok", [])) == 2
    assert outcomes.count(("denied", ["bad_credentials"])) == 6
    assert outcomes.count(("denied", ["rate_limited"])) == 1
    text = audit_text(ws)
    for secret in [PASSWORD, "a wrong password", *wrong, tokens["access_token"], tokens["refresh_token"],
                   tokens["refresh_token"].split(".", 1)[1], tokens["access_token"].rsplit(".", 1)[1]]:
        assert secret not in text


# ---------------------------------------------------------------- API keys

def test_api_keys_work_as_bearer_and_header_until_revoked_and_need_the_whole_secret(ws: Workspace) -> None:
    add_login(ws, ALICE)
    with app_over(ws, auth_cache_seconds=60.0) as (_, client):
        session = bearer(client, ALICE)
        created = client.post("/v1/me/api-keys", headers=session, json={"name": "loader"})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        prefix, secret = key[3:].split("_", 1)
        assert client.get("/v1/me/api-keys", headers=session).json()[0]["last_used_at"] is None
        as_bearer = me(client, key)
        assert as_bearer.status_code == 200 and as_bearer.json()["authenticated_by"] == "api_key"
        assert me(client, **{"X-API-Key": key}).json()["email"] == ALICE
        assert client.get("/v1/me/api-keys", headers=session).json()[0]["last_used_at"] is not None
        flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for forged in (f"gk_{prefix}_{flipped}", f"gk_{prefix}_{secret[:-1]}", f"gk_{prefix}_x", f"gk_{prefix}_{secret}x",
                       f"gk_00000000_{secret}", f"gk_{prefix.upper()}_{secret}", f"{prefix}_{secret}"):
            assert_refused(me(client, forged))
            assert_refused(me(client, **{"X-API-Key": forged}))
        assert client.delete(f"/v1/me/api-keys/{key_id}", headers=session).status_code == 200
        assert_refused(me(client, key))  # at once, despite the long cache
        assert_refused(me(client, **{"X-API-Key": key}))
    assert secret not in audit_text(ws)


def test_a_dataset_scoped_key_is_denied_outside_its_datasets(ws: Workspace, api: Any) -> None:
    add_login(ws, ALICE, organisation="hkust", site="cwb")
    key = api.post("/v1/me/api-keys", headers=bearer(api, ALICE), json={"name": "genebody loader", "datasets": ["genebody"]})
    assert key.status_code == 201, key.text
    headers = {"X-API-Key": key.json()["key"]}
    assert me(api, **headers).json()["key_datasets"] == ["genebody"]

    def codes(resource: str) -> list[str]:
        response = api.post("/v1/check", headers=headers, json={"resource": resource, "action": "read",
                                                                 "purpose": "research/non-commercial/academic"})
        assert response.status_code == 200, response.text
        return [r["code"] for r in response.json()["decision"]["reasons"]]
    assert "outside_key_scope" not in codes("genebody:train40/subject01/img_0001.jpg")
    for resource in ("shhq:images/0001.png", "huge100k:images/0001.jpg", "2k2k:scans/0001.ply", "clonedperson:x/0001.jpg"):
        assert codes(resource) == ["outside_key_scope"]


def test_a_disabled_users_api_key_is_refused(ws: Workspace, api: Any) -> None:
    add_login(ws, ALICE)
    key = api.post("/v1/me/api-keys", headers=bearer(api, ALICE), json={"name": "loader"}).json()["key"]
    assert me(api, key).status_code == 200
    user = identity.set_disabled(engine=ws, now=NOW, email=ALICE, disabled=True, actor="tests")
    ws.authenticator.forget_user(user.id)
    assert_refused(me(api, key))


# ---------------------------------------------------------------- roles come from the database

def test_roles_come_from_the_database_and_a_removed_role_ends_within_the_cache_bound(ws: Workspace, api: Any) -> None:
    add_approver(ws, "steward@sensetime.com", "genebody", organisation="sensetime")
    ws.authenticator.set_password(actor=OPERATOR, now=NOW, email="steward@sensetime.com", password="steward password 123")
    headers = bearer(api, "steward@sensetime.com", "steward password 123")

    def roles() -> list[dict[str, Any]]:
        response = api.get("/v1/me", headers=headers)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["roles"]
        return found
    assert {"role": "approver", "dataset": "genebody"} in roles()
    revoke_role(ws, actor=OPERATOR, now=NOW, email="steward@sensetime.com", role=Role.APPROVER, dataset="genebody",
                datasets=ws.policies.datasets)  # straight in the database, as another replica would
    time.sleep(ws.settings.auth_cache_seconds + 0.2)
    assert all(r["role"] != "approver" for r in roles())
