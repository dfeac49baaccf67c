"""Load a policy directory: strict YAML, schema validation, cross-references, verbatim clauses.

Every problem is reported as `file:line:column: what is wrong`; loading collects all of them
before failing so a steward fixes a file in one pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from governance.errors import FileFormatError, PolicyDirectoryError, PolicyFileError, PolicyLoadError
from governance.policy import globs
from governance.policy.schema import DatasetFile, PurposesFile, SourceFile
from governance.strict_yaml import Document, Loc, load_file
from governance.types import Action

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Loaded:
    """A validated policy file with its resolved agreement text."""

    path: str
    doc: Document
    model: Any  # DatasetFile | SourceFile
    text: str | None
    sha256: str | None


@dataclass
class PolicySet:
    """Everything in a policy directory, validated and cross-checked (not yet compiled)."""

    root: str
    purposes: PurposesFile
    purposes_doc: Document
    datasets: dict[str, Loaded] = field(default_factory=dict)
    sources: dict[str, Loaded] = field(default_factory=dict)


def bundled_policies_dir() -> Path:
    """The policies shipped with the code: the checkout's `policies/`, else the wheel's copy."""
    checkout = Path(__file__).resolve().parents[2] / "policies"
    if (checkout / "purposes.yaml").is_file():
        return checkout
    bundled = resources.files("governance") / "_bundled_policies"
    return Path(str(bundled))


def normalise_ws(text: str) -> str:
    """Collapse runs of white space so line wrapping does not break a verbatim quote."""
    return " ".join(text.split())


def parse_model(
    doc: Document, model: type[M], *, prefix: Loc = (), cls: type[FileFormatError] = PolicyFileError
) -> tuple[M | None, list[FileFormatError]]:
    """Validate `doc.data` against `model`; map pydantic errors to file positions."""
    data = doc.data
    for part in prefix:
        data = data[part]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        problems: list[FileFormatError] = []
        for err in exc.errors(include_url=False):
            loc = tuple(prefix) + tuple(err["loc"])
            kind = err["type"]
            where = _dotted(loc[len(prefix):]) or "the file"
            parent = _dotted(loc[len(prefix):-1])
            if kind == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'" + (f" in {parent}" if parent else "")
                problems.append(doc.error(loc, msg, key=True, cls=cls))
            elif kind == "missing":
                msg = f"missing required key '{loc[-1]}'" + (f" in {parent}" if parent else "")
                problems.append(doc.error(loc[:-1], msg, cls=cls))
            else:
                text = err["msg"]
                if kind == "string_pattern_mismatch":
                    text = f"'{err['input']}' is not a valid name (lower-case letters, digits, '-', '_', '.')"
                problems.append(doc.error(loc, f"{where}: {text}", cls=cls))
        return None, problems


def _dotted(loc: Loc) -> str:
    """`('rules', 0, 'clause')` -> `rules[0].clause`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_policies(root: str | Path) -> PolicySet:
    """Load and check a policy directory; raises `PolicyLoadError` listing every problem."""
    base = Path(root)
    if not base.is_dir():
        raise PolicyDirectoryError(f"policy directory '{base}' does not exist")
    purposes_path = base / "purposes.yaml"
    if not purposes_path.is_file():
        raise PolicyDirectoryError(f"policy directory '{base}' has no purposes.yaml")
    problems: list[FileFormatError] = []

    for stray in sorted(base.glob("*.y*ml")):
        if stray.name != "purposes.yaml":
            problems.append(
                PolicyFileError(stray, "unexpected policy file: datasets go in datasets/, sources in sources/")
            )

    purposes, pdoc = _load_one(purposes_path, PurposesFile, problems)
    if purposes is None or pdoc is None:
        raise PolicyLoadError(problems)
    ancestors = _check_purposes(purposes, pdoc, problems)
    pset = PolicySet(root=str(base), purposes=purposes, purposes_doc=pdoc)

    for path in sorted((base / "sources").glob("*.y*ml")):
        source, doc = _load_one(path, SourceFile, problems)
        if source is not None and doc is not None:
            _add(pset.sources, source.source, path, doc, source, problems, kind="source")
    for path in sorted((base / "datasets").glob("*.y*ml")):
        dataset, doc = _load_one(path, DatasetFile, problems)
        if dataset is not None and doc is not None:
            _add(pset.datasets, dataset.dataset, path, doc, dataset, problems, kind="dataset")
    if not pset.datasets and not problems:
        problems.append(PolicyFileError(base / "datasets", "no dataset policies found"))

    for dup in set(pset.datasets) & set(pset.sources):
        problems.append(pset.sources[dup].doc.error(("source",), f"'{dup}' names both a dataset and a source", cls=PolicyFileError))

    for loaded in pset.sources.values():
        _check_terms_holder(loaded, ancestors, problems)
    for loaded in pset.datasets.values():
        _check_terms_holder(loaded, ancestors, problems)
        _check_dataset(loaded, pset, problems)
    for loaded in pset.sources.values():
        _check_quoted_from(loaded, pset, problems)
    if problems:
        raise PolicyLoadError(problems)
    return pset


