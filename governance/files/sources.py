"""What `govern ingest` reads from: a directory tree, or the password-protected zip a licensor sends.

A source lists its members (dataset-relative path and size) and opens each as a binary stream
of plaintext. Neither kind ever writes plaintext anywhere: a zip member streams through
pyzipper's decrypting reader straight into the caller (the Crypt4GH encryptor).

# SECURITY: the zip password is held as a `SecretStr` and asked for only when a member is
# encrypted; it never enters a message. Messages name the member, never its content.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import pyzipper
from pydantic import SecretStr

from governance.errors import GovernanceError, display_path

# Clutter that archivers and desktops add; never dataset files.
IGNORED_DIRS = frozenset({"__MACOSX"})
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db"})
MAX_PATH = 1024


class IngestError(GovernanceError):
    """An ingest was refused; nothing of the run that raised it was registered."""


class IngestSourceError(IngestError):
    """The source (directory or zip) cannot be read as asked."""


class ZipPasswordError(IngestSourceError):
    """The zip's password is missing or wrong."""


@dataclass(frozen=True, slots=True)
class Member:
    """One file of a source: its dataset-relative path (POSIX), its size, and the name to open it by."""

    path: str
    size: int
    key: str  # the zip member name, or the path below the source directory


class Source(Protocol):
    """A directory tree or an archive of the files of one dataset."""

    label: str

    def members(self) -> tuple[list[Member], list[str], int]:
        """(the files, the names refused as unusable with why, how many clutter files were ignored)."""
        ...

    def open(self, member: Member) -> AbstractContextManager[Plaintext]:
        """A context manager yielding the plaintext stream of `member`."""
        ...


class Plaintext(Protocol):
    """A member's bytes as they are read (a file, or a zip member's decrypting reader)."""

    def read(self, size: int = ..., /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def check_path(path: str) -> str | None:
    """Why `path` is not a usable dataset-relative path, or None when it is."""
    if not path or len(path) > MAX_PATH:
        return "empty or longer than 1024 characters"
    if not path.isprintable() or "\\" in path:
        return "holds a control character, an undecodable byte or a backslash"
    if path.startswith("/"):
        return "is absolute"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' segment"
    return None


def _ignored(path: str) -> bool:
    parts = path.split("/")
    return parts[-1] in IGNORED_NAMES or parts[-1].startswith("._") or any(p in IGNORED_DIRS for p in parts[:-1])


# ------------------------------------------------------------------ a directory tree


class DirectorySource:
    """Every regular file below `root`; symbolic links and special files are refused, not followed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = display_path(root)

    def members(self) -> tuple[list[Member], list[str], int]:
        found: list[Member] = []
        refused: list[str] = []
        ignored = 0

        def fail(exc: OSError) -> None:
            refused.append(f"{display_path(exc.filename or self.root)}: cannot be listed ({exc.strerror})")

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=fail):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for d in list(dirnames):
                if os.path.islink(os.path.join(dirpath, d)):
                    refused.append(f"{_join(rel_dir, d)}: a symbolic link (not followed)")
                    dirnames.remove(d)
            for name in sorted(filenames):
                rel = _join(rel_dir, name)
                if _ignored(rel):
                    ignored += 1
                    continue
                st = os.lstat(os.path.join(dirpath, name))
                if not stat.S_ISREG(st.st_mode):
                    refused.append(f"{rel!r}: not a regular file (links are not followed)")
                elif (why := check_path(rel)) is not None:
                    refused.append(f"{rel!r}: {why}")
                else:
                    found.append(Member(path=rel, size=st.st_size, key=rel))
        return found, refused, ignored

    @contextmanager
    def open(self, member: Member) -> Iterator[Plaintext]:
        # O_NOFOLLOW: a file swapped for a link after the scan is refused, not followed.
        try:
            fd = os.open(self.root / member.key, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise IngestSourceError(f"{member.path}: cannot be read ({exc.strerror})") from None
        with os.fdopen(fd, "rb", buffering=0) as f:
            yield f


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


# ------------------------------------------------------------------ a zip (AES or ZipCrypto)


class ZipSource:
    """The members of a zip, decrypted as they are read; `password` is asked for only if needed."""

    def __init__(self, path: Path, password: Callable[[], SecretStr] | None) -> None:
        self.path = path
        self.label = display_path(path)
        self._ask = password
        self._password: bytes | None = None
        try:
            self._zip = pyzipper.AESZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise IngestSourceError(f"{self.label} cannot be read as a zip ({type(exc).__name__})") from None

    def close(self) -> None:
        self._zip.close()

    def members(self) -> tuple[list[Member], list[str], int]:
        found: list[Member] = []
        refused: list[str] = []
        seen: set[str] = set()
        ignored = 0
        first_encrypted: zipfile.ZipInfo | None = None
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if _ignored(name):
                ignored += 1
                continue
            if (why := check_path(name)) is not None:
                refused.append(f"{name!r}: {why}")
            elif name in seen:
                refused.append(f"{name!r}: appears twice in the zip")
            else:
                seen.add(name)
                found.append(Member(path=name, size=info.file_size, key=name))
                if first_encrypted is None and info.flag_bits & 0x1:
                    first_encrypted = info
        if first_encrypted is not None:
            # Check the password before anything is written: opening a member tests it.
            with self._open_info(first_encrypted):
                pass
        return found, refused, ignored

    def _pwd(self) -> bytes:
        if self._password is None:
            if self._ask is None:
                raise ZipPasswordError(f"{self.label} is encrypted; give its password (--password-file or the prompt)")
            self._password = self._ask().get_secret_value().encode("utf-8")
        return self._password

    @contextmanager
    def _open_info(self, info: zipfile.ZipInfo) -> Iterator[Plaintext]:
        pwd = self._pwd() if info.flag_bits & 0x1 else None
        try:
            stream = self._zip.open(info, pwd=pwd)
        except RuntimeError:  # pyzipper's signal for a missing or wrong password
            raise ZipPasswordError(f"the password does not open {self.label} (member {info.filename!r})") from None
        except (zipfile.BadZipFile, NotImplementedError, OSError) as exc:
            raise IngestSourceError(f"{self.label}: member {info.filename!r} cannot be read ({type(exc).__name__})") from None
        try:
            yield _Checked(stream, self.label, info.filename)
        finally:
            stream.close()

    def open(self, member: Member) -> AbstractContextManager[Plaintext]:
        return self._open_info(self._zip.getinfo(member.key))


class _Checked:
    """A zip member's stream whose integrity failures (HMAC, CRC) become an IngestSourceError."""

    def __init__(self, stream: IO[bytes], label: str, name: str) -> None:
        self._stream = stream
        self._where = f"{label}: member {name!r}"

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._stream.read(size)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise self._error(exc) from None

    def readinto(self, buffer: memoryview, /) -> int | None:
        try:
            return self._stream.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> IngestSourceError:
        return IngestSourceError(f"{self._where} fails its integrity check ({type(exc).__name__}): "
                                 "a wrong password or a damaged archive")


def open_source(path: Path, *, password: Callable[[], SecretStr] | None = None) -> DirectorySource | ZipSource:
    """A directory tree, or a zip file (recognised by its content, not its name)."""
    if path.is_dir():
        return DirectorySource(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise IngestSourceError(f"{display_path(path)} is neither a directory nor a zip file")
        return ZipSource(path, password)
    raise IngestSourceError(f"{display_path(path)} does not exist")
