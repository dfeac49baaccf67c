"""The console's catalogue: datasets and sources with their policies beside the clauses they
encode, and registered artefacts with their lineage drawn as a graph.

Routes look up and render: the policies come compiled from the workspace, and which artefacts
an actor may see is `governance.approvals.artefacts_view`'s rule, not the page's.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.render import page
from api.console.session import Console
from governance.approvals import artefacts_view
from governance.errors import NotFoundError
from governance.policy.compile import CDataset, CTerms
from governance.policy.show import show_json
from governance.provenance.graph import artefact_node
from governance.workspace import Workspace

router = APIRouter(prefix="/console", include_in_schema=False)


def _ws(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


# ---------------------------------------------------------------- datasets and sources


@router.get("/datasets")
def datasets(request: Request, session: Console) -> Response:
    policies = _ws(request).policies
    return page(request, "datasets.html", datasets=[policies.datasets[k] for k in sorted(policies.datasets)],
                sources=[policies.sources[k] for k in sorted(policies.sources)],
                drawn_on={k: len(_used_by(_ws(request), k)) for k in policies.sources})


def _used_by(ws: Workspace, source: str) -> list[tuple[str, str]]:
    """The subsets drawing on a source: (subset, "every file" | "some files")."""
    out = []
    for ds_id in sorted(ws.policies.datasets):
        for sub in ws.policies.datasets[ds_id].subsets.values():
            if source in sub.sources:
                out.append((sub.qid, "every file"))
            elif source in sub.file_sources:
                out.append((sub.qid, "some files (per the manifest)"))
    return out


@router.get("/datasets/{ident}")
def dataset(request: Request, session: Console, ident: str) -> Response:
    ws = _ws(request)
    terms: CTerms | None = ws.policies.terms(ident) if len(ident) <= 64 else None
    if terms is None:
        raise NotFoundError(f"no dataset or source '{ident[:64]}'")
    shown = show_json(terms, ws.policies)
    subsets = list(terms.subsets.values()) if isinstance(terms, CDataset) else []
    # The policy file relative to the policy directory: never the server's own paths.
    policy_file = os.path.relpath(terms.path, ws.policies.root)
    return page(request, "dataset.html", terms=terms, shown=shown, subsets=subsets, policy_file=policy_file,
                scopes={r["qid"]: r["scope"] for r in shown["rules"]},
                used_by=_used_by(ws, terms.id) if terms.kind == "source" else [])


# ---------------------------------------------------------------- artefacts


@router.get("/artefacts")
def artefacts(request: Request, session: Console) -> Response:
    items = artefacts_view.list_artefacts(_ws(request), actor=session.principal.actor)
    return page(request, "artefacts.html", items=items)


@router.get("/artefacts/{ident}")
def artefact(request: Request, session: Console, ident: str) -> Response:
    if len(ident) > 64:
        raise NotFoundError("no such artefact")
    view = artefacts_view.view_artefact(_ws(request), actor=session.principal.actor, ident=ident)
    g = view.graph
    # Outlined in red: the nodes whose terms forbid something for derived data, or are missing.
    flagged = {n for r in g.restrictions if r.kind in ("forbid", "no_terms", "unknown") for n in r.nodes}
    return page(request, "artefact.html", a=view.record, g=g, nodes={n.id: n for n in g.nodes}, flagged=flagged,
                root_id=artefact_node(g.root))
