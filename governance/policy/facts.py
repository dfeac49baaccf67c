"""Facts the engine decides from: a subject's state, grants, waivers, manifest tags, lineage.

These are boundary models: strict, frozen, and free of storage. The scenario files of
shared/acceptance/ use exactly these shapes; later the storage layer builds them from rows.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from governance.types import Action, Destination


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GrantFact(_Strict):
    """An approval: this subject × scope (dataset, dataset/subset or artefact:<id>) × purpose."""

    scope: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    starts: AwareDatetime | None = None
    expires: AwareDatetime | None = None
    revoked: StrictBool = False
    id: str | None = None


class WaiverFact(_Strict):
    """A licensor's written permission lifting one waivable rule for a scope."""

    owner: str = Field(min_length=1)
    dataset: str = Field(min_length=1, description="the dataset (or source) whose rule it lifts")
    action: Action
    destination: Destination | None = None
    purpose: str | None = None
    rule: str | None = Field(default=None, description="a rule id; omitted: any waivable rule of the owner")
    subset: str | None = None
    expires: AwareDatetime | None = None
    revoked: StrictBool = False
    id: str | None = None


class SubjectState(_Strict):
    """Everything about one user that a decision depends on."""

    id: str | None = None
    email: str = Field(min_length=1, max_length=320)
    email_verified: StrictBool = False
    organisation: str | None = None
    site: str | None = None
    accepted: dict[str, str] = Field(default_factory=dict, description="dataset -> version, sha256 or 'current'")
    signed: list[str] = Field(default_factory=list)
    grants: list[GrantFact] = Field(default_factory=list)
    waivers: list[WaiverFact] = Field(default_factory=list)
    terminated: list[str] = Field(default_factory=list)


class ManifestEntry(_Strict):
    """Source tags recorded at ingest for one file."""

    resource: str = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)


class ArtefactFact(_Strict):
    """A registered derivative: the subsets, file globs or artefacts it was made from."""

    derived_from: list[str] = Field(min_length=1)
