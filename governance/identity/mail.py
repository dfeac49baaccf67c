"""Outgoing mail (verification links): SMTP when configured, else an outbox directory.

The embedded default writes each message as an `.eml` file (0600: it carries a one-time link)
that an operator or a test can read. Delivery errors are one sentence naming the server, never
credentials or message content.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from governance.errors import GovernanceError


class MailDeliveryError(GovernanceError):
    """A message could not be handed to the mail server or written to the outbox."""


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, message: Message) -> None: ...


def _build(message: Message, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = message.to
    msg["Subject"] = message.subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@governance>"
    msg.set_content(message.body)
    return msg


class OutboxMailer:
    """Writes each message to `directory` atomically (a temporary name, then the final one)."""

    def __init__(self, directory: Path, *, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    def send(self, message: Message) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.eml"
            tmp = self.directory / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(_build(message, self.sender)))
            os.replace(tmp, self.directory / name)
        except OSError as exc:
            raise MailDeliveryError(f"cannot write to the outbox {self.directory} ({exc.strerror or type(exc).__name__})") from None


class SmtpMailer:
    """Hands messages to an SMTP server (STARTTLS and login when configured)."""

    def __init__(self, host: str, port: int, *, sender: str, starttls: bool = False,
                 username: str | None = None, password: str | None = None, timeout: float = 10.0) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._starttls, self._username, self._timeout = starttls, username, timeout
        self.__password = password  # SECURITY: never in a message, repr or log

    def __repr__(self) -> str:
        return f"SmtpMailer({self.host}:{self.port})"

    def send(self, message: Message) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username is not None:
                    smtp.login(self._username, self.__password or "")
                smtp.send_message(_build(message, self.sender))
        except (OSError, smtplib.SMTPException) as exc:
            raise MailDeliveryError(f"cannot deliver mail via {self.host}:{self.port} ({type(exc).__name__})") from None


def mailer_from_env(env: Mapping[str, str], *, outbox: Path) -> Mailer:
    """SMTP when GOVERNANCE_SMTP_HOST is set, else the outbox directory."""
    sender = env.get("GOVERNANCE_MAIL_FROM", "governance@localhost")
    host = env.get("GOVERNANCE_SMTP_HOST")
    if not host:
        return OutboxMailer(outbox, sender=sender)
    return SmtpMailer(host, int(env.get("GOVERNANCE_SMTP_PORT", "587")), sender=sender,
                      starttls=env.get("GOVERNANCE_SMTP_STARTTLS", "true").lower() == "true",
                      username=env.get("GOVERNANCE_SMTP_USER"), password=env.get("GOVERNANCE_SMTP_PASSWORD"))
