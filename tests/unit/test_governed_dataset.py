"""GovernedDataset's read path without the service: headers opened once at release, small
payloads read whole and decrypted in memory, large ones streamed, and every file's size, MAC
sequence and sha256 checked on both paths. (Through the real app: tests/integration/test_loader_dataset.py.)"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance.client import GovernedDataset, dataset as dataset_module
from governance.crypto import crypt4gh
from governance.crypto.crypt4gh import CIPHER_SEGMENT_SIZE, SEGMENT_SIZE, encrypt, reseal_headers
from governance.crypto.errors import (
    Crypt4GHIntegrityError,
    Crypt4GHSegmentError,
    Crypt4GHTruncatedError,
    Crypt4GHWrongKeyError,
)

SIZES = [0, 1, 4000, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE + 7]


class Released:
    """Stands in for `Client`: answers the release with headers already sealed to the reader."""

    base_url = "local"

    def __init__(self, files: list[dict[str, object]]) -> None:
        self.files = files

    def _post(self, path: str, payload: dict[str, object]) -> dict[str, object]:
        assert path == "/v1/keys/release"
        return {"released": self.files, "denied": []}


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.reader = X25519PrivateKey.generate()
        self.dataset_key = X25519PrivateKey.generate()
        self.plain: list[bytes] = []
        self.files: list[dict[str, object]] = []

    def add(self, data: bytes, *, sha256: str | None = None) -> int:
        out = io.BytesIO()
        info = encrypt(io.BytesIO(data), out, recipients=[self.dataset_key.public_key()])
        obj = f"ds/{len(self.files):03d}.c4gh"
        (self.root / obj).parent.mkdir(parents=True, exist_ok=True)
        (self.root / obj).write_bytes(out.getvalue()[info.header_length:])
        header = reseal_headers([info.header], reader=self.dataset_key, recipient=self.reader.public_key())[0]
        self.files.append({"resource": f"ds:{len(self.files)}", "header": base64.b64encode(header).decode(),
                           "size": info.size, "sha256": sha256 or hashlib.sha256(data).hexdigest(),
                           "mac_digest": info.mac_digest, "object": obj})
        self.plain.append(data)
        return len(self.files) - 1

    def dataset(self, **kw: Any) -> GovernedDataset[Any]:
        return GovernedDataset(Released(self.files), subset="ds/all", purpose="test",  # type: ignore[arg-type]
                               private_key=self.reader, public_key_id=1, object_root=self.root, **kw)

    def payload(self, index: int) -> Path:
        return self.root / str(self.files[index]["object"])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    for size in SIZES:
        s.add(os.urandom(size))
    return s


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each read path ran."""
    counts = {"whole": 0, "stream": 0}
    whole, stream = crypt4gh.decrypt_payload, crypt4gh.decrypt

    def counted_whole(*args: Any, **kw: Any) -> bytes:
        counts["whole"] += 1
        return whole(*args, **kw)

    def counted_stream(*args: Any, **kw: Any) -> crypt4gh.DecryptedInfo:
        counts["stream"] += 1
        return stream(*args, **kw)

    monkeypatch.setattr(crypt4gh, "decrypt_payload", counted_whole)
    monkeypatch.setattr(crypt4gh, "decrypt", counted_stream)
    return counts


def test_small_payloads_are_read_whole_with_keys_opened_at_release(store: Store, calls: dict[str, int]) -> None:
    data = store.dataset()
    assert all(f.keys for f in data._files)  # opened once, up front
    assert [data[i] for i in range(len(data))] == store.plain
    assert calls == {"whole": len(SIZES), "stream": 0}
    assert "redacted" in repr(data._files[0]) and str(data._files[0].keys) not in repr(data._files[0])


def test_payloads_past_the_limit_stream_and_are_checked_the_same(store: Store, calls: dict[str, int],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_module, "WHOLE_READ_LIMIT", 2 * CIPHER_SEGMENT_SIZE)
    data = store.dataset()
    assert [data[i] for i in range(len(data))] == store.plain
    assert calls == {"whole": len(SIZES) - 1, "stream": 1}
    last = len(SIZES) - 1
    blob = store.payload(last).read_bytes()
    store.payload(last).write_bytes(blob[:CIPHER_SEGMENT_SIZE * 3])  # cut at a segment boundary
    with pytest.raises(Crypt4GHTruncatedError):
        data[last]


