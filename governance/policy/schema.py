"""The policy language: pydantic models for the YAML files under `policies/`.

Three kinds of file:

* `purposes.yaml` — the purpose hierarchy (`PurposesFile`);
* `datasets/<id>.yaml` — one licensed dataset: licensor, agreement text, subsets, requirements,
  rules, obligations, termination (`DatasetFile`);
* `sources/<id>.yaml` — one upstream work whose terms travel with data drawn from it
  (`SourceFile`).

Every rule and obligation quotes its clause verbatim from the agreement text; the loader checks
that. Models are strict: unknown keys are errors, booleans must be `true`/`false`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

from governance.types import Action, Destination, Layer

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
PurposeId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$", max_length=128)]
SubsetId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(min_length=1)]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=512)]
RequirementAspect = Literal["verified_email", "institutional_email", "agreement", "approval"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Party(_Strict):
    """A licensor or other party: the one that may waive its own rules."""

    id: Id
    name: Text
    contact: str | None = None
    url: str | None = None


class PurposeDef(_Strict):
    id: PurposeId
    parent: PurposeId | None = None
    description: Text


class PurposesFile(_Strict):
    purposes: list[PurposeDef] = Field(min_length=1)


class AgreementText(_Strict):
    """One version of an agreement. The sha256 of its text is its identity."""

    version: Text
    text: str | None = None
    text_file: str | None = Field(default=None, description="path relative to the policy file")
    sha256: Sha256 | None = Field(default=None, description="if given, must equal the text's sha256")
    origin: str | None = Field(default=None, description="where the text was taken from")
    quoted_from: Id | None = Field(
        default=None, description="for a source: the dataset whose agreement text quotes this passage"
    )

    @model_validator(mode="after")
    def _one_text(self) -> AgreementText:
        if (self.text is None) == (self.text_file is None):
            raise ValueError("give exactly one of 'text' and 'text_file'")
        return self


class NoTerms(_Strict):
    """The record that a licensor stated no terms at all (DESIGN §3.7)."""

    statement: Text
    origin: str | None = None


class Requirement(_Strict):
    """What a subject must have on file, re-checked at every access, for the named subsets."""

    subsets: list[Glob] = Field(default_factory=lambda: ["*"], description="globs over subset ids")
    verified_email: StrictBool = True
    institutional_email: StrictBool = False
    agreement: Literal["click-through", "signed", "hand-signed"] = "click-through"
    approval: Literal["manual", "automatic"] = "manual"
    grant_days: int | None = Field(default=365, ge=1, le=3650,
                                   description="how long an approval lasts; null: until revoked")
    clauses: dict[RequirementAspect, Text] = Field(
        default_factory=dict, description="verbatim quote grounding each aspect of the requirement"
    )
    note: str | None = None


class SubsetDef(_Strict):
    id: SubsetId
    paths: list[Glob] = Field(min_length=1, description="globs over paths relative to the dataset root")
    description: str | None = None
    sources: list[Id] = Field(default_factory=list, description="every file of the subset draws from these")
    file_sources: list[Id] = Field(
        default_factory=list, description="some files draw from these; the manifest records which"
    )


class Rule(_Strict):
    """A permit or forbid of actions under conditions, quoting the clause it encodes."""

    id: Id
    effect: Literal["permit", "forbid"]
    actions: list[Action] = Field(min_length=1)
    purposes: list[PurposeId] | None = Field(default=None, description="omitted: any purpose")
    destinations: list[Destination] | None = Field(default=None, description="exports only; omitted: any")
    subsets: list[Glob] | None = Field(default=None, description="globs over subset ids; omitted: all")
    applies_to: list[Layer] = Field(default_factory=lambda: [Layer.DATA], min_length=1)
    waivable_by: Id | None = None
    permits_when_waived: StrictBool = False
    clause: Text
    section: str | None = None
    note: str | None = None


class Obligation(_Strict):
    id: Id
    kind: Literal["cite", "comply_with_licence", "attribute"]
    actions: list[Action] = Field(min_length=1)
    applies_to: list[Layer] = Field(default_factory=lambda: [Layer.DATA, Layer.DERIVED], min_length=1)
    clause: Text
    bibtex: str | None = None
    reference: str | None = None


class Termination(_Strict):
    by: Id
    clause: Text


class _TermsHolder(_Strict):
    title: Text
    licensor: Party
    terms: AgreementText | None = None
    no_terms: NoTerms | None = None
    rules: list[Rule] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)
    notes: str | None = Field(default=None, description="the encoder's reading of the text, for stewards")

    @model_validator(mode="after")
    def _terms_or_none(self) -> _TermsHolder:
        if (self.terms is None) == (self.no_terms is None):
            raise ValueError("give exactly one of 'terms' and 'no_terms'")
        if self.no_terms is not None and (self.rules or self.obligations):
            raise ValueError("a file with 'no_terms' cannot have rules or obligations")
        return self


class DatasetFile(_TermsHolder):
    """`policies/datasets/<id>.yaml`."""

    dataset: Id
    layout: list[Glob] = Field(min_length=1, description="top-level paths as the licensor ships them")
    subsets: list[SubsetDef] = Field(min_length=1)
    requirements: list[Requirement] = Field(default_factory=list)
    termination: Termination | None = None


class SourceFile(_TermsHolder):
    """`policies/sources/<id>.yaml`."""

    source: Id
    url: str | None = None
