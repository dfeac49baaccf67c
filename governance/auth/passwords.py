"""Password hashing (argon2id through argon2-cffi), kept apart so its cost is tunable in one place."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from governance.errors import GovernanceError

MIN_LENGTH = 12
MAX_LENGTH = 1024

_HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory profile
# A hash of a random password, verified when the user is unknown so that the time taken does not
# tell which addresses have accounts.
_DUMMY = _HASHER.hash("not-a-password-of-anyone-at-all")


class PasswordPolicyError(GovernanceError):
    """A new password does not meet the policy."""


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_policy(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; with no stored hash, spends the same time and fails."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored if stored is not None else _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
