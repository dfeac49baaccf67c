"""Settings, built from an explicit mapping (the CLI passes os.environ); nothing at import time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where state lives. Defaults give the embedded deployment: a SQLite file and a data
    directory under the working directory, no server needed."""

    data_dir: Path
    database_url: str
    checkpoint_every: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        data_dir = Path(env.get("GOVERNANCE_DATA_DIR", ".governance"))
        url = env.get("GOVERNANCE_DATABASE_URL") or f"sqlite:///{data_dir / 'governance.db'}"
        every = int(env.get("GOVERNANCE_CHECKPOINT_EVERY", "1000"))
        return cls(data_dir=data_dir, database_url=url, checkpoint_every=every)

    @property
    def audit_key_path(self) -> Path:
        return self.data_dir / "audit-signing.key"

    @property
    def checkpoint_path(self) -> Path:
        return self.data_dir / "audit-checkpoint.json"
