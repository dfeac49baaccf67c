"""A map-style dataset over governed, encrypted files, for `torch.utils.data.DataLoader` and the like.

    from governance.client import Client, GovernedDataset

    with Client("https://governance.example", api_key) as gov:
        data = GovernedDataset(gov, subset="genebody/train40", purpose="research/non-commercial/academic",
                               private_key="~/.c4gh/me.sec", passphrase=b"...", public_key_id=3,
                               object_root="/mnt/objects")
    loader = torch.utils.data.DataLoader(data, num_workers=8)

On construction the dataset asks the service to release every file's header re-sealed to your
public key (in chunks); each call is a decision and an audited release, and each released
header is opened to its data key there and then, once. After that the service is off the data
path: `data[i]` reads `object_root/<object>` (small payloads in one read) and decrypts locally,
checking the plaintext size, the sequence of segment MACs and the sha256 the manifest
recorded, so a truncated, extended, reordered or swapped payload is an error, never data.

A revoked grant stops new releases: a new dataset, or `refresh()`, raises `AccessDeniedError`
naming `grant_revoked`. Headers already released keep decrypting the files they were released
for; that is what a released key means (DESIGN §4), and the release is on record.

Pickling (DataLoader worker processes) keeps the released headers, their data keys and the
private key's raw bytes and drops the HTTP client; a worker only ever reads and decrypts. (The
data keys open nothing the private key and the headers beside them do not already open.)
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import SecretBytes, SecretStr

from governance.client.client import Client
from governance.client.errors import AccessDeniedError, GovernanceClientError, ProtocolError
from governance.client.results import denied_message
from governance.crypto import crypt4gh
from governance.crypto.crypt4gh import ExpectedFile
from governance.crypto.errors import Crypt4GHError
from governance.crypto.header import ReaderKey
from governance.crypto.keys import load_private_key
from governance.policy.decision import Decision

T = TypeVar("T")
RELEASE_CHUNK = 5_000  # files per POST /v1/keys/release
WHOLE_READ_LIMIT = 16 << 20  # payloads up to this size are read whole; larger ones stream in constant memory


class _Released:
    """One released file: its header for our key and what decryption must find.

    Worked out once, when the header is released, so that reading it does no more than it
    must: `keys`, the data keys the header holds for our key (None when it would not open:
    reading the file then raises the header's error), `path`, the payload file, `length`, the
    payload's size, and `expected`, the manifest's facts in the form the checks compare.
    """

    __slots__ = ("resource", "header", "size", "sha256", "mac_digest", "object", "keys", "path", "length", "expected")

    def __init__(self, resource: str, header: bytes, size: int, sha256: str, mac_digest: str, object: str,
                 keys: tuple[bytes, ...] | None = None, path: str = "") -> None:
        self.resource = resource
        self.header = header
        self.size = size
        self.sha256 = sha256
        self.mac_digest = mac_digest
        self.object = object
        self.keys = keys
        self.path = path
        self.length = crypt4gh.payload_length(size)
        self.expected = ExpectedFile(size=size, mac_digest=mac_digest.lower(), sha256=sha256.lower())

    def __repr__(self) -> str:
        return f"_Released({self.resource!r}, size={self.size}, keys=<redacted>)"

    def __getstate__(self) -> tuple[str, bytes, int, str, str, str, tuple[bytes, ...] | None, str]:
        return (self.resource, self.header, self.size, self.sha256, self.mac_digest, self.object, self.keys, self.path)

    def __setstate__(self, s: tuple[str, bytes, int, str, str, str, tuple[bytes, ...] | None, str]) -> None:
        self.__init__(*s)  # type: ignore[misc]


class _Prefixed:
    """The released header, then the payload file: one stream for `crypt4gh.decrypt`."""

    def __init__(self, header: bytes, payload: io.BufferedReader) -> None:
        self._head = memoryview(header)
        self._pos = 0
        self._payload = payload

    def read(self, size: int = -1, /) -> bytes:
        if self._pos < len(self._head):
            end = len(self._head) if size < 0 else min(len(self._head), self._pos + size)
            out = bytes(self._head[self._pos:end])
            self._pos = end
            return out
        return self._payload.read(size)

    def readinto(self, buffer: memoryview, /) -> int | None:
        if self._pos < len(self._head):
            n = min(len(buffer), len(self._head) - self._pos)
            buffer[:n] = self._head[self._pos:self._pos + n]
            self._pos += n
            return n
        return self._payload.readinto(buffer)


class GovernedDataset(Generic[T]):
    """`len()` files; `dataset[i]` is file i's plaintext bytes, or `transform(bytes)`.

    `resources` names files (`dataset:path`), or `subset` (`dataset/subset`) takes every
    ingested file of a subset. `private_key` is an `X25519PrivateKey` or the path of a Crypt4GH
    private key file (with `passphrase` when it is locked); `public_key_id` is the id of its
    public half registered with the service (`POST /v1/me/keys`). Denied files are left out
    (`denied` lists them with their decisions); with `strict=True` any denial raises
    `AccessDeniedError`, and it is raised anyway when nothing at all is permitted."""

    def __init__(self, client: Client, resources: Sequence[str] | None = None, *, subset: str | None = None,
                 purpose: str, private_key: X25519PrivateKey | str | os.PathLike[str],
                 passphrase: bytes | str | SecretStr | SecretBytes | None = None, public_key_id: int,
                 object_root: str | os.PathLike[str], transform: Callable[[bytes], T] | None = None,
                 strict: bool = False, chunk_size: int = RELEASE_CHUNK, verify_sha256: bool = True) -> None:
        if (resources is None) == (subset is None):
            raise ValueError("give either resources (dataset:path names) or subset (dataset/subset)")
        if isinstance(resources, str | bytes):
            raise TypeError("resources must be a list of file names, not one string")
        if not 1 <= chunk_size <= 100_000:
            raise ValueError(f"chunk_size must be between 1 and 100,000, not {chunk_size}")
        if isinstance(private_key, X25519PrivateKey):
            key = private_key
        else:
            secret: bytes | SecretStr | SecretBytes | None = passphrase.encode() if isinstance(passphrase, str) else passphrase
            key = load_private_key(Path(private_key).expanduser(), passphrase=secret)
        # SECURITY: kept as raw bytes so the dataset pickles; __repr__ never shows them.
        self._key_bytes = key.private_bytes_raw()
        self._key: ReaderKey | None = ReaderKey(key)  # one X25519 exchange per writer key, not per file
        self._client: Client | None = client
        self.resources = tuple(resources) if resources is not None else None
        self.subset = subset
        self.purpose = purpose
        self.public_key_id = public_key_id
        self._object_root = Path(object_root)
        self.transform = transform
        self.strict = strict
        self.chunk_size = chunk_size
        self.verify_sha256 = verify_sha256
        self._files: list[_Released] = []
        self.denied: tuple[tuple[str, Decision], ...] = ()
        self.refresh()

    # ------------------------------------------------------------------ releases

    def refresh(self) -> None:
        """Ask for every header again (a new, audited release): picks up new grants, and raises
        `AccessDeniedError` (with the reasons, e.g. grant_revoked) when access has ended."""
        client = self._client
        if client is None:
            raise GovernanceClientError("this copy of the dataset has no client (it was pickled into a worker); "
                                        "refresh the original")
        released: list[_Released] = []
        denied: list[tuple[str, Decision]] = []
        if self.subset is not None:
            self._release(client, {"subset": self.subset}, released, denied)
        else:
            assert self.resources is not None
            names = list(dict.fromkeys(self.resources))
            for start in range(0, len(names), self.chunk_size):
                self._release(client, {"files": names[start:start + self.chunk_size]}, released, denied)
        if denied and (self.strict or not released):
            total = len(released) + len(denied)
            raise AccessDeniedError(denied_message("read", self.purpose, denied, total=total, base_url=client.base_url),
                                    action="read", purpose=self.purpose, denied=denied)
        if self._key is None:
            self._key = ReaderKey(X25519PrivateKey.from_private_bytes(self._key_bytes))
        root = os.fspath(self._object_root)
        for f in released:
            # Once per release, not per read: one packet decryption per header (and one X25519
            # exchange per writer key). A header that does not open is left to fail when read.
            try:
                f.keys = crypt4gh.payload_keys(f.header, reader=self._key)
            except Crypt4GHError:
                f.keys = None
            f.path = os.path.join(root, f.object)
        self._files = released
        self.denied = tuple(denied)

    def _release(self, client: Client, what: dict[str, Any], released: list[_Released],
                 denied: list[tuple[str, Decision]]) -> None:
        body = client._post("/v1/keys/release", {**what, "public_key_id": self.public_key_id, "purpose": self.purpose})
        try:
            for f in body["released"]:
                released.append(_Released(str(f["resource"]), _b64(f["header"]), _size(f["size"]), str(f["sha256"]),
                                          str(f["mac_digest"]), str(f["object"])))
            for d in body["denied"]:
                denied.append((str(d["resource"]), Decision.model_validate(d["decision"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"POST {client.base_url}/v1/keys/release answered in a shape the client cannot read "
                                f"({type(exc).__name__})") from None

    @property
    def object_root(self) -> Path:
        """The directory the payload files are read from."""
        return self._object_root

    @object_root.setter
    def object_root(self, value: str | os.PathLike[str]) -> None:
        self._object_root = Path(value)
        root = os.fspath(self._object_root)
        for f in self._files:
            f.path = os.path.join(root, f.object)

    # ------------------------------------------------------------------ the dataset protocol

    def __len__(self) -> int:
        return len(self._files)

    @property
    def permitted_resources(self) -> list[str]:
        return [f.resource for f in self._files]

    @overload
    def __getitem__(self: GovernedDataset[bytes], index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: int) -> T: ...

    def __getitem__(self, index: int) -> Any:
        f = self._files[index]
        if f.keys is not None and f.length <= WHOLE_READ_LIMIT and self.verify_sha256:
            data = crypt4gh.decrypt_payload(read_at_most(f.path, f.length + 1), f.keys, f.expected)  # read(f), inlined
        else:
            data = self.read(f)
        return self.transform(data) if self.transform is not None else data

    def read(self, f: _Released) -> bytes:
        """Decrypt one released file, checking size, MAC sequence and (by default) sha256.

        A payload up to `WHOLE_READ_LIMIT` bytes is read in one call and decrypted in memory
        with the data keys opened at release (`crypt4gh.decrypt_payload`); a larger one, or one
        whose header did not open, streams through `crypt4gh.decrypt`. The same checks either way.
        """
        expected = f.expected if self.verify_sha256 else ExpectedFile(size=f.size, mac_digest=f.expected.mac_digest)
        if f.keys is not None and f.length <= WHOLE_READ_LIMIT:
            # One byte more than the manifest allows, so that a payload that grew is refused.
            return crypt4gh.decrypt_payload(read_at_most(f.path, f.length + 1), f.keys, expected)
        if self._key is None:
            self._key = ReaderKey(X25519PrivateKey.from_private_bytes(self._key_bytes))
        out = io.BytesIO()
        with open(f.path, "rb") as payload:
            crypt4gh.decrypt(_Prefixed(f.header, payload), out, reader=self._key, expected=expected)
        return out.getvalue()

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None  # SECURITY: no open connection pool (or API key) goes to a worker
        state["_key"] = None  # a private key object does not pickle; the raw bytes do
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        what = f"subset={self.subset!r}" if self.subset is not None else f"{len(self.resources or ())} resources"
        return f"GovernedDataset({what}, purpose={self.purpose!r}, files={len(self)}, private_key=<redacted>)"


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def read_at_most(path: str, limit: int) -> bytes:
    """Up to `limit` bytes from the start of `path`, fewer only if the file is shorter.

    No file object: an open, reads until `limit` or the end of the file (a file shorter than
    `limit` takes a second read to see its end), a close. The benchmark's plaintext baseline
    reads its files with this too, so the loader epoch compares decryption, not I/O styles."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        data = os.read(fd, limit)
        if len(data) < limit and data:
            parts = [data]
            have = len(data)
            while have < limit and (more := os.read(fd, limit - have)):
                parts.append(more)
                have += len(more)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def _size(value: object) -> int:
    if not isinstance(value, int | str):
        raise TypeError("size is not a number")
    size = int(value)
    if size < 0:
        raise ValueError("a negative file size")
    return size


def _b64(text: object) -> bytes:
    import base64
    import binascii

    if not isinstance(text, str):
        raise TypeError("header is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("header is not base64") from None
