"""Who may do what: roles, the acting party of an operation, and the e-mail domain lists.

Roles come from the database, never from a token's claims. `researcher` is what every user is;
`approver` is held per dataset (the datasets a steward decides for); `auditor` reads
everything and changes nothing; `admin` manages users, roles and the domain lists and may act
as an approver for any dataset. The local operator (someone running `govern` with direct access
to the database and the data directory) acts with every role and is audited under the name
given to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from governance.audit import store as audit
from governance.errors import ForbiddenError, NotFoundError, WorkflowError
from governance.identity.institutional import normalise_list_entry
from governance.identity.tokens import normalise_email
from governance.storage.db import Transactional
from governance.storage.tables import EmailDomainRow, RoleRow, UserRow

ROLES = RoleRow.__table__  # type: ignore[attr-defined]
DOMAINS = EmailDomainRow.__table__  # type: ignore[attr-defined]
USERS = UserRow.__table__  # type: ignore[attr-defined]
ANY_DATASET = "*"


class Role(StrEnum):
    RESEARCHER = "researcher"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """The party performing an operation, with the roles it holds."""

    label: str  # as recorded in the audit chain: "user:<id>" or "operator:<name>"
    user_id: str | None
    email: str | None
    roles: frozenset[tuple[Role, str]]
    operator: bool = False

    def has(self, role: Role, dataset: str | None = None) -> bool:
        if self.operator or (Role.ADMIN, ANY_DATASET) in self.roles:
            return True
        if (role, ANY_DATASET) in self.roles:
            return True
        return dataset is not None and (role, dataset) in self.roles

    def require(self, role: Role, dataset: str | None = None) -> None:
        if not self.has(role, dataset):
            where = f" for {dataset}" if dataset else ""
            who = self.email or self.label
            raise ForbiddenError(f"{who} is not {'an' if role.value[0] in 'aeiou' else 'a'} {role.value}{where}")

    def stewards(self) -> frozenset[str] | None:
        """Datasets this actor approves for; None means all."""
        if self.operator or (Role.ADMIN, ANY_DATASET) in self.roles or (Role.APPROVER, ANY_DATASET) in self.roles:
            return None
        return frozenset(ds for role, ds in self.roles if role is Role.APPROVER)

    def oversees(self) -> frozenset[str] | None:
        """Datasets whose every record this actor sees: an auditor's or a wide steward's, all
        (None); otherwise the ones it stewards (its own records it sees besides)."""
        return None if self.has(Role.AUDITOR) else self.stewards()


def operator(name: str) -> Actor:
    """The local operator: direct access to the database already confers every power."""
    return Actor(label=f"operator:{name}", user_id=None, email=None, roles=frozenset(), operator=True)


def actor_for(conn: Connection, email: str) -> Actor:
    """The actor for a user's address, with the roles stored for it."""
    address = normalise_email(email)
    row = conn.execute(select(USERS.c.id, USERS.c.disabled).where(USERS.c.email == address)).first()
    if row is None:
        raise NotFoundError(f"no user with the address {address}")
    if row.disabled:
        raise ForbiddenError(f"the account {address} is disabled")
    return user_actor(conn, row.id, address)


def user_actor(conn: Connection, user_id: str, email: str) -> Actor:
    """The actor for a known user, with the roles stored for it (every user is a researcher)."""
    roles = conn.execute(select(ROLES.c.role, ROLES.c.dataset).where(ROLES.c.user_id == user_id)).all()
    held = frozenset((Role(r.role), r.dataset) for r in roles) | {(Role.RESEARCHER, ANY_DATASET)}
    return Actor(label=f"user:{user_id}", user_id=user_id, email=email, roles=held)


def load_actor(db: Transactional, email: str) -> Actor:
    with db.connect() as conn:
        return actor_for(conn, email)


