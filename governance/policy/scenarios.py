"""Decision scenarios in the format of shared/acceptance/README.md: read, run, report.

A scenario states who asks (subject state, manifest tags, artefact lineage), what they ask, and
what the engine must answer. The same files drive `govern check --scenarios`, `govern explain`
and the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from governance.errors import FileFormatError, LineageError, ScenarioFileError
from governance.policy.compile import CompiledPolicies
from governance.policy.decision import Decision
from governance.policy.evaluate import Engine
from governance.policy.facts import ArtefactFact, ManifestEntry, SubjectState
from governance.policy.loader import parse_model
from governance.provenance.lineage import ARTEFACT_PREFIX, Provenance
from governance.strict_yaml import Document, load_file
from governance.types import NoteCode, ReasonCode


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScenarioRequest(_Strict):
    # Plain strings, not enums: an unknown action or purpose is a deny to test, not a file error.
    action: str
    resource: str
    purpose: str
    destination: str | None = None


class Expect(_Strict):
    effect: Literal["permit", "deny"]
    reasons: list[ReasonCode] = Field(default_factory=list)
    obligations: list[str] = Field(default_factory=list)
    notes: list[NoteCode] = Field(default_factory=list)


class Scenario(_Strict):
    id: str = Field(min_length=1, max_length=200)
    description: str | None = None
    now: AwareDatetime | None = None
    subject: SubjectState
    manifest: list[ManifestEntry] = Field(default_factory=list)
    artefacts: dict[str, ArtefactFact] = Field(default_factory=dict)
    request: ScenarioRequest
    expect: Expect


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    provenance: Provenance
    line: int


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    decision: Decision
    ok: bool
    problems: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "id": self.scenario.id,
            "ok": self.ok,
            "effect": d.effect,
            "reasons": list(d.codes),
            "obligations": sorted({o.kind for o in d.obligations}),
            "notes": [n.code.value for n in d.notes],
            "expected": self.scenario.expect.model_dump(mode="json"),
            "problems": list(self.problems),
        }


def load_scenarios(path: str | Path, policies: CompiledPolicies) -> list[LoadedScenario]:
    """Read a scenario file strictly; every problem is `file:line:column: what`."""
    try:
        doc = load_file(path)
    except FileFormatError as exc:
        raise ScenarioFileError(exc.path, exc.msg, line=exc.line, column=exc.column) from None
    if not isinstance(doc.data, list) or not doc.data:
        raise ScenarioFileError(str(path), "a scenario file is a non-empty list of scenarios")
    problems: list[FileFormatError] = []
    out: list[LoadedScenario] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(doc.data):
        if not isinstance(item, dict):
            problems.append(doc.error((i,), f"scenario {i + 1} is not a mapping", cls=ScenarioFileError))
            continue
        sc, errs = parse_model(doc, Scenario, prefix=(i,), cls=ScenarioFileError)
        problems.extend(errs)
        if sc is None:
            continue
        line = doc.where((i,)).line
        if sc.id in seen:
            problems.append(doc.error((i, "id"), f"duplicate scenario id '{sc.id}' (first at line {seen[sc.id]})", cls=ScenarioFileError))
            continue
        seen[sc.id] = line
        prov = _facts(doc, i, sc, policies, problems)
        if prov is not None:
            out.append(LoadedScenario(sc, prov, line))
    if problems:
        raise problems[0] if len(problems) == 1 else ScenarioFileError(
            problems[0].path, f"{problems[0].msg} (and {len(problems) - 1} more problems)",
            line=problems[0].line, column=problems[0].column,
        )
    return out


def _facts(doc: Document, i: int, sc: Scenario, policies: CompiledPolicies, problems: list[FileFormatError]) -> Provenance | None:
    """Check a scenario's facts against the policies and build its provenance snapshot."""
    ok = True
    for j, g in enumerate(sc.subject.grants):
        if g.scope.startswith(ARTEFACT_PREFIX):
            if g.scope[len(ARTEFACT_PREFIX):] not in sc.artefacts:
                problems.append(doc.error((i, "subject", "grants", j, "scope"), f"grant scope '{g.scope}' names an artefact the scenario does not register", cls=ScenarioFileError))
                ok = False
            continue
        ds_id, _, sub = g.scope.partition("/")
        ds = policies.datasets.get(ds_id)
        if ds is None or (sub and sub not in ds.subsets):
            problems.append(doc.error((i, "subject", "grants", j, "scope"), f"grant scope '{g.scope}' is not a known dataset or subset", cls=ScenarioFileError))
            ok = False
        if g.purpose not in policies.ancestors:
            problems.append(doc.error((i, "subject", "grants", j, "purpose"), f"grant purpose '{g.purpose}' is not a known purpose", cls=ScenarioFileError))
            ok = False
    manifest: dict[tuple[str, str], list[str]] = {}
    for j, entry in enumerate(sc.manifest):
        ds_id, sep, path = entry.resource.partition(":")
        if not sep or ds_id not in policies.datasets:
            problems.append(doc.error((i, "manifest", j, "resource"), f"manifest resource '{entry.resource}' is not 'dataset:path' of a known dataset", cls=ScenarioFileError))
            ok = False
            continue
        for k, tag in enumerate(entry.sources):
            if tag not in policies.sources:
                problems.append(doc.error((i, "manifest", j, "sources", k), f"unknown source tag '{tag}'", cls=ScenarioFileError))
                ok = False
        manifest[(ds_id, path)] = entry.sources
    try:
        prov = Provenance(manifest=manifest, artefacts={k: v.derived_from for k, v in sc.artefacts.items()})
    except LineageError as exc:
        problems.append(doc.error((i, "artefacts"), str(exc), cls=ScenarioFileError))
        return None
    return prov if ok else None


def run_scenario(engine: Engine, loaded: LoadedScenario, *, default_now: datetime) -> Outcome:
    sc = loaded.scenario
    subject = engine.subject(sc.subject)
    req = sc.request
    decision = engine.decide(
        subject,
        action=req.action,
        resource=req.resource,
        purpose=req.purpose,
        destination=req.destination,
        now=sc.now or default_now,
        provenance=loaded.provenance,
    )
    exp = sc.expect
    problems: list[str] = []
    if decision.effect != exp.effect:
        problems.append(f"expected {exp.effect}, got {decision.effect}")
    missing = [c.value for c in exp.reasons if c.value not in decision.codes]
    if missing:
        problems.append(f"missing reasons {missing}")
    kinds = {o.kind for o in decision.obligations}
    missing_ob = [k for k in exp.obligations if k not in kinds]
    if missing_ob:
        problems.append(f"missing obligations {missing_ob}")
    notes = {n.code for n in decision.notes}
    missing_notes = [n.value for n in exp.notes if n not in notes]
    if missing_notes:
        problems.append(f"missing notes {missing_notes}")
    return Outcome(sc, decision, not problems, tuple(problems))


def summary_line(outcome: Outcome) -> str:
    d = outcome.decision
    status = "PASS" if outcome.ok else "FAIL"
    detail = f"reasons: {', '.join(d.codes)}" if d.reasons else ""
    if d.obligations:
        detail = (detail + "; " if detail else "") + "obligations: " + ", ".join(sorted({o.kind for o in d.obligations}))
    text = f"{status}  {outcome.scenario.id}: {d.effect}" + (f" ({detail})" if detail else "")
    if outcome.problems:
        text += " -- " + "; ".join(outcome.problems)
    return text
