"""Datasets, their policies with the clauses they rest on, and the purpose hierarchy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import errors
from api.deps import WS, Caller
from api.schemas import DatasetOut
from governance.approvals import workflow
from governance.errors import NotFoundError
from governance.policy.show import show_json

router = APIRouter(tags=["datasets"], responses=errors.AUTHENTICATED)


@router.get("/datasets", response_model=list[DatasetOut], summary="Every governed dataset")
def list_datasets(caller: Caller, ws: WS) -> list[DatasetOut]:
    return [DatasetOut(id=d.id, title=d.title, licensor=d.licensor.id, version=d.version, sha256=d.sha256,
                       has_terms=d.has_terms, subsets=sorted(d.subsets))
            for _, d in sorted(ws.policies.datasets.items())]


@router.get("/datasets/{dataset_id}", summary="A dataset's policy: subsets, requirements, rules beside their clauses")
def get_dataset(dataset_id: str, caller: Caller, ws: WS) -> dict[str, Any]:
    if dataset_id not in ws.policies.datasets:
        raise NotFoundError(f"no dataset '{dataset_id}'")
    return show_json(workflow.dataset(ws, dataset_id), ws.policies)


@router.get("/purposes", summary="The purpose hierarchy")
def purposes(caller: Caller, ws: WS) -> dict[str, str]:
    return dict(sorted(ws.policies.purpose_descriptions.items()))
