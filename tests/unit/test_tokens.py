"""E-mail normalisation and verification tokens: only a genuine, unexpired token for the
right purpose and the user's current address verifies; every failure looks the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.identity.tokens import (
    InvalidEmailError,
    InvalidTokenError,
    mint_token,
    normalise_email,
    verify_token,
)

SECRET = b"s" * 32
NOW = datetime(2026, 11, 1, tzinfo=UTC)
LATER = NOW + timedelta(hours=24)


def mint(**kw: object) -> str:
    args = {"secret": SECRET, "purpose": "verify-email", "user": "u1", "email": "Carol@UST.hk", "expires": LATER}
    args.update(kw)
    return mint_token(**args)  # type: ignore[arg-type]


def check(token: str, **kw: object) -> object:
    args = {"secret": SECRET, "purpose": "verify-email", "current_email": "carol@ust.hk", "now": NOW}
    args.update(kw)
    return verify_token(token, **args)  # type: ignore[arg-type]


def test_addresses_are_normalised_in_case_and_idna_form() -> None:
    assert normalise_email("  Alice@CS.Stanford.EDU ") == "alice@cs.stanford.edu"
    assert normalise_email("a@münchen.de") == "a@xn--mnchen-3ya.de"
    for bad in ("bad", "a@", "@b.com", "a@b", "ü@example.org", "x" * 400 + "@example.org"):
        with pytest.raises(InvalidEmailError):
            normalise_email(bad)


def test_a_genuine_token_verifies_and_names_its_user_address_and_nonce() -> None:
    claims = check(mint())
    assert claims.user == "u1" and claims.email == "carol@ust.hk" and claims.expires == LATER.replace(microsecond=0)
    assert len(claims.nonce_digest) == 64 and claims.nonce not in claims.nonce_digest


@pytest.mark.parametrize(
    "case",
    ["expired", "at_expiry", "other_purpose", "changed_address", "no_address", "other_secret", "tampered_payload",
     "tampered_mac", "two_dots", "no_dot", "oversized", "garbage", "empty"],
)
def test_every_bad_token_is_refused_with_the_same_sentence(case: str) -> None:
    token = mint()
    payload, mac = token.split(".")
    kwargs: dict[str, object] = {}
    if case == "expired":
        kwargs["now"] = LATER + timedelta(seconds=1)
    elif case == "at_expiry":
        kwargs["now"] = LATER
    elif case == "other_purpose":
        kwargs["purpose"] = "reset-password"
    elif case == "changed_address":
        kwargs["current_email"] = "carol@connect.ust.hk"
    elif case == "no_address":
        kwargs["current_email"] = None
    elif case == "other_secret":
        kwargs["secret"] = b"t" * 32
    elif case == "tampered_payload":
        token = mint(user="u2").split(".")[0] + "." + mac
    elif case == "tampered_mac":
        token = payload + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    elif case == "two_dots":
        token = token + ".x"
    elif case == "no_dot":
        token = payload + mac
    elif case == "oversized":
        token = "a" * 5000 + "." + mac
    elif case == "garbage":
        token = "!!!.???"
    elif case == "empty":
        token = ""
    with pytest.raises(InvalidTokenError) as info:
        check(token, **kwargs)
    assert str(info.value) == "the verification link is invalid or has expired; ask for a new one"
    assert SECRET.decode() not in str(info.value)


def test_short_secrets_and_naive_expiries_are_refused() -> None:
    with pytest.raises(ValueError):
        mint(secret=b"short")
    with pytest.raises(ValueError):
        mint(expires=datetime(2027, 1, 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_no_random_string_verifies(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        check(token)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255))
def test_flipping_any_byte_of_a_genuine_token_breaks_it(position: int, value: int) -> None:
    token = mint()
    i = position % len(token)
    replacement = chr(value % 94 + 33)
    if replacement == token[i]:
        return
    with pytest.raises(InvalidTokenError):
        check(token[:i] + replacement + token[i + 1:])


def test_a_non_canonical_encoding_of_a_genuine_mac_is_refused() -> None:
    token = mint()
    payload, mac = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # A 32-byte MAC leaves 2 spare bits in its last character: same bytes, different string.
    last = alphabet.index(mac[-1])
    variants = [alphabet[(last & ~0b11) | spare] for spare in range(4) if alphabet[(last & ~0b11) | spare] != mac[-1]]
    for v in variants:
        with pytest.raises(InvalidTokenError):
            check(payload + "." + mac[:-1] + v)
    with pytest.raises(InvalidTokenError):
        check(payload + "." + mac + "!")  # a character the decoder would silently drop
