"""Crypt4GH v1 in pure code: round trips, refusal of damaged input, re-sealing, key files.

Interoperability with the reference `crypt4gh` package is in
tests/integration/test_crypt4gh_interop.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from governance.crypto import crypt4gh, keys
from governance.crypto.crypt4gh import (
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    EncryptedInfo,
    ExpectedFile,
    decrypt,
    decrypt_to_path,
    encrypt,
    encrypted_size,
    open_header,
    read_header,
    reseal_header,
    reseal_headers,
)
from governance.crypto.errors import (
    Crypt4GHError,
    Crypt4GHHeaderError,
    Crypt4GHIntegrityError,
    Crypt4GHKeyFileError,
    Crypt4GHSegmentError,
    Crypt4GHTruncatedError,
    Crypt4GHWrongKeyError,
)
from governance.crypto.header import U32, U64, data_encryption_packet, seal_packets
from governance.errors import GovernanceError

SIZES = [0, 1, 65_535, 65_536, 65_537, 300 * 1024]


@pytest.fixture(scope="module")
def reader() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def _encrypt(data: bytes, reader: X25519PrivateKey, *others: X25519PrivateKey) -> tuple[bytes, EncryptedInfo]:
    out = io.BytesIO()
    info = encrypt(io.BytesIO(data), out, recipients=[reader.public_key(), *(o.public_key() for o in others)])
    return out.getvalue(), info


def _decrypt(blob: bytes, reader: X25519PrivateKey, expected: ExpectedFile | None = None) -> bytes:
    out = io.BytesIO()
    decrypt(io.BytesIO(blob), out, reader=reader, expected=expected)
    return out.getvalue()


def _expected(info: EncryptedInfo, *, sha: bool = True) -> ExpectedFile:
    return ExpectedFile(size=info.size, mac_digest=info.mac_digest, sha256=info.sha256 if sha else None)


def _segments(blob: bytes, header_length: int) -> list[bytes]:
    body = blob[header_length:]
    return [body[i:i + CIPHER_SEGMENT_SIZE] for i in range(0, len(body), CIPHER_SEGMENT_SIZE)]


class ChunkedSource(io.RawIOBase):
    """A stream that hands out at most the next chunk size per read, like a pipe or a socket."""

    def __init__(self, data: bytes, chunks: list[int]) -> None:
        self._data, self._pos, self._chunks, self._i = data, 0, chunks or [1], 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        step = self._chunks[self._i % len(self._chunks)]
        self._i += 1
        n = min(len(buffer), step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_recovers_plaintext_and_manifest_facts(size: int, reader: X25519PrivateKey) -> None:
    data = os.urandom(size)
    blob, info = _encrypt(data, reader)
    assert len(blob) == encrypted_size(size, info.header_length)
    assert blob.startswith(info.header) and blob[:12] == b"crypt4gh\x01\x00\x00\x00"
    assert info.size == size and info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.segments == -(-size // SEGMENT_SIZE)
    macs = b"".join(seg[-16:] for seg in _segments(blob, info.header_length))
    assert info.mac_digest == hashlib.sha256(macs).hexdigest()
    assert _decrypt(blob, reader, _expected(info)) == data


def test_every_recipient_decrypts_and_a_stranger_cannot(reader: X25519PrivateKey) -> None:
    second, third, stranger = (X25519PrivateKey.generate() for _ in range(3))
    data = os.urandom(70_000)
    blob, info = _encrypt(data, reader, second, third)
    for key in (reader, second, third):
        assert _decrypt(blob, key, _expected(info)) == data
    with pytest.raises(Crypt4GHWrongKeyError):
        _decrypt(blob, stranger)


def test_a_static_writer_key_is_accepted(reader: X25519PrivateKey) -> None:
    writer = X25519PrivateKey.generate()
    out = io.BytesIO()
    encrypt(io.BytesIO(b"hello"), out, recipients=[reader.public_key()], writer=writer)
    assert out.getvalue()[24:56] == writer.public_key().public_bytes_raw()
    assert _decrypt(out.getvalue(), reader) == b"hello"


def test_decrypt_reports_what_encrypt_recorded(reader: X25519PrivateKey) -> None:
    data = os.urandom(200_000)
    blob, info = _encrypt(data, reader)
    seen = decrypt(io.BytesIO(blob), io.BytesIO(), reader=reader, sha256=True)
    assert (seen.size, seen.mac_digest, seen.sha256, seen.segments) == (info.size, info.mac_digest, info.sha256, info.segments)


def test_short_reads_from_pipes_are_handled(reader: X25519PrivateKey) -> None:
    data = os.urandom(3 * SEGMENT_SIZE + 17)
    out = io.BytesIO()
    info = encrypt(ChunkedSource(data, [1000, 7, 65_536]), out, recipients=[reader.public_key()])
    back = io.BytesIO()
    decrypt(ChunkedSource(out.getvalue(), [333, 70_000]), back, reader=reader, expected=_expected(info))
    assert back.getvalue() == data


LARGE = SEGMENT_SIZE + SEGMENT_SIZE * crypt4gh.BATCH  # past this, the sha256 is computed in a second thread


@pytest.mark.parametrize("size", [LARGE - 1, LARGE, LARGE + 1, 2 * LARGE, 5 * LARGE + 12_345])
def test_the_threaded_sha256_and_the_output_match_the_serial_ones(size: int, reader: X25519PrivateKey,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []

    class Counted(crypt4gh._HashingThread):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            started.append(self)

    monkeypatch.setattr(crypt4gh, "_HashingThread", Counted)
    data = os.urandom(size)
    before = threading.active_count()
    out = io.BytesIO()
    info = encrypt(ChunkedSource(data, [70_000, 1_000_000, 13]), out, recipients=[reader.public_key()])
    assert len(started) == (size >= LARGE) and threading.active_count() == before  # the thread has ended
    blob = out.getvalue()
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == size
    assert len(blob) == encrypted_size(size, info.header_length) and info.segments == -(-size // SEGMENT_SIZE)
    assert info.mac_digest == hashlib.sha256(b"".join(s[-16:] for s in _segments(blob, info.header_length))).hexdigest()
    assert _decrypt(blob, reader, _expected(info)) == data  # decrypt hashes in a second thread too
    assert len(started) == 2 * (size >= LARGE) and threading.active_count() == before
    seen = decrypt(ChunkedSource(blob, [99_999, 5]), io.BytesIO(), reader=reader, sha256=True)
    assert seen.sha256 == info.sha256 and len(started) == 3 * (size >= LARGE)
    plain = encrypt(io.BytesIO(data), io.BytesIO(), recipients=[reader.public_key()], sha256=False)
    assert plain.sha256 is None and plain.segments == info.segments and len(started) == 3 * (size >= LARGE)
    decrypt(io.BytesIO(blob), io.BytesIO(), reader=reader, expected=_expected(info, sha=False))
    assert len(started) == 3 * (size >= LARGE)  # no sha256 wanted, no thread


def test_a_large_file_with_a_wrong_sha256_or_cut_short_is_refused_and_the_thread_ends(reader: X25519PrivateKey) -> None:
    data = os.urandom(3 * LARGE)
    blob, info = _encrypt(data, reader)
    before = threading.active_count()
    wrong = ExpectedFile(size=info.size, mac_digest=info.mac_digest, sha256=hashlib.sha256(b"x").hexdigest())
    with pytest.raises(Crypt4GHIntegrityError, match="sha256"):
        _decrypt(blob, reader, wrong)
    flipped = bytearray(blob)
    flipped[-100] ^= 1  # the last segment, long after the thread started
    with pytest.raises(Crypt4GHSegmentError):
        _decrypt(bytes(flipped), reader, _expected(info))
    with pytest.raises(Crypt4GHTruncatedError):
        _decrypt(blob[:-CIPHER_SEGMENT_SIZE], reader, _expected(info))
    assert threading.active_count() == before


def test_a_source_failing_mid_stream_stops_the_hashing_thread(reader: X25519PrivateKey) -> None:
    class Failing(ChunkedSource):
        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self._pos >= 3 * LARGE:
                raise OSError("disk gone")
            return super().readinto(buffer)

    before = threading.active_count()
    with pytest.raises(OSError, match="disk gone"):
        encrypt(Failing(os.urandom(4 * LARGE), [LARGE]), io.BytesIO(), recipients=[reader.public_key()])
    assert threading.active_count() == before


def test_an_error_in_the_hashing_thread_reaches_the_caller() -> None:
    class Broken:
        def update(self, data: memoryview) -> None:
            raise MemoryError("no room")

    hasher = crypt4gh._HashingThread(Broken(), count=2, size=16)  # type: ignore[arg-type]
    hasher.submit(hasher.take(), 16)
    with pytest.raises(MemoryError):
        hasher.take()
        hasher.take()  # the hasher gives buffers back even after failing, so this never hangs
    with pytest.raises(MemoryError):
        hasher.finish()


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=0, max_value=4 * SEGMENT_SIZE + 5),
       chunks=st.lists(st.integers(min_value=1, max_value=3 * SEGMENT_SIZE), min_size=1, max_size=5))
def test_property_decrypt_inverts_encrypt_for_any_size_and_chunking(size: int, chunks: list[int]) -> None:
    key = X25519PrivateKey.generate()
    data = os.urandom(size)
    out = io.BytesIO()
    info = encrypt(ChunkedSource(data, chunks), out, recipients=[key.public_key()])
    back = io.BytesIO()
    decrypt(ChunkedSource(out.getvalue(), chunks[::-1]), back, reader=key, expected=_expected(info))
    assert back.getvalue() == data


def test_several_data_keys_in_one_header_are_all_tried(reader: X25519PrivateKey) -> None:
    """The spec allows parts of the payload under different data keys."""
    key_a, key_b = os.urandom(32), os.urandom(32)
    header = seal_packets([data_encryption_packet(key_a), data_encryption_packet(key_b)], recipients=[reader.public_key()])
    segments = []
    for key, plain in ((key_a, b"a" * SEGMENT_SIZE), (key_b, b"b" * 10), ):
        nonce = os.urandom(12)
        segments.append(nonce + ChaCha20Poly1305(key).encrypt(nonce, plain, None))
    assert _decrypt(header + b"".join(segments), reader) == b"a" * SEGMENT_SIZE + b"b" * 10
    assert len(open_header(header, reader=reader).keys) == 2


# --- damaged input is refused ----------------------------------------------------------------


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:]


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "mac"])
def test_a_tampered_payload_byte_is_refused(where: str, reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(os.urandom(150_000), reader)
    start = info.header_length + CIPHER_SEGMENT_SIZE  # segment 1
    offset = {"nonce": 3, "ciphertext": 500, "mac": CIPHER_SEGMENT_SIZE - 2}[where]
    with pytest.raises(Crypt4GHSegmentError, match="segment 1 failed authentication"):
        _decrypt(_flip(blob, start + offset), reader)


def test_a_tampered_header_packet_no_longer_opens(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(b"secret", reader)
    with pytest.raises(Crypt4GHWrongKeyError):
        _decrypt(_flip(blob, info.header_length - 5), reader)  # inside the sealed packet
    with pytest.raises(Crypt4GHWrongKeyError):
        _decrypt(_flip(blob, 30), reader)  # the writer's public key


@pytest.mark.parametrize(("at", "value", "message"), [
    (0, b"crypt5gh", "not a Crypt4GH file"),
    (8, struct.pack("<I", 2), "version 2 is not supported"),
    (12, struct.pack("<I", 0), "has no packets"),
    (12, struct.pack("<I", 10**6), "more than the limit"),
    (16, struct.pack("<I", 3), "impossible length"),
])
def test_a_malformed_preamble_or_packet_length_is_refused(at: int, value: bytes, message: str, reader: X25519PrivateKey) -> None:
    blob, _ = _encrypt(b"x", reader)
    with pytest.raises(Crypt4GHHeaderError, match=message):
        _decrypt(blob[:at] + value + blob[at + len(value):], reader)


def test_a_header_cut_short_is_refused(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(b"x", reader)
    for cut in (0, 10, 20, info.header_length - 1):
        with pytest.raises(Crypt4GHHeaderError):
            _decrypt(blob[:cut], reader)


def test_the_wrong_key_is_refused_without_naming_it(reader: X25519PrivateKey) -> None:
    blob, _ = _encrypt(b"x" * 100, reader)
    wrong = X25519PrivateKey.generate()
    with pytest.raises(Crypt4GHWrongKeyError) as caught:
        _decrypt(blob, wrong)
    text = str(caught.value)
    assert wrong.private_bytes_raw().hex() not in text and "x" * 10 not in text
    assert isinstance(caught.value, GovernanceError)


def test_a_file_cut_mid_segment_is_refused(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(os.urandom(3 * SEGMENT_SIZE), reader)
    cut = blob[:info.header_length + CIPHER_SEGMENT_SIZE + 1000]
    with pytest.raises(Crypt4GHSegmentError, match="segment 1"):
        _decrypt(cut, reader)
    with pytest.raises(Crypt4GHTruncatedError, match="segment 1"):
        _decrypt(cut, reader, _expected(info))
    with pytest.raises(Crypt4GHTruncatedError, match="too short for a segment"):
        _decrypt(blob[:info.header_length + CIPHER_SEGMENT_SIZE + 20], reader)


def test_a_file_cut_at_a_segment_boundary_is_caught_only_by_the_manifest(reader: X25519PrivateKey) -> None:
    """The format authenticates segments, not their number: the cut file decrypts to a prefix."""
    data = os.urandom(3 * SEGMENT_SIZE + 5)
    blob, info = _encrypt(data, reader)
    cut = blob[:info.header_length + 2 * CIPHER_SEGMENT_SIZE]
    assert _decrypt(cut, reader) == data[:2 * SEGMENT_SIZE]
    with pytest.raises(Crypt4GHTruncatedError, match=f"ends after {2 * SEGMENT_SIZE} plaintext bytes"):
        _decrypt(cut, reader, _expected(info))


def test_swapped_segments_are_caught_by_the_mac_sequence(reader: X25519PrivateKey) -> None:
    data = os.urandom(3 * SEGMENT_SIZE)
    blob, info = _encrypt(data, reader)
    s = _segments(blob, info.header_length)
    swapped = info.header + s[1] + s[0] + s[2]
    assert _decrypt(swapped, reader) != data  # "succeeds" to wrong data without the manifest
    with pytest.raises(Crypt4GHIntegrityError, match="reordered, duplicated or replaced"):
        _decrypt(swapped, reader, _expected(info, sha=False))


def test_duplicated_segments_are_caught(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(os.urandom(2 * SEGMENT_SIZE + 9), reader)
    s = _segments(blob, info.header_length)
    with pytest.raises(Crypt4GHIntegrityError, match="longer than"):
        _decrypt(info.header + s[0] + s[0] + s[1] + s[2], reader, _expected(info))
    with pytest.raises(Crypt4GHIntegrityError, match="MACs differs"):
        _decrypt(info.header + s[0] + s[0] + s[2], reader, _expected(info, sha=False))


def test_a_wrong_sha256_in_the_manifest_is_refused(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(b"payload", reader)
    with pytest.raises(Crypt4GHIntegrityError, match="sha256"):
        _decrypt(blob, reader, ExpectedFile(size=info.size, mac_digest=info.mac_digest, sha256="00" * 32))


def test_edit_lists_are_refused_rather_than_ignored(reader: X25519PrivateKey) -> None:
    edit = U32.pack(1) + U32.pack(2) + U64.pack(1) + U64.pack(2)
    header = seal_packets([data_encryption_packet(os.urandom(32)), edit], recipients=[reader.public_key()])
    assert open_header(header, reader=reader).edit_list == (1, 2)
    with pytest.raises(Crypt4GHHeaderError, match="edit list"):
        _decrypt(header, reader)


def test_data_keys_never_print(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(b"x", reader)
    opened = open_header(info.header, reader=reader)
    assert opened.keys[0].hex() not in repr(opened) and "redacted" in repr(opened)


def test_every_refusal_is_a_crypt4gh_error() -> None:
    for cls in (Crypt4GHHeaderError, Crypt4GHWrongKeyError, Crypt4GHSegmentError, Crypt4GHTruncatedError,
                Crypt4GHIntegrityError, Crypt4GHKeyFileError):
        assert issubclass(cls, Crypt4GHError) and issubclass(cls, GovernanceError)


# --- decrypt_to_path -------------------------------------------------------------------------


def test_decrypt_to_path_renames_only_verified_output(tmp_path: Path, reader: X25519PrivateKey) -> None:
    data = os.urandom(100_000)
    blob, info = _encrypt(data, reader)
    target = tmp_path / "out.bin"
    decrypt_to_path(io.BytesIO(blob), target, reader=reader, expected=_expected(info))
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_decrypt_to_path_leaves_nothing_wrong_under_the_final_name(tmp_path: Path, reader: X25519PrivateKey) -> None:
    data = os.urandom(2 * SEGMENT_SIZE)
    blob, info = _encrypt(data, reader)
    target = tmp_path / "out.bin"
    truncated = blob[:info.header_length + CIPHER_SEGMENT_SIZE]
    with pytest.raises(Crypt4GHTruncatedError):
        decrypt_to_path(io.BytesIO(truncated), target, reader=reader, expected=_expected(info))
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous")
    with pytest.raises(Crypt4GHIntegrityError):
        decrypt_to_path(io.BytesIO(blob), target, reader=reader,
                        expected=ExpectedFile(info.size, info.mac_digest, sha256="11" * 32))
    assert target.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


# --- re-sealing ------------------------------------------------------------------------------


def test_a_resealed_header_opens_the_untouched_payload_for_the_recipient_only(reader: X25519PrivateKey) -> None:
    data = os.urandom(140_000)
    other = X25519PrivateKey.generate()
    blob, info = _encrypt(data, reader, other)
    user = X25519PrivateKey.generate()
    header = reseal_header(info.header, reader=reader, recipient=user.public_key())
    struct_count = struct.unpack_from("<I", header, 12)[0]
    assert struct_count == 1  # packets for other readers are not passed on
    released = header + blob[info.header_length:]
    assert _decrypt(released, user, _expected(info)) == data
    for key in (reader, other):
        with pytest.raises(Crypt4GHWrongKeyError):
            _decrypt(released, key)


def test_batch_and_ephemeral_reseals_open_for_the_recipient(reader: X25519PrivateKey) -> None:
    files = [_encrypt(os.urandom(n), reader) for n in (0, 10, 70_000)]
    user = X25519PrivateKey.generate()
    batch = reseal_headers([info.header for _, info in files], reader=reader, recipient=user.public_key())
    ephemeral = X25519PrivateKey.generate()
    for (blob, info), header in zip(files, batch, strict=True):
        assert header[24:56] == reader.public_key().public_bytes_raw()  # writer defaults to the dataset key
        assert _decrypt(header + blob[info.header_length:], user, _expected(info)) is not None
        single = reseal_header(info.header, reader=reader, recipient=user.public_key(), writer=ephemeral)
        assert single[24:56] == ephemeral.public_key().public_bytes_raw()
        assert len(_decrypt(single + blob[info.header_length:], user, _expected(info))) == info.size


def test_reseal_needs_a_key_that_opens_the_header(reader: X25519PrivateKey) -> None:
    _, info = _encrypt(b"x", reader)
    with pytest.raises(Crypt4GHWrongKeyError, match="cannot be re-sealed"):
        reseal_header(info.header, reader=X25519PrivateKey.generate(), recipient=reader.public_key())


def test_read_header_leaves_the_stream_at_the_payload(reader: X25519PrivateKey) -> None:
    blob, info = _encrypt(os.urandom(10), reader)
    stream = io.BytesIO(blob)
    assert read_header(stream) == info.header
    assert stream.read() == blob[info.header_length:]


# --- key files -------------------------------------------------------------------------------


def test_public_key_file_round_trips(tmp_path: Path, reader: X25519PrivateKey) -> None:
    path = tmp_path / "user.pub"
    keys.save_public_key(path, reader.public_key())
    assert path.read_text().startswith("-----BEGIN CRYPT4GH PUBLIC KEY-----\n")
    assert keys.load_public_key(path).public_bytes_raw() == reader.public_key().public_bytes_raw()


@pytest.mark.parametrize("passphrase", [None, b"correct horse", SecretStr("correct horse")])
def test_private_key_file_round_trips(tmp_path: Path, passphrase: bytes | SecretStr | None, reader: X25519PrivateKey) -> None:
    path = tmp_path / "user.sec"
    keys.save_private_key(path, reader, passphrase=passphrase, comment=b"alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = keys.load_private_key(path, passphrase=passphrase)
    assert back.private_bytes_raw() == reader.private_bytes_raw()


def test_a_locked_private_key_refuses_a_wrong_or_missing_passphrase(reader: X25519PrivateKey) -> None:
    text = keys.format_private_key(reader, passphrase=b"right-passphrase")
    with pytest.raises(Crypt4GHKeyFileError, match="passphrase is wrong") as caught:
        keys.parse_private_key(text, passphrase=b"wrong-passphrase")
    assert "wrong-passphrase" not in str(caught.value) and "right-passphrase" not in str(caught.value)
    with pytest.raises(Crypt4GHKeyFileError, match="no passphrase was given"):
        keys.parse_private_key(text)


@pytest.mark.parametrize("text", [
    b"", b"not a key", b"-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAAA\n-----END CRYPT4GH PUBLIC KEY-----\n",
    b"-----BEGIN CRYPT4GH PRIVATE KEY-----\n!!!!\n-----END CRYPT4GH PRIVATE KEY-----\n",
    b"-----BEGIN CRYPT4GH PRIVATE KEY-----\nYzRnaC12MQAEbm9uZQ==\n-----END CRYPT4GH PRIVATE KEY-----\n",
])
def test_malformed_key_files_are_refused_with_a_key_file_error(text: bytes) -> None:
    with pytest.raises(Crypt4GHKeyFileError):
        keys.parse_private_key(text)
    with pytest.raises(Crypt4GHKeyFileError):
        keys.parse_public_key(text)


def test_a_reader_key_derives_one_packet_key_per_writer_across_many_headers_and_still_refuses_others() -> None:
    import io as _io

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey as _Key

    from governance.crypto.crypt4gh import decrypt as _decrypt
    from governance.crypto.crypt4gh import encrypt as _encrypt
    from governance.crypto.header import ReaderKey, reseal_headers

    class Counting:
        """Stands in for the reader's private key and counts its X25519 exchanges."""

        def __init__(self, key: _Key) -> None:
            self.key, self.exchanges = key, 0

        def exchange(self, peer: object) -> bytes:
            self.exchanges += 1
            return self.key.exchange(peer)  # type: ignore[arg-type]

        def public_key(self) -> object:
            return self.key.public_key()

        def public_bytes_raw(self) -> bytes:
            return self.key.public_key().public_bytes_raw()

    dataset, reader, stranger = _Key.generate(), _Key.generate(), _Key.generate()
    files = []
    for i in range(20):
        out = _io.BytesIO()
        info = _encrypt(_io.BytesIO(bytes([i]) * 3000), out, recipients=[dataset.public_key()])
        files.append((info, out.getvalue()[len(info.header):]))
    headers = reseal_headers([f[0].header for f in files], reader=dataset, recipient=reader.public_key())
    counting = Counting(reader)
    keyring = ReaderKey(counting)  # type: ignore[arg-type]
    for i, ((_, payload), header) in enumerate(zip(files, headers, strict=True)):
        out = _io.BytesIO()
        _decrypt(_io.BytesIO(header + payload), out, reader=keyring)
        assert out.getvalue() == bytes([i]) * 3000
    assert counting.exchanges == 1  # one writer (the dataset key) for all twenty headers
    with pytest.raises(Crypt4GHError):
        _decrypt(_io.BytesIO(headers[0] + files[0][1]), _io.BytesIO(), reader=ReaderKey(stranger))
    assert "secret" in repr(keyring) and str(reader.private_bytes_raw()) not in repr(keyring)


