"""The master key that seals every dataset private key, and atomic writes of small secret files.

The key comes from a file that only its owner can read (0600 or stricter; anything wider is
refused) or from the environment variable GOVERNANCE_MASTER_KEY (base64 of 32 bytes).

# SECURITY: a MasterKey has no repr, str or pickle of its bytes; messages name the source
# (path or variable) and never its content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from governance.crypto.errors import MasterKeyError
from governance.errors import display_path

MASTER_ENV = "GOVERNANCE_MASTER_KEY"
KEY_SIZE = 32


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(target: Path, data: bytes) -> Path:
    """`data` in a fresh 0600 file beside `target`, flushed to disk; the caller renames it."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover of an interrupted write by a process of this pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(target: Path, data: bytes) -> None:
    """Write `target` so that it holds either its old bytes or all of `data` (temp, fsync, rename)."""
    tmp = write_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


# ------------------------------------------------------------------ the master key


class MasterKey:
    """32 secret bytes that seal every dataset private key; they cannot print or pickle."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise MasterKeyError(f"a master key is {KEY_SIZE} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random master key."""
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def from_base64(cls, text: str | bytes, *, where: str) -> MasterKey:
        """The key in base64 text (surrounding whitespace ignored); `where` names the source."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"{where} does not hold base64 of {KEY_SIZE} bytes") from None
        if len(raw) != KEY_SIZE:
            raise MasterKeyError(f"{where} does not hold base64 of {KEY_SIZE} bytes")
        return cls(raw)

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str = MASTER_ENV) -> MasterKey | None:
        """The key in environment variable `name`, or None when it is unset or empty."""
        value = env.get(name)
        if not value:
            return None
        return cls.from_base64(value, where=f"environment variable {name}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """The key in a file, refused unless only its owner can read and write it (0600 or stricter)."""
        shown = display_path(os.fspath(path))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise MasterKeyError(f"master key file {shown} does not exist; create it with `govern keys init` "
                                 f"or set {MASTER_ENV}") from None
        except OSError as exc:
            raise MasterKeyError(f"cannot read master key file {shown}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())  # INVARIANT: the mode checked is that of the file read
            if not stat.S_ISREG(st.st_mode):
                raise MasterKeyError(f"master key file {shown} is not a regular file")
            if st.st_mode & 0o077:
                mode = stat.S_IMODE(st.st_mode)
                raise MasterKeyError(f"master key file {shown} has mode {mode:04o}, so others may read it; "
                                     f"it must be 0600 or stricter (chmod 600 {shown})")
            data = f.read(4096)
        return cls.from_base64(data, where=f"master key file {shown}")

    def create_file(self, path: str | os.PathLike[str]) -> None:
        """Write the key to a new file, 0600, never over an existing one (all or nothing)."""
        target = Path(path)
        tmp = write_temp(target, self.file_bytes())
        try:
            os.link(tmp, target)  # INVARIANT: fails if the file exists; never a half-written key file
        except FileExistsError:
            raise MasterKeyError(f"master key file {display_path(target)} already exists") from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(target.parent)

    def get_secret_value(self) -> bytes:
        """The raw key bytes (the only way to get them, as with pydantic's SecretBytes)."""
        return self._key

    @property
    def key_id(self) -> str:
        """A one-way, public identifier of the key (16 hex digits); names its generation."""
        return hashlib.blake2b(self._key, digest_size=8, person=b"gov-master-id").hexdigest()

    def file_bytes(self) -> bytes:
        """The key file's contents (base64 and a newline); for writing it, never for showing it."""
        return base64.b64encode(self._key) + b"\n"

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a MasterKey cannot be pickled or copied")


def load_master_key(*, env: Mapping[str, str], path: str | os.PathLike[str]) -> MasterKey:
    """The master key from GOVERNANCE_MASTER_KEY when it is set, else from the file at `path`."""
    from_env = MasterKey.from_env(env)
    return from_env if from_env is not None else MasterKey.from_file(path)
