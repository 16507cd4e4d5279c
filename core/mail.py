"""E-mail over SMTP: the boundary for notifications that go to people's mailboxes.

One call is one attempt: connect, STARTTLS (checking the server's certificate against the
system's CAs and `BINWATCH_MAIL_CA_FILE`), log in when a user is set, send, quit. SMTP's own
reply classes decide what is worth another try: a 4xx reply or a connection that fails is
transient, a 5xx (a refused login, an unknown mailbox) is not. smtplib's exceptions become an
`Outcome` here and nowhere else, and the password never enters one."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Final

from core.settings import MailSettings
from core.webhooks import Outcome

NOT_CONFIGURED: Final = "e-mail is not configured (set BINWATCH_MAIL_HOST)"


class MailSender:
    """Thread-safe: each attempt has its own connection."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._tls = ssl.create_default_context(cafile=settings.ca_file)

    @property
    def lane(self) -> str:
        """The destination its attempts queue for (core/webhook_lanes.py)."""
        return f"smtp://{self.settings.host}:{self.settings.port}"

    def send(self, to: list[str], subject: str, text: str) -> Outcome:
        """Send one plain-text UTF-8 message to `to`."""
        mail = self.settings
        if not mail.host:
            return Outcome(False, NOT_CONFIGURED)
        message = EmailMessage()
        try:
            message["From"] = mail.sender
            message["To"] = ", ".join(to)
            # A subject is one line. Its text comes from the registry (a site's or an area's
            # name): a line break in it would start a header of its own, which the e-mail
            # package refuses by raising, and an attempt that raises is never recorded.
            message["Subject"] = " ".join(subject.split())
        except ValueError as exc:  # an address holding a line break: no try can write it
            return Outcome(False, f"cannot write the e-mail's headers: {exc}")
        message["Date"] = formatdate()
        message["Message-ID"] = make_msgid(domain=mail.sender.rpartition("@")[2] or None)
        message.set_content(text)
        server = f"SMTP server {mail.host}:{mail.port}"
        try:
            with smtplib.SMTP(mail.host, mail.port, timeout=mail.timeout_s) as smtp:
                if mail.starttls:
                    smtp.starttls(context=self._tls)
                if mail.username:
                    password = mail.password.get_secret_value() if mail.password else ""
                    smtp.login(mail.username, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            return _refused(server, exc.recipients, accepted=0)
        except smtplib.SMTPResponseException as exc:
            said = _text(exc.smtp_error)
            return Outcome(False, f"{server} answered {exc.smtp_code}: {said}", exc.smtp_code < 500)
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            return Outcome(False, f"{server} unreachable: {exc or type(exc).__name__}", True)
        if refused:
            return _refused(server, refused, accepted=len(to) - len(refused))
        return Outcome(True)


def _refused(server: str, refused: dict[str, tuple[int, bytes]], *, accepted: int) -> Outcome:
    """Some or all recipients refused: worth another try only if every refusal was a 4xx and
    nobody got the message yet (a retry would send it twice to the others)."""
    listed = "; ".join(f"{to}: {code} {_text(said)}" for to, (code, said) in refused.items())
    transient = accepted == 0 and all(code < 500 for code, _said in refused.values())
    return Outcome(False, f"{server} refused recipients ({accepted} accepted): {listed}", transient)


def _text(said: bytes | str) -> str:
    return (said.decode("utf-8", "replace") if isinstance(said, bytes) else said)[:200]
