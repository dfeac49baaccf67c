"""Set-up steps shared by the workflow tests: real registration, real verification links."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

from governance.identity import service as identity
from governance.identity.mail import OutboxMailer
from governance.identity.roles import Actor, Role, grant_role, load_actor, operator
from governance.workspace import Workspace

NOW = datetime(2026, 11, 1, tzinfo=UTC)
OPERATOR = operator("tests")
FORM_PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PURPOSE = "research/non-commercial"
ACADEMIC = "research/non-commercial/academic"


def last_token(ws: Workspace) -> str:
    mailer = ws.mailer
    assert isinstance(mailer, OutboxMailer)
    newest = sorted(mailer.directory.glob("*.eml"))[-1]
    body = email.message_from_bytes(newest.read_bytes(), policy=email.policy.default).get_content()  # type: ignore[attr-defined]
    found = re.search(r"\?token=(\S+)", body)
    assert found
    return found.group(1)


def add_user(ws: Workspace, address: str, *, organisation: str | None = None, site: str | None = None,
             verified: bool = True) -> Actor:
    """Register a user and, unless told otherwise, verify the address through its mailed link."""
    user = identity.register_user(engine=ws, now=NOW, email=address, organisation=organisation, site=site)
    if verified:
        identity.send_verification(engine=ws, mailer=ws.mailer, secret=ws.token_secret, now=NOW, user_id=user.id,
                                   link="https://gov.example/verify")
        identity.verify_email(engine=ws, secret=ws.token_secret, now=NOW, token=last_token(ws))
    return load_actor(ws, address)


def add_approver(ws: Workspace, address: str, dataset: str, *, organisation: str = "licensor") -> Actor:
    add_user(ws, address, organisation=organisation)
    grant_role(ws, actor=OPERATOR, now=NOW, email=address, role=Role.APPROVER, dataset=dataset, datasets=ws.policies.datasets)
    return load_actor(ws, address)


PASSWORD = "correct horse battery staple"


def add_login(ws: Workspace, address: str, *, organisation: str | None = None, site: str | None = None,
              verified: bool = True, password: str = PASSWORD) -> Actor:
    """`add_user`, plus a password for logging in through the API."""
    actor = add_user(ws, address, organisation=organisation, site=site, verified=verified)
    ws.authenticator.set_password(actor=OPERATOR, now=NOW, email=address, password=password)
    return actor


def bearer(client: object, address: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in through the API; the Authorization header for the access token."""
    response = client.post("/v1/auth/login", json={"email": address, "password": password})  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
