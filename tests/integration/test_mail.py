"""Verification mail reaches a real SMTP server on loopback (aiosmtpd), or the outbox; failures
are one sentence without credentials."""

from __future__ import annotations

import email
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from governance.identity.mail import MailDeliveryError, Message, OutboxMailer, SmtpMailer, mailer_from_env

MSG = Message(to="carol@ust.hk", subject="Verify your e-mail address", body="Open https://gov.example/verify?t=TOKEN within 24 hours.")


class Capture:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def smtp_server():  # type: ignore[no-untyped-def]
    handler = Capture()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def test_a_message_is_delivered_to_a_real_smtp_server(smtp_server) -> None:  # type: ignore[no-untyped-def]
    controller, handler = smtp_server
    SmtpMailer(controller.hostname, controller.port, sender="governance@lab.example").send(MSG)
    assert len(handler.messages) == 1
    env = handler.messages[0]
    assert env.rcpt_tos == ["carol@ust.hk"] and env.mail_from == "governance@lab.example"
    parsed = email.message_from_bytes(env.content)
    assert parsed["Subject"] == MSG.subject and "verify?t=TOKEN" in parsed.get_payload()


def test_an_unreachable_server_is_one_sentence_without_the_password() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), sender="g@x.example", username="u", password="hunter2-secret", timeout=2)
    with pytest.raises(MailDeliveryError) as info:
        mailer.send(MSG)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(mailer)
    assert str(info.value).startswith("cannot deliver mail via 127.0.0.1:")


def test_without_smtp_mail_goes_to_a_private_outbox(tmp_path: Path) -> None:
    mailer = mailer_from_env({}, outbox=tmp_path / "outbox")
    assert isinstance(mailer, OutboxMailer)
    mailer.send(MSG)
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1 and not list((tmp_path / "outbox").glob(".*.tmp"))
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert "verify?t=TOKEN" in email.message_from_bytes(files[0].read_bytes()).get_payload()


def test_smtp_is_chosen_when_configured(smtp_server) -> None:  # type: ignore[no-untyped-def]
    controller, handler = smtp_server
    mailer = mailer_from_env({"GOVERNANCE_SMTP_HOST": controller.hostname, "GOVERNANCE_SMTP_PORT": str(controller.port),
                              "GOVERNANCE_SMTP_STARTTLS": "false"}, outbox=Path("/nonexistent"))
    mailer.send(MSG)
    assert len(handler.messages) == 1