def _load_one(path: Path, model: type[M], problems: list[FileFormatError]) -> tuple[M | None, Document | None]:
    try:
        doc = load_file(path)
    except FileFormatError as exc:
        problems.append(exc)
        return None, None
    if not isinstance(doc.data, dict):
        problems.append(PolicyFileError(path, "a policy file must be a mapping of keys to values"))
        return None, None
    parsed, errs = parse_model(doc, model)
    problems.extend(errs)
    return parsed, doc


def _add(
    into: dict[str, Loaded],
    ident: str,
    path: Path,
    doc: Document,
    model: DatasetFile | SourceFile,
    problems: list[FileFormatError],
    *,
    kind: str,
) -> None:
    if path.stem != ident:
        problems.append(doc.error((kind,), f"{kind} '{ident}' must live in a file named {ident}.yaml", cls=PolicyFileError))
        return
    if ident in into:
        problems.append(doc.error((kind,), f"duplicate {kind} id '{ident}' (also in {into[ident].path})", cls=PolicyFileError))
        return
    text, digest = _resolve_text(path, doc, model, problems)
    into[ident] = Loaded(path=str(path), doc=doc, model=model, text=text, sha256=digest)


def _resolve_text(
    path: Path, doc: Document, model: DatasetFile | SourceFile, problems: list[FileFormatError]
) -> tuple[str | None, str | None]:
    terms = model.terms
    if terms is None:
        return None, None
    if terms.text is not None:
        raw = terms.text.encode("utf-8")
    else:
        assert terms.text_file is not None
        target = (path.parent / terms.text_file).resolve()
        try:
            raw = target.read_bytes()
        except OSError:
            problems.append(doc.error(("terms", "text_file"), f"agreement text file '{terms.text_file}' cannot be read", cls=PolicyFileError))
            return None, None
    digest = hashlib.sha256(raw).hexdigest()
    if terms.sha256 is not None and terms.sha256 != digest:
        problems.append(
            doc.error(("terms", "sha256"), f"sha256 {terms.sha256[:12]}… does not match the agreement text ({digest[:12]}…)", cls=PolicyFileError)
        )
    try:
        return raw.decode("utf-8"), digest
    except UnicodeDecodeError:
        problems.append(doc.error(("terms",), "agreement text is not UTF-8", cls=PolicyFileError))
        return None, None


