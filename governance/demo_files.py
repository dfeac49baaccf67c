"""The demo's files: small, synthetic, deterministic trees per dataset, encrypted by the real ingest.

`write_demo_files` lays out `<root>/<dataset>/...` so that every file falls in one of the
dataset's subsets (GeneBody `test10/`, `train40/subject01/img_0001.jpg`, …; HuGe100K
`flux_batch1/`, `deepfashion/`; 2K2K `train/`, `test/`; SHHQ `SHHQ-1.0/`, `preview/`), plus
`<root>/shhq-sources.csv`, the SHHQ file-to-upstream-source mapping. Each file is a few KiB of
JPEG- or PNG-shaped bytes: the format's magic, a marker naming the file, then bytes from a
generator seeded by the file's name, so two runs write identical trees and a decrypted file
can be compared with its source byte for byte.

`encrypt_demo` is what `govern keys init` and `govern ingest` do, through the same services:
the master key (created 0600 unless GOVERNANCE_MASTER_KEY is set), one key pair per dataset
that has none, then `ingest_files` of each tree as the admin.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from governance.crypto.keystore import FileKeyStore, KeyInfo
from governance.crypto.master import MasterKey
from governance.files.ingest import IngestResult, ingest_files, read_source_tags
from governance.files.sources import DirectorySource
from governance.identity.roles import Actor
from governance.workspace import Workspace

FILES_DIR = "demo-files"
SHHQ_SOURCES = "shhq-sources.csv"
# SHHQ-1.0 images cycle through the upstream sources; 000001-000004 match the demo's origin tags.
_SHHQ_CYCLE = ("deepfashion", "pexels", "infashai", "cc0", "pixabay")


def _tree() -> dict[str, list[str]]:
    """Every demo file's path, per dataset (a few dozen each)."""
    genebody = [f"test10/subject{s:02d}/img_{i:04d}.jpg" for s in (1, 2) for i in range(1, 5)]
    genebody += [f"train40/subject{s:02d}/img_{i:04d}.jpg" for s in (1, 2, 3) for i in range(1, 7)]
    genebody += [f"extended370/seq{s:03d}/img_{i:04d}.jpg" for s in (1, 2) for i in range(1, 4)]
    huge = [f"flux_batch{b}/{n:06d}/view_{v:02d}.jpg" for b in (1, 2) for n in range(1, 5) for v in range(3)]
    huge += [f"flux_batch8/{n:06d}/view_{v:02d}.jpg" for n in range(1, 3) for v in range(3)]
    huge += [f"deepfashion/{n:06d}/view_{v:02d}.jpg" for n in range(1, 3) for v in range(3)]
    twok = [f"train/{n:05d}/{n:05d}.png" for n in range(1, 17)]
    twok += [f"test/{n:05d}/{n:05d}.png" for n in range(1, 5)]
    twok += [f"keypoints/{n:05d}.json" for n in range(1, 5)]
    shhq = [f"SHHQ-1.0/images/{n:06d}.png" for n in range(1, 21)]
    shhq += [f"SHHQ-1.0/masks/{n:06d}.png" for n in range(1, 5)]
    shhq += [f"preview/{n:06d}.png" for n in range(1, 6)]
    return {"genebody": genebody, "huge100k": huge, "2k2k": twok, "shhq": shhq}


DEMO_TREE = _tree()


def demo_file_bytes(dataset: str, path: str) -> bytes:
    """The deterministic content of one demo file: magic, a marker, 1-4 KiB of seeded bytes."""
    rng = random.Random(f"{dataset}:{path}")
    marker = f"governance demo file {dataset}:{path}".encode()
    body = rng.randbytes(rng.randint(1024, 4096))
    if path.endswith(".jpg"):  # SOI, a COM segment holding the marker, "scan data", EOI
        return b"\xff\xd8\xff\xfe" + (len(marker) + 2).to_bytes(2, "big") + marker + b"\xff\xda" + body + b"\xff\xd9"
    if path.endswith(".png"):
        return b"\x89PNG\r\n\x1a\n" + marker + b"\n" + body
    return b'{"marker": "' + marker + b'", "keypoints": "' + body.hex().encode()[:2048] + b'"}\n'


def shhq_sources(paths: list[str]) -> dict[str, str]:
    """The upstream source of every SHHQ image (masks are untagged)."""
    images = [p for p in paths if p.endswith(".png") and "/masks/" not in p]
    by_name: dict[str, str] = {}
    for p in images:
        n = int(Path(p).stem)
        by_name[p] = _SHHQ_CYCLE[(n - 1) % len(_SHHQ_CYCLE)]
    return by_name


def write_demo_files(root: Path) -> dict[str, Path]:
    """Write every dataset's demo tree under `root` (and the SHHQ mapping); returns the tree roots."""
    roots: dict[str, Path] = {}
    for dataset, paths in DEMO_TREE.items():
        base = root / dataset
        for path in paths:
            target = base / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(demo_file_bytes(dataset, path))
        roots[dataset] = base
    # The mapping sits beside the trees, not in SHHQ's: a file in no subset would stop the ingest.
    lines = ["# path,source: the upstream source of each SHHQ image (demo data)"]
    lines += [f"{p},{s}" for p, s in shhq_sources(DEMO_TREE["shhq"]).items()]
    (root / SHHQ_SOURCES).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return roots


def init_keys(ws: Workspace, *, now: datetime, env: Mapping[str, str]) -> list[KeyInfo]:
    """`govern keys init`: the master key (from `env`, the file, or created 0600), then a key pair
    for every dataset of the policies that has none. Returns the keys created."""
    master = MasterKey.from_env(env)
    if master is None:
        path = ws.settings.master_key_path
        if path.exists():
            master = MasterKey.from_file(path)
        else:
            ws.settings.data_dir.mkdir(parents=True, exist_ok=True)
            master = MasterKey.generate()
            master.create_file(path)
    store = FileKeyStore(ws.settings.keys_dir, master)
    existing = set(store.datasets())
    return [store.create(d, now=now) for d in sorted(ws.policies.datasets) if d not in existing]


def encrypt_demo(ws: Workspace, *, actor: Actor, now: datetime, env: Mapping[str, str]) -> dict[str, IngestResult]:
    """Write the demo trees into `$GOVERNANCE_DATA_DIR/demo-files`, create the keys, ingest every tree."""
    root = ws.settings.data_dir / FILES_DIR
    roots = write_demo_files(root)
    init_keys(ws, now=now, env=env)
    results: dict[str, IngestResult] = {}
    for dataset, tree in roots.items():
        tags = read_source_tags(root / SHHQ_SOURCES) if dataset == "shhq" else None
        results[dataset] = ingest_files(ws, actor=actor, now=now, dataset_id=dataset, source=DirectorySource(tree), tags=tags)
    return results
