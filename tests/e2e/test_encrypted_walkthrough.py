"""README "Encrypted files: ingest, key release, decryption", run from a fresh data directory.

`govern demo` seeds and ingests, `govern serve` answers on a free port, and the newcomer's
steps run against it: the reference `crypt4gh-keygen` makes the key pair, the API registers it
and releases a header, header plus payload go to the reference `crypt4gh decrypt`, and the
plaintext must equal the demo's source file byte for byte; a release without a grant must come
back denied with its reason. The first test makes the API calls with Python (curl may be
absent); the second runs the README's shell block itself where bash, curl and base64 exist.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.served import Govern, Server

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "### Encrypted files: ingest, key release, decryption"
BIN = Path(sys.executable).parent
KEYGEN = BIN / "crypt4gh-keygen"
CRYPT4GH = BIN / "crypt4gh"
PURPOSE = "research/non-commercial/academic"
FILE = "genebody:train40/subject01/img_0001.jpg"
SOURCE = ".demo/demo-files/genebody/train40/subject01/img_0001.jpg"

pytestmark = pytest.mark.skipif(not (KEYGEN.exists() and CRYPT4GH.exists()),
                                reason="the reference crypt4gh CLIs are not installed (pip install -e '.[test]')")


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    return text[start:end]


@dataclass
class Deployment:
    """A fresh demo deployment served on a free port; `cwd` plays the checkout (.demo, .venv)."""

    cwd: Path
    server: Server
    api_key: str


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    cwd = tmp_path_factory.mktemp("checkout")
    data = cwd / ".demo"
    govern = Govern(data_dir=data, database_url="", cwd=ROOT)
    govern.env.pop("GOVERNANCE_MASTER_KEY", None)
    out = govern.run("demo")
    assert "encrypted into" in out, out
    (cwd / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    creds = (data / "demo-credentials.txt").read_text(encoding="utf-8")
    found = re.search(r"^API key of alice@ust\.hk: (\S+)$", creds, re.M)
    assert found is not None
    server = Server(govern, log=cwd / "serve.log").wait_healthy()
    try:
        yield Deployment(cwd=cwd, server=server, api_key=found.group(1))
    finally:
        server.stop()


def run(cwd: Path, *args: str | Path, stdin: Path | None = None, stdout: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    with (open(stdin, "rb") if stdin else open(os.devnull, "rb")) as src, \
            (open(stdout, "wb") if stdout else open(os.devnull, "wb")) as dst:
        done = subprocess.run([str(a) for a in args], cwd=cwd, stdin=src, stdout=dst, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0, f"{args[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
    return done


def test_a_released_header_and_the_payload_decrypt_with_the_reference_tool_to_the_demo_source(deployment: Deployment) -> None:
    """The README's steps 1-5 with Python for HTTP: keygen, register, release, assemble, decrypt, compare; then a denial."""
    section = readme_section()
    for command in (".venv/bin/crypt4gh-keygen --sk alice.sec --pk alice.pub --nocrypt",
                    '{ echo "$HEADER" | base64 -d; cat ".demo/objects/$OBJECT"; } > img_0001.jpg.c4gh',
                    ".venv/bin/crypt4gh decrypt --sk alice.sec < img_0001.jpg.c4gh > img_0001.jpg",
                    f"cmp img_0001.jpg {SOURCE}"):
        assert command in section, f"the README no longer says {command!r}; update this test with it"
    cwd = tmp = deployment.cwd / "python"
    tmp.mkdir()
    (tmp / ".demo").symlink_to(deployment.cwd / ".demo", target_is_directory=True)
    (tmp / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    auth = {"Authorization": f"Bearer {deployment.api_key}"}
    api = deployment.server.url

    run(cwd, ".venv/bin/crypt4gh-keygen", "--sk", "alice.sec", "--pk", "alice.pub", "--nocrypt")
    registered = httpx.post(f"{api}/v1/me/keys", headers=auth, timeout=10,
                            json={"key": (cwd / "alice.pub").read_text(), "name": "laptop"})
    assert registered.status_code == 201, registered.text
    kid = registered.json()["id"]
    released = httpx.post(f"{api}/v1/keys/release", headers=auth, timeout=10,
                          json={"files": [FILE], "public_key_id": kid, "purpose": PURPOSE})
    assert released.status_code == 200, released.text
    (one,) = released.json()["released"]
    assert one["resource"] == FILE and released.json()["denied"] == []
    # { echo "$HEADER" | base64 -d; cat ".demo/objects/$OBJECT"; } > img_0001.jpg.c4gh
    (cwd / "img_0001.jpg.c4gh").write_bytes(base64.b64decode(one["header"]) + (cwd / ".demo/objects" / one["object"]).read_bytes())
    run(cwd, ".venv/bin/crypt4gh", "decrypt", "--sk", "alice.sec", stdin=cwd / "img_0001.jpg.c4gh", stdout=cwd / "img_0001.jpg")
    plain = (cwd / "img_0001.jpg").read_bytes()
    assert plain == (cwd / SOURCE).read_bytes()
    assert plain.startswith(b"\xff\xd8") and b"governance demo file genebody:train40/subject01/img_0001.jpg" in plain
    assert len(plain) == one["size"]

    denied = httpx.post(f"{api}/v1/keys/release", headers=auth, timeout=10,
                        json={"subset": "2k2k/train", "public_key_id": kid, "purpose": PURPOSE})
    assert denied.status_code == 200, denied.text
    body = denied.json()
    assert body["released"] == [] and len(body["denied"]) == 16
    assert {c["code"] for d in body["denied"] for c in d["decision"]["reasons"]} == {"no_grant"}

    from governance.client import AccessDeniedError, Client, GovernedDataset

    with Client(api, deployment.api_key) as gov:
        data = GovernedDataset(gov, subset="genebody/train40", purpose=PURPOSE, private_key=cwd / "alice.sec",
                               public_key_id=kid, object_root=cwd / ".demo/objects")
        assert len(data) == 18 and data[0] == (cwd / SOURCE).read_bytes()
        with pytest.raises(AccessDeniedError, match="no_grant"):
            GovernedDataset(gov, subset="2k2k/train", purpose=PURPOSE, private_key=cwd / "alice.sec",
                            public_key_id=kid, object_root=cwd / ".demo/objects")


def _shell_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, re.S)


@pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "curl", "base64", "cmp")),
                    reason="the README's shell block needs bash, curl, base64 and cmp")
def test_the_readme_shell_block_runs_as_written(deployment: Deployment) -> None:
    """The README's two shell blocks, verbatim but for the port: 'identical', the denial, and 18 files."""
    cwd = deployment.cwd / "shell"
    cwd.mkdir()
    (cwd / ".demo").symlink_to(deployment.cwd / ".demo", target_is_directory=True)
    (cwd / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    blocks = _shell_blocks(readme_section())
    assert len(blocks) == 2, "the walkthrough has a shell block and a Python block"
    script = "set -euo pipefail\n" + "\n".join(blocks).replace("http://127.0.0.1:8000", deployment.server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERNANCE_", "C4GH_"))}
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert "identical" in lines
    assert "0 released, 16 denied: ['no_grant']" in lines
    assert "18 files; True" in lines
    assert json.loads((cwd / "release.json").read_text())["released"][0]["resource"] == FILE