def _check_purposes(pf: PurposesFile, doc: Document, problems: list[FileFormatError]) -> dict[str, frozenset[str]]:
    parent: dict[str, str | None] = {}
    index: dict[str, int] = {}
    for i, p in enumerate(pf.purposes):
        if p.id in parent:
            problems.append(doc.error(("purposes", i, "id"), f"duplicate purpose id '{p.id}'", cls=PolicyFileError))
            continue
        parent[p.id] = p.parent
        index[p.id] = i
    for pid, par in parent.items():
        if par is not None and par not in parent:
            problems.append(doc.error(("purposes", index[pid], "parent"), f"purpose '{pid}' has unknown parent '{par}'", cls=PolicyFileError))
    ancestors: dict[str, frozenset[str]] = {}
    for pid in parent:
        chain = [pid]
        seen = {pid}
        cur = parent[pid]
        while cur is not None and cur in parent:
            if cur in seen:
                cycle = " -> ".join(chain[chain.index(cur):] + [cur])
                problems.append(doc.error(("purposes", index[pid], "parent"), f"the purpose tree has a cycle: {cycle}", cls=PolicyFileError))
                break
            seen.add(cur)
            chain.append(cur)
            cur = parent[cur]
        ancestors[pid] = frozenset(chain)
    return ancestors


def _check_clause(loaded: Loaded, loc: Loc, clause: str, what: str, problems: list[FileFormatError], text: str | None = None) -> None:
    body = text if text is not None else loaded.text
    if body is None:
        return
    if len(clause.split()) < 3:
        problems.append(loaded.doc.error(loc, f"{what} quotes too little to identify a clause (at least three words)", cls=PolicyFileError))
        return
    if normalise_ws(clause) not in normalise_ws(body):
        short = normalise_ws(clause)
        short = short if len(short) <= 60 else short[:57] + "..."
        problems.append(loaded.doc.error(loc, f"{what} cites a clause that is not in the agreement text: \"{short}\"", cls=PolicyFileError))


def _check_terms_holder(loaded: Loaded, ancestors: dict[str, frozenset[str]], problems: list[FileFormatError]) -> None:
    model = loaded.model
    licensor = model.licensor.id
    seen: set[str] = set()
    for i, rule in enumerate(model.rules):
        loc: Loc = ("rules", i)
        if rule.id in seen:
            problems.append(loaded.doc.error((*loc, "id"), f"duplicate rule id '{rule.id}'", cls=PolicyFileError))
        seen.add(rule.id)
        _check_clause(loaded, (*loc, "clause"), rule.clause, f"rule '{rule.id}'", problems)
        for j, purpose in enumerate(rule.purposes or []):
            if purpose not in ancestors:
                problems.append(loaded.doc.error((*loc, "purposes", j), f"rule '{rule.id}' names unknown purpose '{purpose}'", cls=PolicyFileError))
        if rule.waivable_by is not None:
            if rule.effect != "forbid":
                problems.append(loaded.doc.error((*loc, "waivable_by"), f"rule '{rule.id}' is a permit; only a forbid can be waived", cls=PolicyFileError))
            elif rule.waivable_by != licensor:
                problems.append(
                    loaded.doc.error(
                        (*loc, "waivable_by"),
                        f"rule '{rule.id}' can only be waived by its licensor '{licensor}', not '{rule.waivable_by}'",
                        cls=PolicyFileError,
                    )
                )
        if rule.permits_when_waived and rule.waivable_by is None:
            problems.append(loaded.doc.error((*loc, "permits_when_waived"), f"rule '{rule.id}' sets permits_when_waived but is not waivable", cls=PolicyFileError))
        if rule.destinations is not None and not ({Action.EXPORT, Action.COPY_INTERNAL} & set(rule.actions)):
            problems.append(loaded.doc.error((*loc, "destinations"), f"rule '{rule.id}' names destinations but no export action", cls=PolicyFileError))
        if isinstance(model, SourceFile) and rule.subsets is not None:
            problems.append(loaded.doc.error((*loc, "subsets"), f"rule '{rule.id}': a source's rules cannot name subsets", cls=PolicyFileError))
    seen_ob: set[str] = set()
    for i, ob in enumerate(model.obligations):
        if ob.id in seen_ob:
            problems.append(loaded.doc.error(("obligations", i, "id"), f"duplicate obligation id '{ob.id}'", cls=PolicyFileError))
        seen_ob.add(ob.id)
        _check_clause(loaded, ("obligations", i, "clause"), ob.clause, f"obligation '{ob.id}'", problems)


