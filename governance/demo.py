"""A believable demo deployment, seeded through the real services (every step is audited).

Organisations with academic and free-mail addresses, a steward per dataset, an admin and an
auditor, and requests for all five datasets in every state: pending, approved, denied,
withdrawn, approved then revoked, and approved then ended by the licensor's termination.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from governance.approvals import workflow
from governance.errors import WorkflowError
from governance.identity import service as identity
from governance.identity.roles import Actor, Role, grant_role, load_actor, operator, set_domain
from governance.identity.tokens import mint_token
from governance.storage.tables import UserRow
from governance.workspace import Workspace

ADMIN = "admin@governance.example"
AUDITOR = "auditor@governance.example"
STEWARDS = {
    "huge100k": "steward@huge100k.example",
    "genebody": "steward@genebody.example",
    "2k2k": "steward@ioys.example",
    "shhq": "steward@shlab.example",
    "clonedperson": "steward@iiai.example",
}
# address, organisation, site
RESEARCHERS = [
    ("alice@ust.hk", "hkust", "clear-water-bay"),
    ("ben@cs.ox.ac.uk", "oxford", "parks-road"),
    ("chen@tsinghua.edu.cn", "tsinghua", "haidian"),
    ("dana@tuebingen.mpg.de", "mpi-is", "tuebingen"),
    ("eve.hacker@gmail.com", None, None),
    ("frank@acme-ai.com", "acme-ai", "berlin"),
]
RESEARCH = "research/non-commercial"


def demo_pdf(title: str) -> bytes:
    """A small, valid one-page PDF standing in for a scanned, signed form."""
    body = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def demo_png() -> bytes:
    """A 1x1 PNG standing in for a photographed signature page."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


@dataclass
class DemoSummary:
    users: list[str] = field(default_factory=list)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    grants: int = 0
    password: str = ""  # every demo user's password (random per deployment)
    api_key: str = ""  # an API key of alice@ust.hk's, for a loader

    def count(self, dataset: str, state: str) -> None:
        self.requests.setdefault(dataset, {}).setdefault(state, 0)
        self.requests[dataset][state] += 1


def _verified_user(ws: Workspace, now: datetime, address: str, organisation: str | None, site: str | None, by: str) -> Actor:
    user = identity.register_user(engine=ws, now=now, email=address, organisation=organisation, site=site, actor=by)
    # The real redemption path, minus the mailbox: the demo's users are all verified.
    token = mint_token(secret=ws.token_secret, purpose=identity.VERIFY_PURPOSE, user=user.id, email=user.email,
                       expires=now + timedelta(hours=1))
    identity.verify_email(engine=ws, secret=ws.token_secret, now=now, token=token)
    return load_actor(ws, address)


