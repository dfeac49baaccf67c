"""Interoperability with the reference `crypt4gh` package (a test dependency), both ways:
our files decrypt with it, its files decrypt with ours, headers we re-seal open with its
library and its command-line tool, and key files cross in both directions."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance.crypto import keys
from governance.crypto.crypt4gh import SEGMENT_SIZE, ExpectedFile, decrypt, encrypt, read_header, reseal_header

ref_lib = pytest.importorskip("crypt4gh.lib")
ref_keys = pytest.importorskip("crypt4gh.keys")
ref_c4gh = pytest.importorskip("crypt4gh.keys.c4gh")

SIZES = [0, 1, 65_535, 65_536, 65_537, 300 * 1024]


def _ref_decrypt(blob: bytes, key: X25519PrivateKey) -> bytes:
    out = io.BytesIO()
    ref_lib.decrypt([(0, key.private_bytes_raw(), None)], io.BytesIO(blob), out)
    return out.getvalue()


def _ref_encrypt(data: bytes, *recipients: X25519PrivateKey) -> bytes:
    writer = X25519PrivateKey.generate().private_bytes_raw()
    out = io.BytesIO()
    ref_lib.encrypt([(0, writer, r.public_key().public_bytes_raw()) for r in recipients], io.BytesIO(data), out)
    return out.getvalue()


@pytest.mark.parametrize("size", SIZES)
def test_our_files_decrypt_with_the_reference(size: int) -> None:
    reader, second = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    data = os.urandom(size)
    out = io.BytesIO()
    encrypt(io.BytesIO(data), out, recipients=[reader.public_key(), second.public_key()])
    assert _ref_decrypt(out.getvalue(), reader) == data
    assert _ref_decrypt(out.getvalue(), second) == data


@pytest.mark.parametrize("size", SIZES)
def test_reference_files_decrypt_with_ours(size: int) -> None:
    reader, second = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    data = os.urandom(size)
    blob = _ref_encrypt(data, second, reader)
    out = io.BytesIO()
    info = decrypt(io.BytesIO(blob), out, reader=reader, sha256=True)
    assert out.getvalue() == data and info.size == size
    # What we saw is what a manifest would record for the reference's file: checking it passes.
    again = io.BytesIO()
    decrypt(io.BytesIO(blob), again, reader=second, expected=ExpectedFile(info.size, info.mac_digest, info.sha256))
    assert again.getvalue() == data


def test_headers_we_reseal_open_with_the_reference_library() -> None:
    dataset, user = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    data = os.urandom(3 * SEGMENT_SIZE + 11)
    for blob in (_ref_encrypt(data, dataset), None):
        if blob is None:
            out = io.BytesIO()
            encrypt(io.BytesIO(data), out, recipients=[dataset.public_key()])
            blob = out.getvalue()
        stream = io.BytesIO(blob)
        header = read_header(stream)
        released = reseal_header(header, reader=dataset, recipient=user.public_key()) + stream.read()
        assert _ref_decrypt(released, user) == data


def test_headers_the_reference_reseals_open_with_ours() -> None:
    dataset, user = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    data = os.urandom(70_000)
    out = io.BytesIO()
    info = encrypt(io.BytesIO(data), out, recipients=[dataset.public_key()])
    resealed = io.BytesIO()
    ref_lib.reencrypt([(0, dataset.private_bytes_raw(), None)],
                      [(0, X25519PrivateKey.generate().private_bytes_raw(), user.public_key().public_bytes_raw())],
                      io.BytesIO(out.getvalue()), resealed, trim=True)
    back = io.BytesIO()
    decrypt(io.BytesIO(resealed.getvalue()), back, reader=user, expected=ExpectedFile(info.size, info.mac_digest, info.sha256))
    assert back.getvalue() == data


def test_a_resealed_file_opens_with_the_reference_command_line_tool(tmp_path: Path) -> None:
    tool = shutil.which("crypt4gh", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("the reference crypt4gh command is not installed beside this Python")
    dataset, user = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    keys.save_private_key(tmp_path / "user.sec", user, passphrase=b"open sesame")
    data = os.urandom(SEGMENT_SIZE + 3)
    out = io.BytesIO()
    info = encrypt(io.BytesIO(data), out, recipients=[dataset.public_key()])
    released = reseal_header(info.header, reader=dataset, recipient=user.public_key()) + out.getvalue()[info.header_length:]
    env = {**os.environ, "C4GH_PASSPHRASE": "open sesame"}
    run = subprocess.run([tool, "decrypt", "--sk", str(tmp_path / "user.sec")], input=released,
                         capture_output=True, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == data


@pytest.mark.parametrize("passphrase", [None, b"pass phrase"])
def test_our_key_files_load_in_the_reference(tmp_path: Path, passphrase: bytes | None) -> None:
    key = X25519PrivateKey.generate()
    keys.save_private_key(tmp_path / "k.sec", key, passphrase=passphrase, comment=b"ours")
    keys.save_public_key(tmp_path / "k.pub", key.public_key())
    loaded = ref_keys.get_private_key(str(tmp_path / "k.sec"), lambda: (passphrase or b"").decode())
    assert bytes(loaded) == key.private_bytes_raw()
    assert ref_keys.get_public_key(str(tmp_path / "k.pub")) == key.public_key().public_bytes_raw()


@pytest.mark.parametrize("passphrase", [None, b"pass phrase"])
def test_reference_key_files_load_in_ours(tmp_path: Path, passphrase: bytes | None) -> None:
    sec, pub = tmp_path / "ref.sec", tmp_path / "ref.pub"
    ref_c4gh.generate(str(sec), str(pub), passphrase, b"made by the reference")
    private = keys.load_private_key(sec, passphrase=passphrase)
    assert private.public_key().public_bytes_raw() == keys.load_public_key(pub).public_bytes_raw()
    assert ref_keys.get_private_key(str(sec), lambda: (passphrase or b"").decode()) == private.private_bytes_raw()
