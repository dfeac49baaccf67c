"""`govern`: the command line, a thin adapter over the core (edge module: may import typer)."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from governance.config import Settings
from governance.errors import GovernanceError, PolicyLoadError
from governance.policy import load_compiled
from governance.policy.compile import CompiledPolicies
from governance.policy.evaluate import Engine
from governance.policy.explain import render
from governance.policy.loader import bundled_policies_dir
from governance.policy.scenarios import load_scenarios, run_scenario, summary_line

if TYPE_CHECKING:  # storage and workflow modules load only for the commands that use them
    from governance.identity.roles import Actor, Role
    from governance.workspace import Workspace

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
    acting_as: str | None = None


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
    acting_as: Annotated[Optional[str], typer.Option("--as", envvar="GOVERNANCE_ACTOR",
                                                     help="act as this user, with their roles (default: the local operator)")] = None,
) -> None:
    ctx.obj = Ctx(policies_dir=policies or bundled_policies_dir(), acting_as=acting_as)


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
    scenarios: Annotated[Optional[Path], typer.Option("--scenarios", help="scenario file (shared/acceptance format)")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="decide for this user, from stored state")] = None,
    resources: Annotated[Optional[list[str]], typer.Option("--resource", help="dataset:path or artefact:id (repeatable)")] = None,
    resources_file: Annotated[Optional[Path], typer.Option("--resources-file", help="one resource per line ('-': stdin)")] = None,
    action: Annotated[Optional[str], typer.Option("--action")] = None,
    purpose: Annotated[Optional[str], typer.Option("--purpose")] = None,
    destination: Annotated[Optional[str], typer.Option("--destination", help="for exports")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    now: Annotated[Optional[str], typer.Option("--now", help="decide as of this time (default: now)")] = None,
) -> None:
    """Decide from stored state (--user …) or run decision scenarios (--scenarios FILE).

    Exit 0 when everything is permitted (or every scenario holds), 1 otherwise."""
    if scenarios is not None:
        if user is not None or resources or resources_file is not None:
            raise Exit("give either --scenarios or --user with --resource, not both")
        _check_scenarios(ctx, scenarios, as_json, now)
        return
    if user is None:
        raise Exit("give --user EMAIL with --resource, --action and --purpose (or --scenarios FILE)")
    wanted = list(resources or [])
    if resources_file is not None:
        text = sys.stdin.read() if str(resources_file) == "-" else _read_text(resources_file)
        wanted += [line.strip() for line in text.splitlines() if line.strip()]
    if not wanted:
        raise Exit("name at least one --resource (or --resources-file)")
    if action is None or purpose is None:
        raise Exit("--action and --purpose are required")
    from governance.approvals import state

    ws = _workspace(ctx)
    result = state.check(ws, email=user, resources=wanted, action=action, purpose=purpose, destination=destination,
                         now=_now(now), actor=_actor(ctx, ws).label if ctx.obj.acting_as else None)
    if as_json:
        print(json.dumps({"user": result.user, "action": action, "purpose": purpose, "destination": destination,
                          "permitted": len(wanted) - result.denied, "denied": result.denied,
                          "results": [{"resource": r, "decision": d.model_dump(mode="json", exclude_defaults=True)}
                                      for r, d in zip(wanted, result.decisions, strict=True)]}))
    else:
        req = {"action": action, "purpose": purpose, "destination": destination}
        if len(wanted) == 1:
            print(f"{wanted[0]}: {render(result.decisions[0], req | {'resource': wanted[0]})}")
        else:
            for r, d in zip(wanted, result.decisions, strict=True):
                print(f"{d.effect:6} {r}" + (f"  ({', '.join(d.codes)})" if d.codes else ""))
            print(f"{len(wanted) - result.denied} permitted, {result.denied} denied", file=sys.stderr)
    if result.denied:
        raise typer.Exit(1)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise Exit(f"cannot read {path}: {exc.strerror}") from None


def _check_scenarios(ctx: typer.Context, scenarios: Path, as_json: bool, now: str | None) -> None:
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


# ------------------------------------------------------------------ workflow (users, roles, requests, grants …)

user_app = typer.Typer(no_args_is_help=True, help="Users and e-mail verification.")
app.add_typer(user_app, name="user")
role_app = typer.Typer(no_args_is_help=True, help="Roles: approver (per dataset), auditor, admin.")
app.add_typer(role_app, name="role")
domain_app = typer.Typer(no_args_is_help=True, help="The deployment's allow and deny lists for institutional e-mail.")
app.add_typer(domain_app, name="domain")
agreement_app = typer.Typer(no_args_is_help=True, help="Agreement acceptance.")
app.add_typer(agreement_app, name="agreement")
form_app = typer.Typer(no_args_is_help=True, help="Signed agreement forms.")
app.add_typer(form_app, name="form")
request_app = typer.Typer(no_args_is_help=True, help="Access requests: create, list, approve, deny, ask for more, reply, withdraw.")
app.add_typer(request_app, name="request")
grant_app = typer.Typer(no_args_is_help=True, help="Grants: list and revoke.")
app.add_typer(grant_app, name="grant")
waiver_app = typer.Typer(no_args_is_help=True, help="Licensors' written permissions lifting waivable rules.")
app.add_typer(waiver_app, name="waiver")
artefact_app = typer.Typer(no_args_is_help=True, help="Registered derivatives and their lineage.")
app.add_typer(artefact_app, name="artefact")
origins_app = typer.Typer(no_args_is_help=True, help="Which upstream sources individual files draw from.")
app.add_typer(origins_app, name="origins")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _workspace(ctx: typer.Context) -> Workspace:
    from governance.storage.db import require_current
    from governance.workspace import Workspace

    ws = Workspace(_settings(), policies=ctx.obj.policies_dir, env=os.environ)
    require_current(ws.db)
    return ws


def _actor(ctx: typer.Context, ws: Workspace) -> Actor:
    from governance.identity.roles import load_actor, operator

    if ctx.obj.acting_as:
        return load_actor(ws, ctx.obj.acting_as)
    return operator(getpass.getuser())


def _emit(as_json: bool, payload: Any, text: str) -> None:
    print(json.dumps(payload) if as_json else text)


def _records(records: list[Any]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in records]


def _read_document(path: Path) -> bytes:
    try:
        if path.stat().st_size > 10 * 1024 * 1024:
            raise Exit(f"{path} is larger than 10 MiB")
        return path.read_bytes()
    except OSError as exc:
        raise Exit(f"cannot read {path}: {exc.strerror}") from None


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    email: str,
    organisation: Annotated[Optional[str], typer.Option("--org", help="organisation id, e.g. hkust")] = None,
    site: Annotated[Optional[str], typer.Option("--site", help="site within the organisation")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a user (unverified until they follow the link `govern user verify` sends)."""
    from governance.identity import service as identity
    from governance.identity.roles import Role

    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    actor.require(Role.ADMIN)
    user = identity.register_user(engine=ws, now=datetime.now(UTC), email=email, organisation=organisation, site=site,
                                  actor=actor.label)
    _emit(as_json, vars(user), f"registered {user.email} (id {user.id}); send a verification link with `govern user verify {user.email}`")


