"""A deployment's state in one object: database, policies, data directory, keys, mail.

Services take a `Workspace` and open their transactions with `ws.begin()`: one unit of work
per operation, in which the state change and its audit event commit together. After a commit
that carried the chain across a multiple of `checkpoint_every` events, the workspace signs a
checkpoint and writes it outside the database (DESIGN §6). Adapters (CLI, API) build one
workspace per process and never open sessions of their own.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from governance.audit import store as audit
from governance.audit.chain import Checkpoint
from governance.audit.writer import CheckpointPolicy, GroupCommitWriter
from governance.config import Settings
from governance.errors import GovernanceError
from governance.identity.institutional import InstitutionalClassifier
from governance.identity.mail import Mailer, mailer_from_env
from governance.policy import load_compiled
from governance.policy.compile import CompiledPolicies
from governance.policy.evaluate import Engine as PolicyEngine
from governance.policy.loader import bundled_policies_dir
from governance.storage.db import READ_ONLY, make_engine
from governance.storage import version
from governance.storage.version import VersionedCache, VersionWatch

if TYPE_CHECKING:
    from governance.auth.service import Authenticator
    from governance.crypto.keystore import FileKeyStore

log = logging.getLogger(__name__)


class SecretFileError(GovernanceError):
    """A secret file is unreadable or readable by others."""


def read_or_create_secret(path: Path, size: int = 32) -> bytes:
    """A random secret kept in a 0600 file, created on first use; refused if others can read it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(size))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretFileError(f"secret file {path} is readable by others (mode {mode:o}); chmod 600 it")
    data = path.read_bytes()
    if len(data) < size:
        raise SecretFileError(f"secret file {path} is shorter than {size} bytes")
    return data


