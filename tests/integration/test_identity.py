"""Register -> mail a link -> verify, on SQLite and PostgreSQL: links work once, only for the
address they were sent to, only before they expire; every step and refusal is audited."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from governance.audit import store as audit
from governance.identity.mail import OutboxMailer
from governance.identity.service import (
    IdentityError,
    change_email,
    get_user,
    register_user,
    send_verification,
    verify_email,
)
from governance.identity.tokens import InvalidTokenError

SECRET = b"k" * 32
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def all_events(db: Engine) -> list:  # type: ignore[type-arg]
    with db.connect() as conn:
        return list(audit.events(conn))


def last_link(outbox: Path) -> str:
    newest = sorted(outbox.glob("*.eml"))[-1]
    body = email.message_from_bytes(newest.read_bytes(), policy=email.policy.default).get_content()  # type: ignore[attr-defined]
    match = re.search(r"\?token=(\S+)", body)
    assert match
    return match.group(1)


def setup_user(db: Engine, tmp_path: Path) -> tuple[str, OutboxMailer]:
    user = register_user(engine=db, now=NOW, email="Carol@UST.hk", organisation="hkust", site="clearwater-bay")
    mailer = OutboxMailer(tmp_path / "outbox", sender="governance@lab.example")
    send_verification(engine=db, mailer=mailer, secret=SECRET, now=NOW, user_id=user.id, link="https://gov.example/verify")
    return user.id, mailer


def test_a_user_verifies_their_address_with_the_mailed_link(db: Engine, tmp_path: Path) -> None:
    user_id, _ = setup_user(db, tmp_path)
    assert not get_user(engine=db, email="carol@ust.hk").email_verified
    user = verify_email(engine=db, secret=SECRET, now=NOW + timedelta(hours=1), token=last_link(tmp_path / "outbox"))
    assert user.id == user_id and user.email_verified and user.email == "carol@ust.hk" and user.site == "clearwater-bay"
    actions = [e.action for e in all_events(db)]
    assert actions == ["user.register", "email.verification_sent", "email.verify"]
    assert audit.verify(db).ok


def test_a_link_works_once(db: Engine, tmp_path: Path) -> None:
    setup_user(db, tmp_path)
    token = last_link(tmp_path / "outbox")
    verify_email(engine=db, secret=SECRET, now=NOW, token=token)
    with pytest.raises(InvalidTokenError):
        verify_email(engine=db, secret=SECRET, now=NOW, token=token)
    refusals = [e for e in all_events(db) if e.outcome == "refused"]
    assert len(refusals) == 1 and token not in str(refusals[0])


def test_an_expired_link_is_refused(db: Engine, tmp_path: Path) -> None:
    setup_user(db, tmp_path)
    with pytest.raises(InvalidTokenError):
        verify_email(engine=db, secret=SECRET, now=NOW + timedelta(hours=25), token=last_link(tmp_path / "outbox"))
    assert not get_user(engine=db, email="carol@ust.hk").email_verified


def test_a_changed_address_must_be_verified_again_and_old_links_die(db: Engine, tmp_path: Path) -> None:
    user_id, mailer = setup_user(db, tmp_path)
    old_link = last_link(tmp_path / "outbox")
    verify_email(engine=db, secret=SECRET, now=NOW, token=old_link)
    send_verification(engine=db, mailer=mailer, secret=SECRET, now=NOW, user_id=user_id, link="https://gov.example/verify")
    unused_old = last_link(tmp_path / "outbox")
    changed = change_email(engine=db, now=NOW, user_id=user_id, email="carol@connect.ust.hk", actor="user:self")
    assert not changed.email_verified
    with pytest.raises(InvalidTokenError):
        verify_email(engine=db, secret=SECRET, now=NOW, token=unused_old)
    send_verification(engine=db, mailer=mailer, secret=SECRET, now=NOW, user_id=user_id, link="https://gov.example/verify")
    assert verify_email(engine=db, secret=SECRET, now=NOW, token=last_link(tmp_path / "outbox")).email_verified


def test_a_forged_or_garbage_token_is_refused_and_audited(db: Engine, tmp_path: Path) -> None:
    setup_user(db, tmp_path)
    for bad in ("garbage", last_link(tmp_path / "outbox")[:-2] + "AA", ""):
        with pytest.raises(InvalidTokenError):
            verify_email(engine=db, secret=SECRET, now=NOW, token=bad)
    assert sum(e.outcome == "refused" for e in all_events(db)) == 3


def test_addresses_are_unique_after_normalisation(db: Engine) -> None:
    register_user(engine=db, now=NOW, email="dan@kaist.ac.kr")
    with pytest.raises(IdentityError, match="already exists"):
        register_user(engine=db, now=NOW, email="DAN@KAIST.AC.KR")
    with pytest.raises(IdentityError, match="organisation"):
        register_user(engine=db, now=NOW, email="x@kaist.ac.kr", site="daejeon")


def test_a_failed_mail_leaves_no_audit_record(db: Engine) -> None:
    user = register_user(engine=db, now=NOW, email="erin@sjtu.edu.cn")

    class Broken:
        def send(self, message: object) -> None:
            raise OSError("smtp down")

    with pytest.raises(OSError):
        send_verification(engine=db, mailer=Broken(), secret=SECRET, now=NOW, user_id=user.id, link="https://x")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events WHERE action = 'email.verification_sent'")).scalar_one() == 0