def _damage(path: Path, how: str, donor: Path) -> None:
    blob = bytearray(path.read_bytes())
    seg = CIPHER_SEGMENT_SIZE
    if how == "cut at a segment boundary":
        del blob[seg:]
    elif how == "cut mid-segment":
        del blob[-3:]
    elif how == "emptied":
        del blob[:]
    elif how == "extended":
        blob += b"\0"
    elif how == "segments swapped":
        blob[:seg], blob[seg:2 * seg] = blob[seg:2 * seg], blob[:seg]
    elif how == "byte flipped":
        blob[-20] ^= 0x40
    elif how == "replaced by another file's payload":
        blob = bytearray(donor.read_bytes())
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize(("how", "error"), [
    ("cut at a segment boundary", Crypt4GHTruncatedError), ("cut mid-segment", Crypt4GHTruncatedError),
    ("emptied", Crypt4GHTruncatedError), ("extended", Crypt4GHIntegrityError),
    ("segments swapped", Crypt4GHIntegrityError), ("byte flipped", Crypt4GHSegmentError),
    ("replaced by another file's payload", Crypt4GHSegmentError),
])
@pytest.mark.parametrize("verify_sha256", [True, False])
def test_a_damaged_payload_raises_instead_of_returning_data(store: Store, how: str, error: type[Exception],
                                                            verify_sha256: bool, calls: dict[str, int]) -> None:
    target = len(SIZES) - 1  # four segments
    donor = store.add(os.urandom(os.path.getsize(store.payload(target)) - 4 * 28))  # same size, other key
    data = store.dataset(verify_sha256=verify_sha256)
    _damage(store.payload(target), how, store.payload(donor))
    with pytest.raises(error):
        data[target]
    assert calls["stream"] == 0 and data[0] == store.plain[0]


@pytest.mark.parametrize("size", [1, 4000, 2 * SEGMENT_SIZE + 3])
def test_the_manifest_sha256_is_checked_unless_turned_off(tmp_path: Path, size: int) -> None:
    store = Store(tmp_path)
    content = os.urandom(size)
    store.add(content, sha256=hashlib.sha256(b"not this").hexdigest())
    with pytest.raises(Crypt4GHIntegrityError, match="sha256"):
        store.dataset()[0]
    assert store.dataset(verify_sha256=False)[0] == content


def test_a_header_that_does_not_open_fails_when_read_not_when_released(store: Store) -> None:
    stranger = X25519PrivateKey.generate()
    out = io.BytesIO()
    info = encrypt(io.BytesIO(b"meant for someone else"), out, recipients=[stranger.public_key()])
    store.files[1]["header"] = base64.b64encode(info.header).decode()
    data = store.dataset()
    assert data._files[1].keys is None and data[0] == store.plain[0]
    with pytest.raises(Crypt4GHWrongKeyError):
        data[1]


def test_a_pickled_copy_reads_with_the_opened_keys_and_object_root_can_move(store: Store, tmp_path: Path) -> None:
    data = store.dataset()
    copy = pickle.loads(pickle.dumps(data))
    assert [copy[i] for i in range(len(copy))] == store.plain
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    os.rename(tmp_path, moved)
    try:
        with pytest.raises(FileNotFoundError):
            copy[2]
        copy.object_root = moved
        assert copy.object_root == moved and copy[2] == store.plain[2]
    finally:
        os.rename(moved, tmp_path)


def test_read_at_most_reads_whole_files_and_stops_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    for content in (b"", b"x", os.urandom(100_000)):
        path.write_bytes(content)
        assert dataset_module.read_at_most(str(path), len(content) + 1) == content
        assert dataset_module.read_at_most(str(path), 1) == content[:1]
    with pytest.raises(FileNotFoundError):
        dataset_module.read_at_most(str(tmp_path / "missing"), 10)


def test_a_release_answer_with_a_negative_size_is_a_protocol_error(store: Store) -> None:
    from governance.client.errors import ProtocolError

    store.files[0]["size"] = -1
    with pytest.raises(ProtocolError):
        store.dataset()
