"""Reading registered artefacts for people: the list an actor may see, and one artefact with its
lineage graph and the restrictions its inputs bring.

The visibility rule is `workflow.get_artefact`'s: the owner, any approver and an auditor see an
artefact; anyone else is told it does not exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, and_, select

from governance.approvals import workflow
from governance.approvals.records import ArtefactRecord
from governance.identity.roles import Actor, Role
from governance.policy import globs
from governance.provenance.graph import LineageGraph, build_graph
from governance.provenance.lineage import parse_input
from governance.storage.tables import ArtefactRow, ManifestFileRow, UserRow
from governance.workspace import Workspace

ARTEFACTS = ArtefactRow.__table__  # type: ignore[attr-defined]
MANIFEST = ManifestFileRow.__table__  # type: ignore[attr-defined]
USERS = UserRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ArtefactView:
    """One artefact as a page shows it: its record and its lineage graph."""

    record: ArtefactRecord
    graph: LineageGraph


def sees_every_artefact(actor: Actor) -> bool:
    """An auditor, and any approver, see every artefact (as in `workflow.get_artefact`)."""
    return actor.has(Role.AUDITOR) or actor.stewards() != frozenset()


def list_artefacts(ws: Workspace, *, actor: Actor) -> list[ArtefactRecord]:
    """The artefacts `actor` may see, newest first: their own, or every one for an approver or
    an auditor."""
    query = select(ARTEFACTS.c.id, ARTEFACTS.c.description, ARTEFACTS.c.inputs, ARTEFACTS.c.created_at,
                   USERS.c.email).join(USERS, USERS.c.id == ARTEFACTS.c.owner_id)
    if not sees_every_artefact(actor):
        if actor.user_id is None:
            return []
        query = query.where(ARTEFACTS.c.owner_id == actor.user_id)
    with ws.connect() as conn:
        rows = conn.execute(query.order_by(ARTEFACTS.c.created_at.desc(), ARTEFACTS.c.id)).all()
        conn.rollback()
    return [ArtefactRecord(id=r.id, owner=r.email, description=r.description, inputs=json.loads(r.inputs),
                           created_at=r.created_at) for r in rows]


def _origins(conn: Connection, root: str, lineage: dict[str, list[str]]) -> dict[tuple[str, str], list[str]]:
    """Origin tags of the exact files the root's lineage names (globs and subsets need none)."""
    wanted: dict[str, set[str]] = {}
    seen: set[str] = set()
    stack = [root]
    while stack:
        ident = stack.pop()
        if ident in seen or ident not in lineage:
            continue
        seen.add(ident)
        for ref in lineage[ident]:
            parsed = parse_input(ref)
            if isinstance(parsed, str):
                stack.append(parsed)
            elif parsed[1] is not None and globs.is_literal(parsed[1]):
                wanted.setdefault(parsed[0], set()).add(parsed[1])
    found: dict[tuple[str, str], list[str]] = {}
    for ds_id, paths in wanted.items():
        ordered = sorted(paths)
        for i in range(0, len(ordered), 500):
            rows = conn.execute(select(MANIFEST).where(and_(MANIFEST.c.dataset == ds_id,
                                                            MANIFEST.c.path.in_(ordered[i:i + 500])))).all()
            found.update({(m.dataset, m.path): json.loads(m.sources) for m in rows})
    return found


def view_artefact(ws: Workspace, *, actor: Actor, ident: str) -> ArtefactView:
    """One artefact with its lineage graph, for those who may see it (`NotFoundError` otherwise)."""
    record = workflow.get_artefact(ws, actor=actor, ident=ident)
    with ws.connect() as conn:
        lineage = workflow.stored_lineage(conn)
        origins = _origins(conn, ident, lineage)
        # Descriptions only of the artefacts the actor may see; the others show their ids alone.
        everyone = sees_every_artefact(actor)
        descriptions = {r.id: r.description for r in conn.execute(
            select(ARTEFACTS.c.id, ARTEFACTS.c.description, ARTEFACTS.c.owner_id)).all()
            if everyone or r.owner_id == actor.user_id}
        conn.rollback()
    graph = build_graph(ident, lineage, ws.policies, origins=origins, descriptions=descriptions)
    return ArtefactView(record=record, graph=graph)