@user_app.command("verify")
def user_verify(
    ctx: typer.Context,
    email: str,
    link: Annotated[str, typer.Option("--link", envvar="GOVERNANCE_VERIFY_URL", help="base URL of the verification page")]
    = "http://127.0.0.1:8000/v1/verify-email",
) -> None:
    """Send a single-use verification link (SMTP if configured, else the outbox directory)."""
    from governance.identity import service as identity
    from governance.identity.mail import OutboxMailer
    from governance.identity.roles import Role

    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    user = identity.get_user(engine=ws.db, email=email)
    if actor.user_id != user.id:
        actor.require(Role.ADMIN)
    identity.send_verification(engine=ws, mailer=ws.mailer, secret=ws.token_secret, now=datetime.now(UTC),
                               user_id=user.id, link=link, actor=actor.label)
    where = f"written to the outbox {ws.mailer.directory}" if isinstance(ws.mailer, OutboxMailer) else "sent by SMTP"
    print(f"verification link for {user.email} {where}; confirm with `govern user confirm-email --message FILE`")


@user_app.command("confirm-email")
def user_confirm_email(
    ctx: typer.Context,
    message: Annotated[Optional[Path], typer.Option("--message", help="the verification mail (.eml) holding the link")] = None,
    token_file: Annotated[Optional[Path], typer.Option("--token-file", help="a file holding the token ('-': stdin)")] = None,
) -> None:
    """Redeem a verification link, as following it in a browser does.

    The token is read from a file, never from the command line (where other users could see it)."""
    from governance.identity import service as identity

    if (message is None) == (token_file is None):
        raise Exit("give exactly one of --message FILE.eml and --token-file FILE")
    if message is not None:
        token = _token_from_mail(message)
    else:
        assert token_file is not None
        token = (sys.stdin.read() if str(token_file) == "-" else _read_text(token_file)).strip()
    ws = _workspace(ctx)
    user = identity.verify_email(engine=ws, secret=ws.token_secret, now=datetime.now(UTC), token=token)
    print(f"{user.email} is verified")


def _token_from_mail(path: Path) -> str:
    import email as email_lib
    import email.policy
    import re

    try:
        parsed = email_lib.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    except OSError as exc:
        raise Exit(f"cannot read {path}: {exc.strerror}") from None
    body = parsed.get_body(preferencelist=("plain",)) if parsed.is_multipart() else parsed
    content = body.get_content() if body is not None else ""
    found = re.search(r"[?&]token=([A-Za-z0-9_.\-]+)", content)
    if found is None:
        raise Exit(f"{path} holds no verification link")
    return found.group(1)


@user_app.command("change-email")
def user_change_email(ctx: typer.Context, email: str, new_email: str) -> None:
    """Give a user a new address; it must be verified again before it counts."""
    from governance.identity import service as identity
    from governance.identity.roles import Role

    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    user = identity.get_user(engine=ws.db, email=email)
    if actor.user_id != user.id:
        actor.require(Role.ADMIN)
    changed = identity.change_email(engine=ws, now=datetime.now(UTC), user_id=user.id, email=new_email, actor=actor.label)
    print(f"{user.email} is now {changed.email} (unverified until its link is followed)")