# --- whole payloads in memory (the loader's path) ----------------------------------------------


def _payload(data: bytes, reader: X25519PrivateKey) -> tuple[bytes, EncryptedInfo, tuple[bytes, ...]]:
    blob, info = _encrypt(data, reader)
    return blob[info.header_length:], info, crypt4gh.payload_keys(info.header, reader=reader)


@pytest.mark.parametrize("size", SIZES)
def test_a_payload_in_memory_decrypts_like_the_stream(size: int, reader: X25519PrivateKey) -> None:
    data = os.urandom(size)
    payload, info, keys = _payload(data, reader)
    assert len(payload) == crypt4gh.payload_length(size)
    assert crypt4gh.decrypt_payload(payload, keys, _expected(info)) == data
    assert crypt4gh.decrypt_payload(bytearray(payload), keys, _expected(info, sha=False)) == data
    upper = ExpectedFile(size=info.size, mac_digest=info.mac_digest.upper(), sha256=(info.sha256 or "").upper())
    assert crypt4gh.decrypt_payload(memoryview(payload), keys, upper) == data


def _damaged(payload: bytes, how: str) -> bytes:
    seg = CIPHER_SEGMENT_SIZE
    if how == "cut at a segment boundary":
        return payload[:seg]
    if how == "cut mid-segment":
        return payload[:-1]
    if how == "extended":
        return payload + b"\0"
    if how == "segments swapped":
        return payload[seg:2 * seg] + payload[:seg] + payload[2 * seg:]
    if how == "segment duplicated":
        return payload[:seg] + payload[:seg] + payload[2 * seg:]
    flipped = bytearray(payload)
    flipped[{"first byte flipped": 20, "last MAC byte flipped": -1}[how]] ^= 1
    return bytes(flipped)