def _check_dataset(loaded: Loaded, pset: PolicySet, problems: list[FileFormatError]) -> None:
    model: DatasetFile = loaded.model
    doc = loaded.doc
    subset_ids: list[str] = []
    all_paths: dict[str, str] = {}
    for i, sub in enumerate(model.subsets):
        if sub.id in subset_ids:
            problems.append(doc.error(("subsets", i, "id"), f"duplicate subset id '{sub.id}'", cls=PolicyFileError))
            continue
        subset_ids.append(sub.id)
        for j, pattern in enumerate(sub.paths):
            ploc: Loc = ("subsets", i, "paths", j)
            try:
                globs.compile_glob(pattern)
            except globs.GlobError as exc:
                problems.append(doc.error(ploc, str(exc), cls=PolicyFileError))
                continue
            if not any(globs.may_overlap(pattern, entry) or globs.literal_prefix(pattern).startswith(entry) for entry in model.layout):
                problems.append(doc.error(ploc, f"subset '{sub.id}' path glob '{pattern}' matches nothing in the declared layout", cls=PolicyFileError))
            if pattern in all_paths:
                problems.append(doc.error(ploc, f"path glob '{pattern}' is claimed by subsets '{all_paths[pattern]}' and '{sub.id}'", cls=PolicyFileError))
            all_paths[pattern] = sub.id
        for key in ("sources", "file_sources"):
            for j, src in enumerate(getattr(sub, key)):
                if src not in pset.sources:
                    problems.append(doc.error(("subsets", i, key, j), f"subset '{sub.id}' names unknown source '{src}'", cls=PolicyFileError))
    for i, req in enumerate(model.requirements):
        for j, pattern in enumerate(req.subsets):
            if not globs.match_names(pattern, subset_ids):
                problems.append(doc.error(("requirements", i, "subsets", j), f"requirement glob '{pattern}' matches no declared subset", cls=PolicyFileError))
        for aspect, clause in req.clauses.items():
            _check_clause(loaded, ("requirements", i, "clauses", aspect), clause, f"the {aspect} requirement", problems)
    for i, rule in enumerate(model.rules):
        for j, pattern in enumerate(rule.subsets or []):
            if not globs.match_names(pattern, subset_ids):
                problems.append(doc.error(("rules", i, "subsets", j), f"rule '{rule.id}' subset glob '{pattern}' matches no declared subset", cls=PolicyFileError))
    if model.termination is not None:
        if model.termination.by != model.licensor.id:
            problems.append(doc.error(("termination", "by"), f"termination is by '{model.termination.by}', not the licensor '{model.licensor.id}'", cls=PolicyFileError))
        _check_clause(loaded, ("termination", "clause"), model.termination.clause, "the termination right", problems)
    if model.no_terms is None and not model.requirements:
        problems.append(doc.error(("dataset",), f"dataset '{model.dataset}' has terms but no requirements", cls=PolicyFileError))


def _check_quoted_from(loaded: Loaded, pset: PolicySet, problems: list[FileFormatError]) -> None:
    terms = loaded.model.terms
    if terms is None or terms.quoted_from is None or loaded.text is None:
        return
    quoting = pset.datasets.get(terms.quoted_from)
    if quoting is None and (Path(pset.root) / "datasets" / f"{terms.quoted_from}.yaml").is_file():
        return  # that dataset's file failed to load and reports its own problem
    if quoting is None:
        problems.append(loaded.doc.error(("terms", "quoted_from"), f"quoted_from names unknown dataset '{terms.quoted_from}'", cls=PolicyFileError))
        return
    _check_clause(loaded, ("terms", "text"), loaded.text, "the quoted passage", problems, text=quoting.text)