def _user_id(conn: Connection, email: str) -> str:
    address = normalise_email(email)
    row = conn.execute(select(USERS.c.id).where(USERS.c.email == address)).first()
    if row is None:
        raise NotFoundError(f"no user with the address {address}")
    return str(row.id)


def _role_scope(role: Role, dataset: str | None, known: Iterable[str]) -> str:
    if role is Role.APPROVER:
        if dataset is None:
            raise WorkflowError("an approver role names the dataset it stewards (--dataset)")
        if dataset != ANY_DATASET and dataset not in set(known):
            raise WorkflowError(f"unknown dataset '{dataset}'")
        return dataset
    if dataset is not None:
        raise WorkflowError(f"the {role.value} role is not per dataset; drop --dataset")
    return ANY_DATASET


def grant_role(db: Transactional, *, actor: Actor, now: datetime, email: str, role: Role, dataset: str | None,
               datasets: Iterable[str]) -> None:
    actor.require(Role.ADMIN)
    scope = _role_scope(role, dataset, datasets)
    if role is Role.RESEARCHER:
        raise WorkflowError("every user is a researcher; there is nothing to grant")
    try:
        with db.begin() as conn:
            uid = _user_id(conn, email)
            conn.execute(insert(ROLES).values(user_id=uid, role=role.value, dataset=scope, granted_at=now.isoformat(),
                                              granted_by=actor.label))
            audit.append(conn, at=now, actor=actor.label, action="role.grant", target=f"user:{uid}", outcome="ok",
                         details={"role": role.value, "dataset": scope})
    except IntegrityError:
        raise WorkflowError(f"{normalise_email(email)} already holds the {role.value} role"
                            + (f" for {scope}" if scope != ANY_DATASET else "")) from None


def revoke_role(db: Transactional, *, actor: Actor, now: datetime, email: str, role: Role, dataset: str | None,
                datasets: Iterable[str]) -> None:
    actor.require(Role.ADMIN)
    scope = _role_scope(role, dataset, datasets)
    with db.begin() as conn:
        uid = _user_id(conn, email)
        done = conn.execute(delete(ROLES).where(ROLES.c.user_id == uid, ROLES.c.role == role.value, ROLES.c.dataset == scope))
        if done.rowcount != 1:
            raise NotFoundError(f"{normalise_email(email)} does not hold the {role.value} role"
                                + (f" for {scope}" if scope != ANY_DATASET else ""))
        audit.append(conn, at=now, actor=actor.label, action="role.revoke", target=f"user:{uid}", outcome="ok",
                     details={"role": role.value, "dataset": scope})


# ---------------------------------------------------------------- institutional e-mail lists


def domain_lists(conn: Connection) -> tuple[frozenset[str], frozenset[str]]:
    """The deployment's (allow, deny) lists for the institutional classifier."""
    rows = conn.execute(select(DOMAINS.c.list, DOMAINS.c.domain)).all()
    return (frozenset(r.domain for r in rows if r.list == "allow"), frozenset(r.domain for r in rows if r.list == "deny"))


def set_domain(db: Transactional, *, actor: Actor, now: datetime, domain: str, listed: str | None) -> str:
    """Put a domain on the allow or deny list (`listed`), or take it off both (None)."""
    actor.require(Role.ADMIN)
    if listed not in ("allow", "deny", None):
        raise WorkflowError(f"a domain list is 'allow' or 'deny', not {listed!r}")
    entry = normalise_list_entry(domain)
    with db.begin() as conn:
        removed = conn.execute(delete(DOMAINS).where(DOMAINS.c.domain == entry)).rowcount
        if listed is None and not removed:
            raise NotFoundError(f"{entry} is on neither list")
        if listed is not None:
            conn.execute(insert(DOMAINS).values(list=listed, domain=entry, added_at=now.isoformat(), added_by=actor.label))
        audit.append(conn, at=now, actor=actor.label, action="domain.set", target=f"domain:{entry}", outcome="ok",
                     details={"list": listed})
    return entry
