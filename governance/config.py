"""Settings, built from an explicit mapping (the CLI passes os.environ); nothing at import time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from governance.errors import GovernanceError


class SettingsError(GovernanceError):
    """An environment setting has a value we cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise SettingsError(f"{name}={raw!r} must be at least {low}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not 0 <= value <= high:
        raise SettingsError(f"{name}={raw!r} must lie between 0 and {high}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be 1 or 0 (true or false)")


@dataclass(frozen=True)
class Settings:
    """Where state lives and how people authenticate. Defaults give the embedded deployment: a
    SQLite file and a data directory under the working directory, no server needed."""

    data_dir: Path
    database_url: str
    checkpoint_every: int = 1000
    # Authentication (the HTTP API). Tokens are ES256 JWTs signed by keys in `jwt_keys_dir`.
    jwt_issuer: str = "governance"
    jwt_audience: str = "governance-api"
    access_token_seconds: int = 900
    refresh_token_seconds: int = 7 * 24 * 3600
    # How long a verified token or API key is trusted without looking at the database again.
    # INVARIANT: this bounds how late a logout, an account's disabling or a key's revocation
    # made through another replica takes effect (the replica that made it forgets at once).
    auth_cache_seconds: float = 0.5
    login_failures_allowed: int = 5
    login_failure_window_seconds: int = 900
    # The console (a cookie session): idle timeout, absolute lifetime, how long a re-entered
    # password counts, and whether the cookie is marked Secure (only off for plain-HTTP tests).
    console_idle_seconds: int = 900
    console_session_seconds: int = 8 * 3600
    console_reauth_seconds: int = 300
    console_secure_cookie: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        data_dir = Path(env.get("GOVERNANCE_DATA_DIR", ".governance"))
        url = env.get("GOVERNANCE_DATABASE_URL") or f"sqlite:///{data_dir / 'governance.db'}"
        return cls(
            data_dir=data_dir,
            database_url=url,
            checkpoint_every=_int(env, "GOVERNANCE_CHECKPOINT_EVERY", 1000),
            jwt_issuer=env.get("GOVERNANCE_JWT_ISSUER") or "governance",
            jwt_audience=env.get("GOVERNANCE_JWT_AUDIENCE") or "governance-api",
            access_token_seconds=_int(env, "GOVERNANCE_ACCESS_TOKEN_SECONDS", 900, low=30),
            refresh_token_seconds=_int(env, "GOVERNANCE_REFRESH_TOKEN_SECONDS", 7 * 24 * 3600, low=60),
            auth_cache_seconds=_float(env, "GOVERNANCE_AUTH_CACHE_SECONDS", 0.5, high=1.0),
            login_failures_allowed=_int(env, "GOVERNANCE_LOGIN_FAILURES_ALLOWED", 5, low=1),
            login_failure_window_seconds=_int(env, "GOVERNANCE_LOGIN_FAILURE_WINDOW_SECONDS", 900, low=1),
            console_idle_seconds=_int(env, "GOVERNANCE_CONSOLE_IDLE_SECONDS", 900, low=1),
            console_session_seconds=_int(env, "GOVERNANCE_CONSOLE_SESSION_SECONDS", 8 * 3600, low=60),
            console_reauth_seconds=_int(env, "GOVERNANCE_CONSOLE_REAUTH_SECONDS", 300, low=1),
            console_secure_cookie=_bool(env, "GOVERNANCE_CONSOLE_SECURE_COOKIE", True),
        )

    @property
    def audit_key_path(self) -> Path:
        return self.data_dir / "audit-signing.key"

    @property
    def checkpoint_path(self) -> Path:
        return self.data_dir / "audit-checkpoint.json"

    @property
    def jwt_keys_dir(self) -> Path:
        return self.data_dir / "jwt-keys"

    @property
    def keys_dir(self) -> Path:
        """The keystore: dataset key pairs, private keys sealed by the master key."""
        return self.data_dir / "keys"

    @property
    def objects_dir(self) -> Path:
        """The object store of encrypted payloads (a local directory by default)."""
        return self.data_dir / "objects"

    @property
    def master_key_path(self) -> Path:
        """The master key file (0600), used unless GOVERNANCE_MASTER_KEY is set."""
        return self.data_dir / "master.key"