class Workspace:
    """Everything services need. Cheap to keep for a process's lifetime; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Engine | None = None,
        policies: CompiledPolicies | Path | None = None,
        mailer: Mailer | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db if db is not None else make_engine(settings.database_url)
        self._policies_arg = policies
        self._mailer = mailer
        self._env = dict(env) if env is not None else {}
        self._lock = threading.Lock()
        self._engines: dict[tuple[frozenset[str], frozenset[str]], PolicyEngine] = {}
        self.checkpoint_failures = 0
        # Subjects compiled at a state version (governance.approvals.state); never stale.
        self.subjects: VersionedCache[Any] = VersionedCache(limit=10_000)
        # The state version without a query, where a listener keeps it (PostgreSQL, the API).
        self.versions = VersionWatch()
        # High-volume audit events (denied checks) go through group commit when a long-lived
        # process (the API) starts one; short-lived ones (the CLI) append directly.
        self.audit_writer: GroupCommitWriter | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, policies: Path | None = None) -> Workspace:
        return cls(Settings.from_env(env), policies=policies, env=env)

    # ------------------------------------------------------------ policies and decisions

    @cached_property
    def policies(self) -> CompiledPolicies:
        arg = self._policies_arg
        if isinstance(arg, CompiledPolicies):
            return arg
        return load_compiled(arg or bundled_policies_dir())

    def decision_engine(self, allow: frozenset[str], deny: frozenset[str]) -> PolicyEngine:
        """The policy engine for the deployment's current allow and deny lists (one per pair of
        lists, so each keeps its memos warm; a change to the lists gives a fresh engine)."""
        key = (allow, deny)
        found = self._engines.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._engines.get(key)
            if found is None:
                if len(self._engines) >= 8:
                    self._engines.clear()
                found = PolicyEngine(self.policies, classifier=InstitutionalClassifier(allow=allow, deny=deny))
                self._engines[key] = found
            return found

    # ------------------------------------------------------------ transactions

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One unit of work: commits on success, rolls back on any exception."""
        with self.db.connect() as conn:
            conn.info.pop(audit.FIRST_SEQ, None)
            conn.info.pop(audit.LAST_SEQ, None)
            conn.info.pop(version.WRITTEN, None)
            try:
                with conn.begin():
                    yield conn
            finally:
                first = conn.info.pop(audit.FIRST_SEQ, None)
                last = conn.info.pop(audit.LAST_SEQ, None)
                written = conn.info.pop(version.WRITTEN, None)
        # Only reached after a commit.
        if written is not None:
            self.versions.saw(written)  # this process's own change is seen at once
            version.publish(self.db, written)  # and, on SQLite, other processes' next stat
        if last is not None and first is not None:
            self._checkpoint_if_due(first, last)

    def start_group_commit(self) -> GroupCommitWriter:
        """Start the group-commit writer for this process (idempotent); `close()` stops it."""
        with self._lock:
            if self.audit_writer is None:
                policy = CheckpointPolicy(key=audit.load_or_create_key(self.settings.audit_key_path),
                                          out=self.settings.checkpoint_path, every=self.settings.checkpoint_every) \
                    if self.settings.checkpoint_every > 0 else None
                self.audit_writer = GroupCommitWriter(self.db, checkpoints=policy)
            return self.audit_writer

    def start_version_watch(self) -> None:
        """Keep the state version without a query per check: LISTEN/NOTIFY on PostgreSQL, the
        signal file beside a SQLite database; `close()` stops it."""
        self.versions.start(self.db)

    def close(self) -> None:
        """Stop the version listener; commit what the group-commit writer holds and stop it."""
        self.versions.stop()
        writer, self.audit_writer = self.audit_writer, None
        if writer is not None:
            writer.close()

    def connect(self) -> Connection:
        """A connection for reading; never write on it. On SQLite it reads a WAL snapshot without
        the write lock. On PostgreSQL it runs in autocommit: no BEGIN and ROLLBACK round trips,
        and nothing is lost, since under READ COMMITTED each statement sees its own snapshot
        anyway (readers that need an order, like the state version first, issue it in order)."""
        conn = self.db.connect()
        if conn.dialect.name == "postgresql":
            return conn.execution_options(isolation_level="AUTOCOMMIT", **{READ_ONLY: True})
        return conn.execution_options(**{READ_ONLY: True})

    def _checkpoint_if_due(self, first: int, last: int) -> None:
        every = self.settings.checkpoint_every
        if every <= 0 or (first - 1) // every == last // every:
            return
        self.checkpoint()

    def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's head now. A failure is logged and counted, never raised: the events
        are committed, and the next crossing (or `govern audit checkpoint`) tries again."""
        try:
            key = audit.load_or_create_key(self.settings.audit_key_path)
            return audit.checkpoint(self.db, key=key, at=datetime.now(UTC), out=self.settings.checkpoint_path)
        except Exception as exc:  # noqa: BLE001
            self.checkpoint_failures += 1
            log.warning("audit checkpoint failed (%s); it will be retried", type(exc).__name__)
            return None

    # ------------------------------------------------------------ secrets and mail

    @cached_property
    def token_secret(self) -> bytes:
        """The HMAC key for e-mail links (a 0600 file in the data directory)."""
        return read_or_create_secret(self.settings.data_dir / "token.key")

    @cached_property
    def mailer(self) -> Mailer:
        if self._mailer is not None:
            return self._mailer
        return mailer_from_env(self._env, outbox=self.settings.data_dir / "outbox")

    @cached_property
    def authenticator(self) -> Authenticator:
        """Token keys and the bounded credential cache of this process."""
        from governance.auth.service import Authenticator

        return Authenticator(self)

    @cached_property
    def keystore(self) -> FileKeyStore:
        """The dataset keys, opened with the master key (GOVERNANCE_MASTER_KEY, else the 0600 file)."""
        from governance.crypto.keystore import FileKeyStore
        from governance.crypto.master import load_master_key

        return FileKeyStore(self.settings.keys_dir, load_master_key(env=self._env, path=self.settings.master_key_path))

    @property
    def documents_dir(self) -> Path:
        return self.settings.data_dir / "documents"