@user_app.command("show")
def user_show(ctx: typer.Context, email: str, as_json: JsonOpt = False) -> None:
    """A user's stored state: verification, roles, agreements, forms, grants, waivers, terminations."""
    from governance.approvals.state import subject_state
    from governance.approvals.workflow import user_row
    from governance.identity.roles import ROLES, Role

    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    with ws.connect() as conn:
        row = user_row(conn, email)
        if actor.user_id != row.id:
            actor.require(Role.AUDITOR)
        state = subject_state(conn, ws.policies, row)
        roles = sorted(f"{r.role}" + (f":{r.dataset}" if r.dataset != "*" else "")
                       for r in conn.execute(ROLES.select().where(ROLES.c.user_id == row.id)).all())
    payload = state.model_dump(mode="json") | {"roles": roles, "disabled": bool(row.disabled)}
    if as_json:
        print(json.dumps(payload))
        return
    print(f"{state.email}  ({'verified' if state.email_verified else 'UNVERIFIED'}; organisation {state.organisation or '-'}, "
          f"site {state.site or '-'}; roles: {', '.join(roles) or 'researcher'})")
    for ds_id, sha in sorted(state.accepted.items()):
        current = ws.policies.datasets[ds_id].sha256 if ds_id in ws.policies.datasets else None
        print(f"  accepted {ds_id} agreement sha256 {sha[:12]}…" + ("" if sha == current else "  (OUTDATED)"))
    for ds_id in state.signed:
        print(f"  signed form on file for {ds_id}")
    for g in state.grants:
        print(f"  grant {g.id}: {g.scope} for {g.purpose}, until {g.expires or 'revoked'}" + ("  (REVOKED)" if g.revoked else ""))
    for ds_id in state.terminated:
        print(f"  TERMINATED by the licensor of {ds_id}")


@user_app.command("disable")
def user_disable(ctx: typer.Context, email: str) -> None:
    """Disable an account: every later check for it is denied (admins only)."""
    _set_disabled(ctx, email, True)


@user_app.command("enable")
def user_enable(ctx: typer.Context, email: str) -> None:
    """Enable a disabled account again (admins only)."""
    _set_disabled(ctx, email, False)


def _set_disabled(ctx: typer.Context, email: str, disabled: bool) -> None:
    from governance.identity import service as identity
    from governance.identity.roles import Role

    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    actor.require(Role.ADMIN)
    user = identity.set_disabled(engine=ws, now=datetime.now(UTC), email=email, disabled=disabled, actor=actor.label)
    print(f"{user.email} is {'disabled' if disabled else 'enabled'}")


@role_app.command("grant")
def role_grant(ctx: typer.Context, email: str, role: str,
               dataset: Annotated[Optional[str], typer.Option("--dataset", help="for approvers: the dataset stewarded ('*': all)")] = None
               ) -> None:
    """Give a user a role (admins only)."""
    from governance.identity import roles

    ws = _workspace(ctx)
    roles.grant_role(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), email=email, role=_role(role), dataset=dataset,
                     datasets=ws.policies.datasets)
    print(f"{email} is now {role}" + (f" for {dataset}" if dataset else ""))


@role_app.command("revoke")
def role_revoke(ctx: typer.Context, email: str, role: str,
                dataset: Annotated[Optional[str], typer.Option("--dataset")] = None) -> None:
    """Take a role away (admins only)."""
    from governance.identity import roles

    ws = _workspace(ctx)
    roles.revoke_role(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), email=email, role=_role(role), dataset=dataset,
                      datasets=ws.policies.datasets)
    print(f"{email} is no longer {role}" + (f" for {dataset}" if dataset else ""))


def _role(value: str) -> Role:
    from governance.identity.roles import Role

    try:
        return Role(value)
    except ValueError:
        raise Exit(f"unknown role {value!r}; roles are {', '.join(r.value for r in Role)}") from None


@domain_app.command("allow")
def domain_allow(ctx: typer.Context, domain: str) -> None:
    """Count addresses at DOMAIN (and its subdomains) as institutional."""
    _set_domain(ctx, domain, "allow")


@domain_app.command("deny")
def domain_deny(ctx: typer.Context, domain: str) -> None:
    """Never count addresses at DOMAIN as institutional."""
    _set_domain(ctx, domain, "deny")


@domain_app.command("remove")
def domain_remove(ctx: typer.Context, domain: str) -> None:
    """Take DOMAIN off the allow or deny list."""
    _set_domain(ctx, domain, None)


def _set_domain(ctx: typer.Context, domain: str, listed: str | None) -> None:
    from governance.identity import roles

    ws = _workspace(ctx)
    entry = roles.set_domain(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), domain=domain, listed=listed)
    print(f"{entry} is " + (f"on the {listed} list" if listed else "on neither list"))


@domain_app.command("list")
def domain_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    from governance.identity import roles

    ws = _workspace(ctx)
    with ws.connect() as conn:
        allow, deny = roles.domain_lists(conn)
    _emit(as_json, {"allow": sorted(allow), "deny": sorted(deny)},
          "\n".join([f"allow {d}" for d in sorted(allow)] + [f"deny  {d}" for d in sorted(deny)]) or "both lists are empty")


@agreement_app.command("accept")
def agreement_accept(
    ctx: typer.Context,
    dataset: str,
    user: Annotated[str, typer.Option("--user", help="the user accepting")],
    version: Annotated[str, typer.Option("--version", help="the version (or sha256) the user read; `govern policy show` lists it")],
    client: Annotated[str, typer.Option("--client", help="how it was accepted")] = "govern-cli",
    as_json: JsonOpt = False,
) -> None:
    """Record a user's acceptance of a dataset's current agreement."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    out = workflow.accept_agreement(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), email=user, dataset_id=dataset,
                                    version=version, client=client)
    _emit(as_json, out, f"{user} accepted {dataset} version {out['version']} (sha256 {out['sha256'][:12]}…)")


@form_app.command("upload")
def form_upload(
    ctx: typer.Context,
    dataset: str,
    file: Path,
    user: Annotated[str, typer.Option("--user", help="whose form it is")],
    as_json: JsonOpt = False,
) -> None:
    """Store a signed agreement form (PDF, PNG or JPEG; checked by content; at most 10 MiB)."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.upload_form(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), email=user, dataset_id=dataset,
                               data=_read_document(file))
    _emit(as_json, rec.as_dict(), f"form {rec.id} stored for {rec.user} ({dataset}; sha256 {rec.document[:12]}…)")


