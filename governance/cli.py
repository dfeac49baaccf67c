"""`govern`: the command line, a thin adapter over the core (edge module: may import typer)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from governance.config import Settings
from governance.errors import GovernanceError, PolicyLoadError
from governance.policy import load_compiled
from governance.policy.compile import CompiledPolicies
from governance.policy.evaluate import Engine
from governance.policy.explain import render
from governance.policy.loader import bundled_policies_dir
from governance.policy.scenarios import load_scenarios, run_scenario, summary_line

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Licence- and provenance-aware data governance.")
policy_app = typer.Typer(no_args_is_help=True, help="Validate, show and document policies.")
app.add_typer(policy_app, name="policy")
db_app = typer.Typer(no_args_is_help=True, help="Database schema (GOVERNANCE_DATABASE_URL; default a SQLite file).")
app.add_typer(db_app, name="db")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit chain.")
app.add_typer(audit_app, name="audit")


@dataclass
class Ctx:
    policies_dir: Path


class Exit(Exception):
    """Stop with a message on stderr and an exit code (raised by commands, printed by main)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@app.callback()
def _root(
    ctx: typer.Context,
    policies: Annotated[Optional[Path], typer.Option("--policies", envvar="GOVERNANCE_POLICIES_DIR",
                                                     help="policy directory (default: the bundled policies/)")] = None,
) -> None:
    ctx.obj = Ctx(policies_dir=policies or bundled_policies_dir())


def _compiled(ctx: typer.Context, override: Path | None = None) -> CompiledPolicies:
    return load_compiled(override or ctx.obj.policies_dir)


def _now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Exit(f"--now {value!r} is not an ISO 8601 time (e.g. 2026-06-01T00:00:00Z)") from None
    if parsed.tzinfo is None:
        raise Exit(f"--now {value!r} needs a time zone (e.g. a trailing Z)")
    return parsed


# ------------------------------------------------------------------ policy