@pytest.mark.parametrize(("how", "error"), [
    ("cut at a segment boundary", Crypt4GHTruncatedError), ("cut mid-segment", Crypt4GHTruncatedError),
    ("extended", Crypt4GHIntegrityError), ("segments swapped", Crypt4GHIntegrityError),
    ("segment duplicated", Crypt4GHIntegrityError), ("first byte flipped", Crypt4GHSegmentError),
    ("last MAC byte flipped", Crypt4GHSegmentError),
])
def test_a_damaged_payload_in_memory_is_refused(how: str, error: type[Exception], reader: X25519PrivateKey) -> None:
    payload, info, keys = _payload(os.urandom(3 * SEGMENT_SIZE + 5), reader)
    with pytest.raises(error):
        crypt4gh.decrypt_payload(_damaged(payload, how), keys, _expected(info))


@pytest.mark.parametrize("size", [1, 4000, 2 * SEGMENT_SIZE + 1])
def test_a_payload_in_memory_is_checked_against_every_manifest_fact(size: int, reader: X25519PrivateKey) -> None:
    payload, info, keys = _payload(os.urandom(size), reader)
    other = hashlib.sha256(b"other").hexdigest()
    for wrong in (ExpectedFile(size=size, mac_digest=info.mac_digest, sha256=other),
                  ExpectedFile(size=size, mac_digest=other, sha256=info.sha256)):
        with pytest.raises(Crypt4GHIntegrityError):
            crypt4gh.decrypt_payload(payload, keys, wrong)
    with pytest.raises(Crypt4GHError):
        crypt4gh.decrypt_payload(payload, keys, ExpectedFile(size=size - 1, mac_digest=info.mac_digest, sha256=info.sha256))
    with pytest.raises(Crypt4GHSegmentError):
        crypt4gh.decrypt_payload(payload, (os.urandom(32),), _expected(info))
    with pytest.raises(Crypt4GHHeaderError):
        crypt4gh.decrypt_payload(payload, (), _expected(info))
    # Several keys: the one that opens the segments is found whichever place it has.
    assert crypt4gh.decrypt_payload(payload, (os.urandom(32), *keys), _expected(info)) == crypt4gh.decrypt_payload(
        payload, keys, _expected(info))


def test_payload_keys_refuse_what_decrypt_refuses(reader: X25519PrivateKey) -> None:
    header = seal_packets([data_encryption_packet(os.urandom(32)), U32.pack(1) + U32.pack(1) + U64.pack(5)],
                          recipients=[reader.public_key()])
    with pytest.raises(Crypt4GHHeaderError, match="edit list"):
        crypt4gh.payload_keys(header, reader=reader)
    with pytest.raises(Crypt4GHWrongKeyError):
        crypt4gh.payload_keys(header, reader=X25519PrivateKey.generate())