@form_app.command("confirm")
def form_confirm(ctx: typer.Context, form_id: int, as_json: JsonOpt = False) -> None:
    """Confirm that a form bears the user's hand signature (approvers of its dataset)."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.confirm_signature(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), form_id=form_id)
    _emit(as_json, rec.as_dict(), f"form {rec.id} of {rec.user}: hand signature confirmed")


@form_app.command("list")
def form_list(ctx: typer.Context, dataset: Annotated[Optional[str], typer.Option("--dataset")] = None,
              pending: Annotated[bool, typer.Option("--pending", help="only unconfirmed forms")] = False,
              as_json: JsonOpt = False) -> None:
    from governance.approvals import workflow

    ws = _workspace(ctx)
    recs = workflow.list_forms(ws, actor=_actor(ctx, ws), dataset_id=dataset, pending=pending)
    _emit(as_json, _records(recs), "\n".join(
        f"{r.id:>5}  {r.dataset:12} {r.user:32} {r.uploaded_at[:19]}  "
        + (f"confirmed by {r.confirmed_by}" if r.confirmed_by else "signature not confirmed") for r in recs) or "no forms")


@request_app.command("create")
def request_create(
    ctx: typer.Context,
    dataset: str,
    user: Annotated[str, typer.Option("--user", help="who asks")],
    purpose: Annotated[str, typer.Option("--purpose", help="e.g. research/non-commercial/academic")],
    project: Annotated[str, typer.Option("--project", help="what the data is for")],
    subsets: Annotated[Optional[list[str]], typer.Option("--subset", help="repeatable; default: every subset")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for access (approved at once where the policy approves automatically)."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.request_access(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), email=user, dataset_id=dataset,
                                  subsets=subsets or [], purpose=purpose, project=project)
    _emit(as_json, rec.as_dict(), f"request {rec.id}: {rec.user} asks for {dataset}/{','.join(rec.subsets)} "
                                  f"for {rec.purpose}: {rec.state}")


def _request_lines(recs: list[Any]) -> str:
    return "\n".join(f"{r.id:>5}  {r.state:9} {r.created_at[:19]}  {r.dataset}/{','.join(r.subsets)}  {r.user}  {r.purpose}"
                     for r in recs) or "no requests"


@request_app.command("list")
def request_list(
    ctx: typer.Context,
    state: Annotated[Optional[str], typer.Option("--state", help="pending, approved, denied or withdrawn")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset")] = None,
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests you may see, oldest first."""
    from governance.approvals import workflow

    if state is not None and state not in ("pending", "approved", "denied", "withdrawn"):
        raise Exit(f"unknown state {state!r}; states are pending, approved, denied, withdrawn")
    ws = _workspace(ctx)
    recs = workflow.list_requests(ws, actor=_actor(ctx, ws), state=state, dataset_id=dataset, email=user)
    _emit(as_json, _records(recs), _request_lines(recs))


@request_app.command("approve")
def request_approve(
    ctx: typer.Context,
    request_id: int,
    days: Annotated[Optional[int], typer.Option("--days", min=1, help="shorter than the policy's default validity")] = None,
    note: Annotated[Optional[str], typer.Option("--note")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a pending request: one grant per subset."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    grants = workflow.approve(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), request_id=request_id, days=days, note=note)
    _emit(as_json, _records(grants), "\n".join(
        f"grant {g.id}: {g.user} may use {g.scope} for {g.purpose} until {g.expires or 'revoked'}" for g in grants))


@request_app.command("deny")
def request_deny(ctx: typer.Context, request_id: int,
                 reason: Annotated[str, typer.Option("--reason", help="shown to the requester")], as_json: JsonOpt = False) -> None:
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.deny(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), request_id=request_id, reason=reason)
    _emit(as_json, rec.as_dict(), f"request {rec.id} denied: {rec.reason}")


@request_app.command("ask")
def request_ask(ctx: typer.Context, request_id: int,
                question: Annotated[str, typer.Option("--question", help="what the requester should add; mailed to them")],
                as_json: JsonOpt = False) -> None:
    """Ask the requester for more; the request stays pending."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    note = workflow.ask_for_more(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), request_id=request_id, question=question)
    _emit(as_json, {"request": request_id, "note": note}, f"request {request_id}: question {note} recorded and mailed")


@request_app.command("reply")
def request_reply(ctx: typer.Context, request_id: int,
                  text: Annotated[str, typer.Option("--text", help="your answer to the approver's question")],
                  as_json: JsonOpt = False) -> None:
    """Answer an approver's question on your pending request."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    note = workflow.reply(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), request_id=request_id, text=text)
    _emit(as_json, {"request": request_id, "note": note}, f"request {request_id}: answer {note} recorded")


@request_app.command("withdraw")
def request_withdraw(ctx: typer.Context, request_id: int, as_json: JsonOpt = False) -> None:
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.withdraw(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), request_id=request_id)
    _emit(as_json, rec.as_dict(), f"request {rec.id} withdrawn")