@policy_app.command("validate")
def policy_validate(
    ctx: typer.Context,
    directory: Annotated[Optional[Path], typer.Argument(help="policy directory (default: --policies)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a policy directory: strict YAML, schema, references, verbatim clauses."""
    root = directory or ctx.obj.policies_dir
    try:
        compiled = _compiled(ctx, root)
    except PolicyLoadError as exc:
        if as_json:
            print(json.dumps({"ok": False, "problems": [p.render() for p in exc.problems]}))
        else:
            for p in exc.problems:
                print(p.render(), file=sys.stderr)
            print(f"{len(exc.problems)} problem(s) in {root}", file=sys.stderr)
        raise typer.Exit(1) from None
    rules = sum(len(t.rules) for t in [*compiled.datasets.values(), *compiled.sources.values()])
    summary = {
        "ok": True,
        "directory": str(root),
        "datasets": sorted(compiled.datasets),
        "sources": sorted(compiled.sources),
        "purposes": len(compiled.ancestors),
        "rules": rules,
    }
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"ok: {len(compiled.datasets)} datasets, {len(compiled.sources)} sources, "
              f"{summary['purposes']} purposes, {rules} rules; every clause is quoted verbatim from its agreement")


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a dataset or source id, e.g. 2k2k or deepfashion")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a dataset's or source's rules beside the clauses they encode."""
    from governance.policy.show import show_json, show_text

    compiled = _compiled(ctx)
    terms = compiled.terms(name)
    if terms is None:
        known = ", ".join(sorted([*compiled.datasets, *compiled.sources]))
        raise Exit(f"unknown dataset or source '{name}'; known: {known}")
    print(json.dumps(show_json(terms, compiled), indent=2) if as_json else show_text(terms, compiled))


@policy_app.command("schema")
def policy_schema(
    kind: Annotated[str, typer.Argument(help="dataset, source or purposes")] = "dataset",
) -> None:
    """Print the JSON Schema of a policy file kind (for editors)."""
    from pydantic import BaseModel

    from governance.policy.schema import DatasetFile, PurposesFile, SourceFile

    models: dict[str, type[BaseModel]] = {"dataset": DatasetFile, "source": SourceFile, "purposes": PurposesFile}
    if kind not in models:
        raise Exit(f"unknown schema kind '{kind}'; choose dataset, source or purposes")
    schema = models[kind].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    print(json.dumps(schema, indent=2))


# ------------------------------------------------------------------ decisions


def _engine(ctx: typer.Context) -> Engine:
    return Engine(_compiled(ctx))


@app.command("check")
def check(
    ctx: typer.Context,
    scenarios: Annotated[Path, typer.Option("--scenarios", help="scenario file (shared/acceptance format)")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per scenario per line")] = False,
    now: Annotated[Optional[str], typer.Option("--now", help="clock for scenarios without 'now'")] = None,
) -> None:
    """Run decision scenarios; exit 0 only if every expectation holds."""
    engine = _engine(ctx)
    loaded = load_scenarios(scenarios, engine.policies)
    clock = _now(now)
    failed = 0
    for item in loaded:
        outcome = run_scenario(engine, item, default_now=clock)
        failed += not outcome.ok
        print(json.dumps(outcome.as_json()) if as_json else summary_line(outcome))
    if not as_json:
        print(f"{len(loaded) - failed}/{len(loaded)} scenarios pass", file=sys.stderr)
    if failed:
        raise typer.Exit(1)


@app.command("explain")
def explain(
    ctx: typer.Context,
    scenarios: Annotated[Path, typer.Option("--scenarios", help="scenario file")],
    ids: Annotated[Optional[list[str]], typer.Option("--id", help="only these scenario ids")] = None,
    now: Annotated[Optional[str], typer.Option("--now", help="clock for scenarios without 'now'")] = None,
) -> None:
    """Explain decisions for people: clauses quoted, provenance drawn, remedies."""
    engine = _engine(ctx)
    loaded = load_scenarios(scenarios, engine.policies)
    if ids:
        unknown = sorted(set(ids) - {s.scenario.id for s in loaded})
        if unknown:
            raise Exit(f"no scenario with id {', '.join(unknown)} in {scenarios}")
        loaded = [s for s in loaded if s.scenario.id in ids]
    clock = _now(now)
    blocks = []
    for item in loaded:
        outcome = run_scenario(engine, item, default_now=clock)
        req: dict[str, Any] = item.scenario.request.model_dump()
        who = item.scenario.subject.email
        status = "as expected" if outcome.ok else "UNEXPECTED: " + "; ".join(outcome.problems)
        blocks.append(f"# {item.scenario.id} ({who}; {status})\n{render(outcome.decision, req)}")
    print("\n\n".join(blocks))


# ------------------------------------------------------------------ storage and audit


def _settings() -> Settings:
    return Settings.from_env(os.environ)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from governance.storage.db import make_engine, redact, upgrade  # storage loads only for storage commands

    settings = _settings()
    engine = make_engine(settings.database_url)
    revision = upgrade(engine)
    print(f"database {redact(settings.database_url)} is at revision {revision}")


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    public_key: Annotated[Optional[Path], typer.Option("--public-key", help="verification key (default: the .pub beside the signing key)")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="checkpoint file (default: the data directory's)")] = None,
) -> None:
    """Check every link of the chain and the latest signed checkpoint; exit 1 on any damage.

    Needs only the public verification key, so an auditor can run it with a copy of the
    checkpoint and key that the operator cannot alter."""
    from governance.audit import store as audit_store
    from governance.storage.db import make_engine, require_current

    settings = _settings()
    engine = make_engine(settings.database_url)
    require_current(engine)
    checkpoint_file = checkpoint or settings.checkpoint_path
    if checkpoint is not None and not checkpoint.exists():
        raise Exit(f"checkpoint file {checkpoint} does not exist")
    key = (audit_store.load_public_key(public_key or audit_store.public_key_path(settings.audit_key_path))
           if checkpoint_file.exists() else None)
    result = audit_store.verify(engine, checkpoint_file=checkpoint_file, key=key)
    if as_json:
        print(json.dumps({"ok": result.ok, "events": result.events, "first_bad": result.first_bad, "problem": result.problem}))
    elif result.ok:
        against = "and matches the signed checkpoint" if key is not None else "(no checkpoint yet: run `govern audit checkpoint`)"
        print(f"ok: {result.events} events, every link intact {against}")
    else:
        where = f" at event {result.first_bad}" if result.first_bad is not None else ""
        print(f"FAILED{where}: {result.problem}", file=sys.stderr)
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain's head with the audit key and write it outside the database too."""
    from governance.audit import store as audit_store
    from governance.storage.db import make_engine, require_current

    settings = _settings()
    engine = make_engine(settings.database_url)
    require_current(engine)
    key = audit_store.load_or_create_key(settings.audit_key_path)
    cp = audit_store.checkpoint(engine, key=key, at=datetime.now(UTC), out=settings.checkpoint_path)
    if cp is None:
        print("the audit chain is empty; nothing to sign")
    else:
        print(f"signed checkpoint: event {cp.seq}, head {cp.head[:16]}…, written to {settings.checkpoint_path}")


# `govern policy explain` is the same command, listed where DESIGN §9 puts it too.
policy_app.command("explain", help="Same as `govern explain`.")(explain)


def main() -> None:
    """Entry point: one clear line and a non-zero exit for every expected failure.

    typer runs in standalone mode, so it prints usage errors itself (exit 2) and exits with the
    code of `typer.Exit`; our own errors propagate out of it and are printed here.
    """
    try:
        app()
    except Exit as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except PolicyLoadError as exc:
        for p in exc.problems:
            print(p.render(), file=sys.stderr)
        sys.exit(1)
    except GovernanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("GOVERNANCE_DEBUG"):
            raise
        # SECURITY: no traceback or exception text to the user; it may hold secrets later.
        print(f"error: internal error ({type(exc).__name__}); set GOVERNANCE_DEBUG=1 to see the traceback", file=sys.stderr)
        sys.exit(70)


if __name__ == "__main__":
    main()