def seed(ws: Workspace, *, now: datetime) -> DemoSummary:
    """Seed the demo into an empty deployment; refuses one that already holds users."""
    with ws.connect() as conn:
        if conn.execute(select(UserRow.__table__.c.id).limit(1)).first() is not None:  # type: ignore[attr-defined]
            raise WorkflowError("this database already holds users; seed the demo into a fresh GOVERNANCE_DATA_DIR")
    op = operator("demo")
    summary = DemoSummary()
    datasets = ws.policies.datasets
    _verified_user(ws, now, ADMIN, "governance", None, op.label)
    grant_role(ws, actor=op, now=now, email=ADMIN, role=Role.ADMIN, dataset=None, datasets=datasets)
    admin = load_actor(ws, ADMIN)
    _verified_user(ws, now, AUDITOR, "governance", None, admin.label)
    grant_role(ws, actor=admin, now=now, email=AUDITOR, role=Role.AUDITOR, dataset=None, datasets=datasets)
    # Max Planck institutes are research institutes, not universities: the admin vouches for them.
    set_domain(ws, actor=admin, now=now, domain="mpg.de", listed="allow")
    stewards: dict[str, Actor] = {}
    for ds_id, address in STEWARDS.items():
        _verified_user(ws, now, address, datasets[ds_id].licensor.id, None, admin.label)
        grant_role(ws, actor=admin, now=now, email=address, role=Role.APPROVER, dataset=ds_id, datasets=datasets)
        stewards[ds_id] = load_actor(ws, address)
    people = {addr: _verified_user(ws, now, addr, org, site, admin.label) for addr, org, site in RESEARCHERS}
    summary.users = [ADMIN, AUDITOR, *STEWARDS.values(), *people]

    def accept(who: str, ds_id: str) -> None:
        ds = datasets[ds_id]
        workflow.accept_agreement(ws, actor=people[who], now=now, email=who, dataset_id=ds_id, version=ds.version or "",
                                  client="demo web form")

    def ask(who: str, ds_id: str, subsets: list[str], project: str, purpose: str = RESEARCH) -> int:
        rec = workflow.request_access(ws, actor=people[who], now=now, email=who, dataset_id=ds_id, subsets=subsets,
                                      purpose=purpose, project=project)
        if rec.state == "approved":
            summary.count(ds_id, "approved")
            summary.grants += len(rec.subsets)
        return rec.id

    def approve(ds_id: str, request_id: int) -> list[int]:
        grants = workflow.approve(ws, actor=stewards[ds_id], now=now, request_id=request_id)
        summary.count(ds_id, "approved")
        summary.grants += len(grants)
        return [g.id for g in grants]

    def deny(ds_id: str, request_id: int, reason: str) -> None:
        workflow.deny(ws, actor=stewards[ds_id], now=now, request_id=request_id, reason=reason)
        summary.count(ds_id, "denied")

    def pending(ds_id: str) -> None:
        summary.count(ds_id, "pending")

    def withdraw(who: str, ds_id: str, request_id: int) -> None:
        workflow.withdraw(ws, actor=people[who], now=now, request_id=request_id)
        summary.count(ds_id, "withdrawn")

    def revoke(ds_id: str, grant_id: int, reason: str) -> None:
        workflow.revoke(ws, actor=stewards[ds_id], now=now, grant_id=grant_id, reason=reason)
        summary.count(ds_id, "revoked")

    # GeneBody: Test10 is automatic; Train40 needs a signed form and an institutional address.
    for who in ("alice@ust.hk", "ben@cs.ox.ac.uk", "chen@tsinghua.edu.cn", "eve.hacker@gmail.com", "dana@tuebingen.mpg.de"):
        accept(who, "genebody")
    for who in ("alice@ust.hk", "ben@cs.ox.ac.uk", "chen@tsinghua.edu.cn", "dana@tuebingen.mpg.de"):
        workflow.upload_form(ws, actor=people[who], now=now, email=who, dataset_id="genebody", data=demo_pdf(f"GeneBody release agreement - {who}"))
    ask("eve.hacker@gmail.com", "genebody", ["test10"], "Benchmarking my renderer on the public test subjects")
    approve("genebody", ask("alice@ust.hk", "genebody", ["train40"], "Neural rendering of clothed humans (PhD thesis, HKUST VGD lab)"))
    approve("genebody", ask("ben@cs.ox.ac.uk", "genebody", ["train40", "extended370"], "Generalisable human NeRFs, Oxford VGG"))
    deny("genebody", ask("eve.hacker@gmail.com", "genebody", ["train40"], "personal project"),
         "Train40 needs the signed agreement sent from an institutional address")
    ask("chen@tsinghua.edu.cn", "genebody", ["train40"], "Human avatar reconstruction from sparse views")
    pending("genebody")
    withdraw("dana@tuebingen.mpg.de", "genebody", ask("dana@tuebingen.mpg.de", "genebody", ["extended370"], "Sequence modelling (asked by mistake)"))
    revoke_me = approve("genebody", ask("dana@tuebingen.mpg.de", "genebody", ["train40"], "Clothed body shape estimation"))
    revoke("genebody", revoke_me[0], "the form was signed by a supervisor on the student's behalf; please resubmit")

    # HuGe100K: click-through, manual approval, research only.
    for who in ("alice@ust.hk", "chen@tsinghua.edu.cn", "frank@acme-ai.com", "ben@cs.ox.ac.uk"):
        accept(who, "huge100k")
    approve("huge100k", ask("alice@ust.hk", "huge100k", ["flux_batch1", "flux_batch2"], "Single-image human reconstruction"))
    ask("chen@tsinghua.edu.cn", "huge100k", ["flux_batch8", "flux_batch9"], "Pose-conditioned avatar generation")
    pending("huge100k")
    deny("huge100k", ask("frank@acme-ai.com", "huge100k", [], "Training our product's avatar model", purpose="commercial/model-training"),
         "HuGe100K is for non-commercial research only")
    withdraw("ben@cs.ox.ac.uk", "huge100k", ask("ben@cs.ox.ac.uk", "huge100k", ["flux_batch3"], "Duplicate of another request"))

    # 2K2K: institutional e-mail and approval; IOYS may permit third-party sharing in writing.
    for who in ("chen@tsinghua.edu.cn", "alice@ust.hk", "eve.hacker@gmail.com", "ben@cs.ox.ac.uk"):
        accept(who, "2k2k")
    approve("2k2k", ask("chen@tsinghua.edu.cn", "2k2k", ["train", "test"], "Clothed human digitisation from single images"))
    ask("alice@ust.hk", "2k2k", ["train"], "Texture completion for scanned humans")
    pending("2k2k")
    deny("2k2k", ask("eve.hacker@gmail.com", "2k2k", ["train"], "curious"), "IOYS approves institutional e-mail addresses only")
    withdraw("ben@cs.ox.ac.uk", "2k2k", ask("ben@cs.ox.ac.uk", "2k2k", ["keypoints"], "Not needed after all"))
    workflow.record_waiver(ws, actor=stewards["2k2k"], now=now, terms="2k2k", action="export", rule="no-third-party-without-permission",
                           email="chen@tsinghua.edu.cn", destination="third_party", document=demo_pdf("IOYS written permission"),
                           expires=now + timedelta(days=180))

    # SHHQ: hand-signed agreement confirmed by the steward; the preview is automatic.
    for who in ("ben@cs.ox.ac.uk", "dana@tuebingen.mpg.de", "alice@ust.hk", "frank@acme-ai.com", "chen@tsinghua.edu.cn"):
        accept(who, "shhq")
    form = workflow.upload_form(ws, actor=people["ben@cs.ox.ac.uk"], now=now, email="ben@cs.ox.ac.uk", dataset_id="shhq", data=demo_png())
    workflow.confirm_signature(ws, actor=stewards["shhq"], now=now, form_id=form.id)
    workflow.upload_form(ws, actor=people["dana@tuebingen.mpg.de"], now=now, email="dana@tuebingen.mpg.de", dataset_id="shhq",
                         data=demo_pdf("SHHQ agreement - awaiting signature check"))
    approve("shhq", ask("ben@cs.ox.ac.uk", "shhq", ["1.0"], "Unconditional human generation (StyleGAN-Human follow-up)"))
    ask("dana@tuebingen.mpg.de", "shhq", ["1.0"], "Body shape priors from fashion images")
    pending("shhq")
    ask("frank@acme-ai.com", "shhq", ["preview"], "Evaluating data quality")
    deny("shhq", ask("frank@acme-ai.com", "shhq", ["1.0"], "Fine-tuning a commercial generator", purpose="commercial/model-training"),
         "SHHQ is for non-commercial research only")
    withdraw("alice@ust.hk", "shhq", ask("alice@ust.hk", "shhq", ["1.0"], "Will use the preview first"))
    ask("chen@tsinghua.edu.cn", "shhq", ["preview"], "Preview for a course project")  # approved by the policy
    workflow.terminate(ws, actor=stewards["shhq"], now=now, dataset_id="shhq", organisation="tsinghua",
                       reason="the licensor ended the collaboration with this organisation")
    summary.count("shhq", "terminated")
    workflow.tag_origins(ws, actor=admin, now=now, dataset_id="shhq", tags={
        "SHHQ-1.0/images/000001.png": ["deepfashion"], "SHHQ-1.0/images/000002.png": ["pexels"],
        "SHHQ-1.0/images/000003.png": ["infashai"], "SHHQ-1.0/images/000004.png": ["cc0"],
    })

    # ClonedPerson: no terms recorded, so requests wait or are denied.
    ask("alice@ust.hk", "clonedperson", ["train"], "Person re-identification with synthetic data")
    pending("clonedperson")
    deny("clonedperson", ask("chen@tsinghua.edu.cn", "clonedperson", ["videos"], "Tracking research"),
         "No licence terms are recorded for ClonedPerson; we cannot grant access until the licensor states them")
    withdraw("ben@cs.ox.ac.uk", "clonedperson", ask("ben@cs.ox.ac.uk", "clonedperson", ["test"], "Asked for the wrong dataset"))

    # A derivative with lineage.
    workflow.register_artefact(ws, actor=people["alice@ust.hk"], now=now, ident="alice-nerf-v1", inputs=["genebody/train40"],
                               description="Generalisable NeRF checkpoint trained on GeneBody Train40")
    # Two hops through SHHQ files of recorded origin: one DeepFashion image brings DeepFashion's
    # "never pass on" to both artefacts (the console draws it on the lineage page).
    workflow.register_artefact(ws, actor=people["ben@cs.ox.ac.uk"], now=now, ident="ben-pose-features",
                               inputs=["shhq:SHHQ-1.0/images/000001.png", "shhq:SHHQ-1.0/images/000004.png"],
                               description="Pose features extracted from two SHHQ-1.0 images")
    workflow.register_artefact(ws, actor=people["ben@cs.ox.ac.uk"], now=now, ident="ben-human-gan",
                               inputs=["artefact:ben-pose-features", "shhq:SHHQ-1.0/images/000002.png"],
                               description="Unconditional human generator conditioned on the pose features")
    # Logins for the API and the console: one random password for every demo user, and an API
    # key for alice's loader. Both are written to a 0600 file in the data directory.
    summary.password = "demo-" + secrets.token_urlsafe(9)
    for address in summary.users:
        ws.authenticator.set_password(actor=admin, now=now, email=address, password=summary.password)
    _, summary.api_key = ws.authenticator.create_api_key(actor=people["alice@ust.hk"], now=now, name="demo loader")
    write_credentials(ws.settings.data_dir / CREDENTIALS, summary)
    ws.checkpoint()
    return summary


CREDENTIALS = "demo-credentials.txt"


def write_credentials(path: Path, summary: DemoSummary) -> None:
    """The demo's logins, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"password (every demo user): {summary.password}\n"
                f"API key of alice@ust.hk: {summary.api_key}\n"
                f"steward of genebody: {STEWARDS['genebody']}\nadmin: {ADMIN}\nauditor: {AUDITOR}\n")