@grant_app.command("list")
def grant_list(
    ctx: typer.Context,
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset")] = None,
    active: Annotated[bool, typer.Option("--active", help="only grants in force now")] = False,
    as_json: JsonOpt = False,
) -> None:
    from governance.approvals import workflow

    ws = _workspace(ctx)
    recs = workflow.list_grants(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), email=user, dataset_id=dataset, active=active)
    _emit(as_json, _records(recs), "\n".join(
        f"{g.id:>5}  {g.status:8} {g.scope:28} {g.user:32} {g.purpose}  until {g.expires[:10] if g.expires else '-'}"
        for g in recs) or "no grants")


@grant_app.command("revoke")
def grant_revoke(ctx: typer.Context, grant_id: int, reason: Annotated[str, typer.Option("--reason")],
                 as_json: JsonOpt = False) -> None:
    """Revoke a grant; the next check is refused."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    g = workflow.revoke(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), grant_id=grant_id, reason=reason)
    _emit(as_json, g.as_dict(), f"grant {g.id} ({g.user}, {g.scope}) revoked")


app.command("revoke", help="Same as `govern grant revoke`.")(grant_revoke)


@app.command("terminate")
def terminate(
    ctx: typer.Context,
    dataset: str,
    reason: Annotated[str, typer.Option("--reason", help="the licensor's notice")],
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    organisation: Annotated[Optional[str], typer.Option("--org")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the licensor's termination for a user or an organisation.

    Every grant of the dataset they hold is revoked, and later grants do not count."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.terminate(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), dataset_id=dataset, reason=reason,
                             email=user, organisation=organisation)
    _emit(as_json, rec.as_dict(), f"{rec.holder}: access to {dataset} terminated; {rec.grants_revoked} grant(s) revoked")


@waiver_app.command("record")
def waiver_record(
    ctx: typer.Context,
    terms: Annotated[str, typer.Argument(help="the dataset or source whose rule is lifted")],
    action: Annotated[str, typer.Option("--action")],
    document: Annotated[Path, typer.Option("--document", help="the licensor's written permission (PDF, PNG, JPEG)")],
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    organisation: Annotated[Optional[str], typer.Option("--org")] = None,
    rule: Annotated[Optional[str], typer.Option("--rule")] = None,
    destination: Annotated[Optional[str], typer.Option("--destination")] = None,
    purpose: Annotated[Optional[str], typer.Option("--purpose")] = None,
    subset: Annotated[Optional[str], typer.Option("--subset")] = None,
    expires: Annotated[Optional[str], typer.Option("--expires", help="ISO 8601 time with zone")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a waiver with its document."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.record_waiver(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), terms=terms, action=action,
                                 document=_read_document(document), email=user, organisation=organisation, rule=rule,
                                 destination=destination, purpose=purpose, subset=subset,
                                 expires=_now(expires) if expires else None)
    _emit(as_json, rec.as_dict(), f"waiver {rec.id}: {rec.owner} lifts {terms}" + (f"#{rule}" if rule else "")
          + f" for {rec.holder} ({action}" + (f" to {destination}" if destination else "") + ")")


@waiver_app.command("revoke")
def waiver_revoke(ctx: typer.Context, waiver_id: int) -> None:
    from governance.approvals import workflow

    ws = _workspace(ctx)
    workflow.revoke_waiver(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), waiver_id=waiver_id)
    print(f"waiver {waiver_id} revoked")


@artefact_app.command("register")
def artefact_register(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(help="artefact id, e.g. nerf-ckpt-7")],
    inputs: Annotated[list[str], typer.Option("--input", help="dataset/subset, dataset:glob or artefact:id (repeatable)")],
    description: Annotated[str, typer.Option("--description")],
    owner: Annotated[Optional[str], typer.Option("--owner", help="owner's address (default: the acting user)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a derivative with its lineage; cycles and unknown inputs are refused."""
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.register_artefact(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), ident=ident, inputs=inputs,
                                     description=description, owner=owner)
    _emit(as_json, rec.as_dict(), f"artefact:{rec.id} registered for {rec.owner}, from {', '.join(rec.inputs)}")


@artefact_app.command("show")
def artefact_show(ctx: typer.Context, ident: str, as_json: JsonOpt = False) -> None:
    from governance.approvals import workflow

    ws = _workspace(ctx)
    rec = workflow.lineage(ws, ident)
    _emit(as_json, rec.as_dict(), f"artefact:{rec.id} ({rec.owner}): {rec.description}\n"
          + "\n".join(f"  <- {i}" for i in rec.inputs))


@origins_app.command("tag")
def origins_tag(
    ctx: typer.Context,
    dataset: str,
    mapping: Annotated[Path, typer.Argument(help="CSV: path,source[;source…] per line")],
) -> None:
    """Record which files of a dataset draw from which upstream sources."""
    import csv

    from governance.approvals import workflow

    tags: dict[str, list[str]] = {}
    with mapping.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 2:
                raise Exit(f"{mapping}:{lineno}: expected 'path,source[;source…]'")
            tags[row[0].strip()] = [s.strip() for s in row[1].split(";") if s.strip()]
    ws = _workspace(ctx)
    count = workflow.tag_origins(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), dataset_id=dataset, tags=tags)
    print(f"{count} file(s) of {dataset} tagged")


