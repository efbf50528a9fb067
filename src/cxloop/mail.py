"""Sending e-mail through the SMTP server the ``CXLOOP_SMTP_*`` settings name.

Messages are built with the standard library's ``EmailMessage`` under the strict default
policy, which refuses a header value with a line break: a customer's name or address can
never inject a header. A send that fails raises ``MailError``; the job queue retries it.
"""

from __future__ import annotations

import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

from cxloop.settings import Settings


class MailError(RuntimeError):
    """The message could not be handed to the mail server (it is down, it refused us)."""


class MailNotConfigured(MailError):
    def __init__(self) -> None:
        super().__init__("e-mail is not set up: set CXLOOP_SMTP_HOST (and CXLOOP_SMTP_PORT)")


def compose(
    settings: Settings, *, to: str, subject: str, text: str, html: str | None
) -> EmailMessage:
    """A plain-text message with an HTML alternative, from ``CXLOOP_SMTP_FROM``."""
    name, address = parseaddr(to)
    if not address or "@" not in address:
        raise ValueError(f"email: not an e-mail address: {to!r}")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    try:
        message["To"] = Address(display_name=name, addr_spec=address)
        message["Subject"] = subject
    except ValueError as exc:  # a line break or a malformed address
        raise ValueError(f"email: {exc}") from None
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2].strip("> "))
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand one message to the mail server, or raise ``MailError`` saying why not."""
    if not settings.smtp_host:
        raise MailNotConfigured()
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout_s
    try:
        if settings.smtp_security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = (
                    settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                )
                client.login(settings.smtp_username, password)
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"the mail server {host}:{port} did not take the message: {exc}") from exc
