"""GovernedDataset through the real app (the loader client over the TestClient's transport): headers
are released up front, files decrypt locally and are checked against the manifest, the dataset
works in a DataLoader with worker processes, and a revoked grant stops new releases."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance.approvals import workflow
from governance.client import AccessDeniedError, Client, GovernanceClientError, GovernedDataset
from governance.crypto import crypt4gh
from governance.crypto.errors import Crypt4GHIntegrityError
from governance.crypto.keys import save_private_key
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, OPERATOR, add_login, bearer
from tests.integration.test_key_release import EXTENDED, SIZES, grant_train40, register_key, seed_files

TRAIN = [f"genebody:{p}" for p in SIZES]


@dataclass
class Loader:
    ws: Workspace
    client: Client
    plain: dict[str, bytes]
    key: X25519PrivateKey
    key_id: int
    grant: int

    def dataset(self, **kw: Any) -> GovernedDataset[Any]:
        args: dict[str, Any] = {"purpose": ACADEMIC, "private_key": self.key, "public_key_id": self.key_id,
                                "object_root": self.ws.settings.objects_dir}
        if "resources" not in kw and "subset" not in kw:
            args["subset"] = "genebody/train40"
        return GovernedDataset(self.client, **{**args, **kw})


@pytest.fixture
def loader(ws: Workspace, api: Any) -> Any:
    plain = seed_files(ws)
    add_login(ws, "alice@ust.hk", organisation="hkust", site="clear-water-bay")
    grant = grant_train40(ws, "alice@ust.hk")
    headers = bearer(api, "alice@ust.hk")
    key = X25519PrivateKey.generate()
    key_id = register_key(api, headers, key)
    made = api.post("/v1/me/api-keys", headers=headers, json={"name": "loader"})
    assert made.status_code == 201, made.text
    client = Client("http://testserver", made.json()["key"], transport=api._transport, retries=0)
    try:
        yield Loader(ws=ws, client=client, plain=plain, key=key, key_id=key_id, grant=grant)
    finally:
        client.close()


def test_a_subset_is_released_up_front_and_each_file_decrypts_to_its_plaintext(loader: Loader) -> None:
    data = loader.dataset()
    assert len(data) == 4 and sorted(data.permitted_resources) == sorted(TRAIN)
    for i, resource in enumerate(data.permitted_resources):
        assert data[i] == loader.plain[resource]
    assert "private_key=<redacted>" in repr(data)


def test_named_files_keep_only_the_permitted_or_raise_when_strict(loader: Loader, tmp_path: Path) -> None:
    # A locked Crypt4GH key file works as well as a key object.
    save_private_key(tmp_path / "me.sec", loader.key, passphrase=b"loader passphrase")
    names = [TRAIN[2], f"genebody:{EXTENDED}", TRAIN[0]]
    data = loader.dataset(resources=names, private_key=tmp_path / "me.sec", passphrase="loader passphrase",
                          transform=len, chunk_size=1)
    assert data.permitted_resources == [TRAIN[2], TRAIN[0]]
    assert [data[0], data[1]] == [SIZES[TRAIN[2].split(":", 1)[1]], 1]
    assert [(r, d.codes) for r, d in data.denied] == [(f"genebody:{EXTENDED}", ("no_grant",))]
    with pytest.raises(AccessDeniedError, match="no_grant|grant") as caught:
        loader.dataset(resources=names, strict=True)
    assert caught.value.resource == f"genebody:{EXTENDED}"
    with pytest.raises(AccessDeniedError):
        loader.dataset(resources=[f"genebody:{EXTENDED}"])  # nothing permitted at all


def test_a_pickled_dataset_holds_no_client_and_still_decrypts(loader: Loader) -> None:
    data = loader.dataset()
    blob = pickle.dumps(data)
    assert b"gk_" not in blob
    copy = pickle.loads(blob)
    assert [copy[i] for i in range(len(copy))] == [data[i] for i in range(len(data))]
    with pytest.raises(GovernanceClientError, match="no client"):
        copy.refresh()


def test_a_dataloader_with_two_worker_processes_yields_the_plaintexts(loader: Loader) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    data = loader.dataset()
    # spawn, not fork: each worker gets the dataset by pickle, as on macOS and Windows
    batches = torch_data.DataLoader(data, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    got = list(batches)
    assert got == [loader.plain[r] for r in data.permitted_resources]


def test_a_tampered_payload_raises_instead_of_returning_data(loader: Loader) -> None:
    data = loader.dataset()
    index = data.permitted_resources.index(TRAIN[2])  # four segments
    target = loader.ws.settings.objects_dir / data._files[index].object
    blob = bytearray(target.read_bytes())
    seg = crypt4gh.CIPHER_SEGMENT_SIZE
    blob[:seg], blob[seg:2 * seg] = blob[seg:2 * seg], blob[:seg]
    target.write_bytes(bytes(blob))
    with pytest.raises(Crypt4GHIntegrityError):
        data[index]


def test_after_revocation_a_new_dataset_or_a_refresh_raises_grant_revoked(loader: Loader) -> None:
    data = loader.dataset()
    workflow.revoke(loader.ws, actor=OPERATOR, now=datetime.now(UTC), grant_id=loader.grant, reason="licensor asked")
    with pytest.raises(AccessDeniedError) as caught:
        loader.dataset()
    assert caught.value.decision.codes == ("grant_revoked",)
    assert "grant_revoked" in str(caught.value) or "revoked" in str(caught.value)
    with pytest.raises(AccessDeniedError):
        data.refresh()