@app.command("demo")
def demo(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Seed a believable demo into a fresh deployment.

    Migrates the database first, then adds organisations, stewards, researchers with academic
    and free-mail addresses, and requests for all five datasets in every state; then writes small
    synthetic files per dataset into $GOVERNANCE_DATA_DIR/demo-files, creates the keys (as
    `govern keys init`) and ingests them (as `govern ingest`)."""
    from governance.demo import ADMIN, AUDITOR, CREDENTIALS, STEWARDS, seed
    from governance.demo_files import FILES_DIR, encrypt_demo
    from governance.identity.roles import load_actor
    from governance.storage.db import upgrade
    from governance.workspace import Workspace

    ws = Workspace(_settings(), policies=ctx.obj.policies_dir, env=os.environ)
    upgrade(ws.db)
    now = datetime.now(UTC)
    summary = seed(ws, now=now)
    ingested = encrypt_demo(ws, actor=load_actor(ws, ADMIN), now=now, env=os.environ)
    if as_json:
        print(json.dumps({"users": summary.users, "requests": summary.requests, "grants": summary.grants,
                          "ingested": {d: r.as_dict() for d, r in ingested.items()}}))
        return
    print(f"demo seeded: {len(summary.users)} users, {summary.grants} grants")
    for ds_id, states in summary.requests.items():
        print(f"  {ds_id:13} " + ", ".join(f"{n} {st}" for st, n in sorted(states.items())))
    print(f"demo files in {ws.settings.data_dir / FILES_DIR}, encrypted into {ws.settings.objects_dir}: "
          + ", ".join(f"{d} {r.ingested}" for d, r in ingested.items()))
    print(f"admin {ADMIN}, auditor {AUDITOR}, stewards: " + ", ".join(f"{a} ({d})" for d, a in STEWARDS.items()))
    print(f"every demo user's password, and an API key for alice@ust.hk: {ws.settings.data_dir / CREDENTIALS} (0600)")
    print("try:\n"
          f"  govern --as {STEWARDS['genebody']} request list --state pending\n"
          "  govern check --user alice@ust.hk --resource genebody:train40/subject01/img_0001.jpg "
          "--action read --purpose research/non-commercial/academic\n"
          "  govern audit verify")


# `govern policy explain` is the same command, listed where DESIGN §9 puts it too.
policy_app.command("explain", help="Same as `govern explain`.")(explain)


# ------------------------------------------------------------------ the HTTP API

apikey_app = typer.Typer(no_args_is_help=True, help="API keys for loaders (the secret is shown once).")
app.add_typer(apikey_app, name="apikey")


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", envvar="GOVERNANCE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="GOVERNANCE_PORT", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", envvar="GOVERNANCE_WORKERS", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
) -> None:
    """Serve the HTTP API (uvicorn): docs at /docs, OpenAPI at /openapi.json."""
    import uvicorn

    from governance.storage.db import make_engine, require_current

    settings = _settings()
    require_current(make_engine(settings.database_url))
    os.environ["GOVERNANCE_POLICIES_DIR"] = str(ctx.obj.policies_dir)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    print(f"governance API on {base}  (docs: {base}/docs; {workers} worker(s); Ctrl-C stops)")
    from governance.demo import CREDENTIALS

    creds = settings.data_dir / CREDENTIALS
    if creds.exists():
        print(f"demo logins are in {creds}; for example, in another terminal:\n"
              f"  PW=$(sed -n 's/^password (every demo user): //p' {creds})\n"
              f"  curl -s {base}/v1/auth/login -H 'content-type: application/json' "
              "-d '{\"email\": \"steward@genebody.example\", \"password\": \"'$PW'\"}'\n"
              f"  KEY=$(sed -n 's/^API key of alice@ust.hk: //p' {creds})\n"
              f"  curl -s {base}/v1/check -H \"Authorization: Bearer $KEY\" -H 'content-type: application/json' "
              "-d '{\"resource\": \"genebody:train40/subject01/img_0001.jpg\", \"action\": \"read\", "
              "\"purpose\": \"research/non-commercial/academic\"}'")
    sys.stdout.flush()
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
                access_log=False, server_header=False)


def _read_password(from_stdin: bool) -> str:
    """A password from standard input or a prompt; never from argv (it would show in `ps`)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise Exit("the two passwords differ; nothing was changed")
    return first


@user_app.command("set-password")
def user_set_password(
    ctx: typer.Context,
    email: str,
    stdin: Annotated[bool, typer.Option("--stdin", help="read the password from standard input (for scripts)")] = False,
) -> None:
    """Set a user's password for logging in to the API and the console (ends their sessions)."""
    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    password = _read_password(stdin)
    ws.authenticator.set_password(actor=actor, now=datetime.now(UTC), email=email, password=password)
    print(f"password set for {email}; their sessions have ended")


@apikey_app.command("create")
def apikey_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--user", help="the key's owner")],
    name: Annotated[str, typer.Option("--name")] = "loader",
    datasets: Annotated[Optional[list[str]], typer.Option("--dataset", help="limit the key to this dataset (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API key for a user; the key is printed once and stored only as a digest."""
    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    record, key = ws.authenticator.create_api_key(actor=actor, now=datetime.now(UTC), name=name, datasets=datasets or None,
                                                  email=email)
    _emit(as_json, {**dataclasses.asdict(record), "key": key},
          f"{key}\n(API key {record.id} for {record.email}; shown once, keep it secret)")


@apikey_app.command("list")
def apikey_list(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--user")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A user's API keys (prefixes only; the secrets are never stored)."""
    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    keys = ws.authenticator.list_api_keys(actor=actor, email=email)
    lines = [f"{k.id:>4}  gk_{k.prefix}_…  {k.name}  {'revoked ' + k.revoked_at if k.revoked_at else 'active'}"
             f"  datasets: {', '.join(k.datasets) if k.datasets else 'all'}  last used: {k.last_used_at or 'never'}" for k in keys]
    _emit(as_json, [dataclasses.asdict(k) for k in keys], "\n".join(lines) or "no API keys")


@apikey_app.command("revoke")
def apikey_revoke(ctx: typer.Context, key_id: int) -> None:
    """Revoke an API key: it stops working at once here and within a second on every replica."""
    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    record = ws.authenticator.revoke_api_key(actor=actor, now=datetime.now(UTC), key_id=key_id)
    print(f"API key {record.id} of {record.email} is revoked")


# ------------------------------------------------------------------ keys (the keystore, DESIGN §4)

if TYPE_CHECKING:
    from governance.crypto.keystore import FileKeyStore

keys_app = typer.Typer(no_args_is_help=True,
                       help="Dataset key pairs, sealed by the master key ($GOVERNANCE_DATA_DIR/master.key or GOVERNANCE_MASTER_KEY).")
app.add_typer(keys_app, name="keys")
NEW_MASTER_ENV = "GOVERNANCE_NEW_MASTER_KEY"


def _keystore(settings: Settings) -> FileKeyStore:
    from governance.crypto.keystore import FileKeyStore, load_master_key

    return FileKeyStore(settings.keys_dir, load_master_key(env=os.environ, path=settings.master_key_path))


@keys_app.command("init")
def keys_init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create the master key file (0600; not when GOVERNANCE_MASTER_KEY is set) and a key pair for
    every dataset in the policies that has none. Safe to run again."""
    from governance.crypto.keystore import MASTER_ENV, FileKeyStore, MasterKey

    settings = _settings()
    datasets = sorted(_compiled(ctx).datasets)
    master = MasterKey.from_env(os.environ)
    if master is not None:
        source = f"from {MASTER_ENV}"
    elif settings.master_key_path.exists():
        master = MasterKey.from_file(settings.master_key_path)
        source = f"{settings.master_key_path} (existing)"
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        master = MasterKey.generate()
        master.create_file(settings.master_key_path)
        source = f"{settings.master_key_path} (created, 0600)"
    store = FileKeyStore(settings.keys_dir, master)
    existing = set(store.datasets())
    now = datetime.now(UTC)
    created = [store.create(d, now=now) for d in datasets if d not in existing]
    lines = [f"master key: {source}"]
    lines += [f"{i.dataset}: key v{i.version} created (fingerprint {i.fingerprint[:16]}…)" for i in created]
    kept = [d for d in datasets if d in existing]
    if kept:
        lines.append(f"{len(kept)} dataset(s) already had a key: {', '.join(kept)}")
    _emit(as_json, {"master_key": source, "created": [i.as_dict() for i in created], "existing": kept},
          "\n".join(lines))


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """Every dataset key version: dataset, version, public key fingerprint (sha256), created."""
    store = _keystore(_settings())
    infos = [info for d in store.datasets() for info in store.versions(d)]
    lines = [f"{i.dataset:13} v{i.version}  {i.fingerprint[:16]}…  created {i.created.isoformat(timespec='seconds')}"
             + ("  current" if i.current else "") for i in infos]
    _emit(as_json, [i.as_dict() for i in infos], "\n".join(lines) or "no dataset keys; run `govern keys init`")


@keys_app.command("public")
def keys_public(
    dataset: str,
    version: Annotated[Optional[int], typer.Option("--version", min=1, help="this key version (default: current)")] = None,
) -> None:
    """Print a dataset's public key as a Crypt4GH public key file (for `crypt4gh encrypt --recipient_pk`)."""
    from governance.crypto.keys import format_public_key

    key = _keystore(_settings()).public_key(dataset, version=version)
    sys.stdout.write(format_public_key(key).decode("ascii"))


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    dataset: str,
    no_reseal: Annotated[bool, typer.Option("--no-reseal", help="only make the new key version; re-seal later with "
                                                                 "`govern keys reseal DATASET`")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give a dataset a new current key version, then re-seal every stored header to it (payloads
    untouched). Older versions stay, so an interrupted re-seal leaves every file openable."""
    if no_reseal:  # the keystore alone: no database needed
        info = _keystore(_settings()).rotate(dataset, now=datetime.now(UTC))
        _emit(as_json, info.as_dict() | {"reseal": None},
              f"{dataset}: key v{info.version} is current (fingerprint {info.fingerprint[:16]}…); older versions are kept "
              f"to open older files; re-seal the stored headers with `govern keys reseal {dataset}`")
        return
    from governance.files.rotation import rotate_dataset_key

    ws = _workspace(ctx)
    result = rotate_dataset_key(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), dataset_id=dataset,
                                progress=_ResealProgress(dataset))
    assert result.reseal is not None
    _emit(as_json, result.as_dict(),
          f"{dataset}: key v{result.key.version} is current (fingerprint {result.key.fingerprint[:16]}…); "
          + _reseal_text(result.reseal.resealed, result.reseal.skipped, result.reseal.key_version))


@keys_app.command("reseal")
def keys_reseal(ctx: typer.Context, dataset: str, as_json: JsonOpt = False) -> None:
    """Re-seal every stored header of a dataset not at its current key version (after `keys rotate
    --no-reseal`, or to finish an interrupted re-seal). Payloads are untouched; safe to run again."""
    from governance.files.rotation import reseal_stored_headers

    ws = _workspace(ctx)
    result = reseal_stored_headers(ws, actor=_actor(ctx, ws), now=datetime.now(UTC), dataset_id=dataset,
                                   progress=_ResealProgress(dataset))
    _emit(as_json, result.as_dict(), f"{dataset}: " + _reseal_text(result.resealed, result.skipped, result.key_version))


def _reseal_text(resealed: int, skipped: int, version: int) -> str:
    return f"{resealed} stored header(s) re-sealed to key v{version}, {skipped} already at it; payloads untouched"


class _ResealProgress:
    """One line on stderr per batch of re-sealed headers (stdout stays for the result)."""

    def __init__(self, dataset: str) -> None:
        self._dataset = dataset
        self._total = self._done = 0

    def start(self, *, total: int) -> None:
        self._total = total
        if total:
            print(f"{self._dataset}: re-sealing {total} stored header(s)", file=sys.stderr, flush=True)

    def advance(self, *, done: int) -> None:
        self._done += done
        print(f"{self._dataset}: {self._done}/{self._total} header(s) re-sealed", file=sys.stderr, flush=True)


@keys_app.command("rotate-master")
def keys_rotate_master() -> None:
    """Re-seal every dataset key under a new master key, all or nothing.

    With a master key file, a new key is generated and replaces the file's. With
    GOVERNANCE_MASTER_KEY set, put the new key (base64 of 32 random bytes) in
    GOVERNANCE_NEW_MASTER_KEY; no master key is ever printed. Restart running servers after."""
    from governance.crypto.keystore import MASTER_ENV, FileKeyStore, MasterKey

    settings = _settings()
    current = MasterKey.from_env(os.environ)
    if current is None:
        store = FileKeyStore(settings.keys_dir, MasterKey.from_file(settings.master_key_path))
        count = len(store.datasets())
        store.rotate_master(MasterKey.generate(), master_file=settings.master_key_path)
        print(f"the keys of {count} dataset(s) are re-sealed under a new master key, now in {settings.master_key_path}")
        return
    new = MasterKey.from_env(os.environ, NEW_MASTER_ENV)
    if new is None:
        raise Exit(f"{MASTER_ENV} is set, so give the new master key (base64 of 32 random bytes) in {NEW_MASTER_ENV}")
    store = FileKeyStore(settings.keys_dir, current)
    count = len(store.datasets())
    store.rotate_master(new)
    print(f"the keys of {count} dataset(s) are re-sealed under {NEW_MASTER_ENV}; "
          f"set {MASTER_ENV} to its value for every process now")


# ------------------------------------------------------------------ ingest (issue 5)


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="the dataset id, e.g. genebody")],
    source: Annotated[Path, typer.Argument(help="a directory tree, or a (password-protected, AES) zip file")],
    password_file: Annotated[Optional[Path], typer.Option("--password-file",
                                                          help="a file holding the zip password (default: a prompt)")] = None,
    sources: Annotated[Optional[Path], typer.Option("--sources", help="CSV: path,source[,source…] per line")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="trust path and size of files already registered; do not re-read them")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Encrypt a dataset's files (Crypt4GH, to the dataset key) and register them in the manifest.

    Files are assigned subsets by the policy's globs; if any matches none, nothing is ingested
    and they are listed. Resumable: files already registered are skipped. The zip password is
    read from --password-file or a prompt, never from the command line."""
    from pydantic import SecretStr

    from governance.files.ingest import ingest_files, read_source_tags
    from governance.files.sources import ZipSource, open_source

    def password() -> SecretStr:
        if password_file is not None:
            return SecretStr(_read_text(password_file).rstrip("\r\n"))
        if not sys.stdin.isatty():
            raise Exit("the zip is encrypted: give --password-file FILE (no terminal to prompt on)")
        return SecretStr(getpass.getpass(f"password for {source.name}: "))

    tags = read_source_tags(sources) if sources is not None else None
    ws = _workspace(ctx)
    actor = _actor(ctx, ws)
    src = open_source(source, password=password)
    try:
        with _IngestProgress(enabled=not as_json and sys.stderr.isatty()) as progress:
            result = ingest_files(ws, actor=actor, now=datetime.now(UTC), dataset_id=dataset, source=src, tags=tags,
                                  quick=quick, progress=progress)
    finally:
        if isinstance(src, ZipSource):
            src.close()
    per_subset = ", ".join(f"{n} in {sub}" for sub, n in sorted(result.subsets.items()))
    _emit(as_json, result.as_dict(),
          f"{dataset}: {result.ingested} file(s) ingested ({result.bytes} bytes{'; ' + per_subset if per_subset else ''}), "
          f"{result.skipped} already registered" + (f", {result.ignored} archiver file(s) ignored" if result.ignored else "")
          + f"; encrypted to key v{result.key_version}")


class _IngestProgress:
    """A rich progress bar on stderr: files done of all, bytes read of all; or nothing."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._files = self._done = 0

    def __enter__(self) -> _IngestProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, *, files: int, size: int) -> None:
        # Shown only once the scan is done, so a password prompt never competes with the bar.
        self._files = files
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"0/{files} files", total=size)

    def advance(self, *, files: int = 0, size: int = 0) -> None:
        if self._bar is not None and self._task is not None:
            self._done += files
            self._bar.update(self._task, advance=size, description=f"{self._done}/{self._files} files")


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
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("GOVERNANCE_DEBUG"):
            raise
        # SECURITY: no traceback or exception text to the user; it may hold secrets later.
        print(f"error: internal error ({type(exc).__name__}); set GOVERNANCE_DEBUG=1 to see the traceback", file=sys.stderr)
        sys.exit(70)


if __name__ == "__main__":
    main()
