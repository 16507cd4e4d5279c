"""Local stand-ins for the services people read, started by the tests on 127.0.0.1: a WeCom
group robot and a DingTalk robot (real HTTP servers that check the documented request, including
DingTalk's timestamp and signature, computed here independently of binwatch, and answer like the
real services, errcodes included), and a real SMTP server (aiosmtpd) that requires STARTTLS and a
login, with a certificate made for the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from binwatch.servers import free_port

OK = {"errcode": 0, "errmsg": "ok"}


class RobotReceiver:
    """An HTTP server answering robot POSTs: `check` says what is wrong with one (an errcode
    answer) or None; a right one gets the next scripted errcode (the last one repeats)."""

    path = "/"

    def __init__(self, errcodes: list[int] | None = None, errmsg: str | None = None) -> None:
        self.errcodes = errcodes or [0]
        self.errmsg = errmsg  # the answer's errmsg, instead of "scripted error <code>"
        self.received: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                answer = receiver.answer(self.path, dict(self.headers), raw)
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        with self.lock:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            refused = self.check(path, headers, body)
            if refused is not None:
                self.refused.append({"path": path, "answer": refused})
                return refused
            self.received.append(body)
            code = self.errcodes[min(len(self.received), len(self.errcodes)) - 1]
            said = f"scripted error {code}" if self.errmsg is None else self.errmsg
            return OK if code == 0 else {"errcode": code, "errmsg": said}

    def check(self, path: str, headers: dict[str, str], body: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WeComReceiver(RobotReceiver):
    """`POST /cgi-bin/webhook/send?key=<key>` with `{"msgtype": "markdown"|"text", …}`."""

    def __init__(
        self, key: str, errcodes: list[int] | None = None, errmsg: str | None = None
    ) -> None:
        self.key = key
        super().__init__(errcodes, errmsg)
        self.url = f"{self.base}/cgi-bin/webhook/send?key={key}"

    def check(self, path: str, headers: dict[str, str], body: Any) -> dict[str, Any] | None:
        parts = urlsplit(path)
        if parts.path != "/cgi-bin/webhook/send" or parse_qs(parts.query).get("key") != [self.key]:
            return {"errcode": 93000, "errmsg": "invalid webhook url"}
        if not headers.get("Content-Type", "").startswith("application/json"):
            return {"errcode": 40008, "errmsg": "invalid message type"}
        kind = body.get("msgtype") if isinstance(body, dict) else None
        content = (body.get(kind) or {}).get("content") if kind in ("markdown", "text") else None
        if not isinstance(content, str) or not content:
            return {"errcode": 40008, "errmsg": "invalid message type"}
        limit = 4096 if kind == "markdown" else 2048
        if len(content.encode()) > limit:
            return {"errcode": 40058, "errmsg": "content exceed max length"}
        return None


class DingTalkReceiver(RobotReceiver):
    """`POST /robot/send?access_token=…&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256>`
    with `{"msgtype": "markdown", "markdown": {"title", "text"}}` or `text`; a timestamp more
    than an hour off or a wrong signature is errcode 310000, as DingTalk answers."""

    def __init__(self, token: str, secret: str, errcodes: list[int] | None = None) -> None:
        self.token, self.secret = token, secret
        super().__init__(errcodes)
        self.url = f"{self.base}/robot/send?access_token={token}"

    def check(self, path: str, headers: dict[str, str], body: Any) -> dict[str, Any] | None:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path != "/robot/send" or query.get("access_token") != [self.token]:
            return {"errcode": 300001, "errmsg": "token is not exist"}
        stamp = (query.get("timestamp") or [""])[0]
        if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > 3600 * 1000:
            return {"errcode": 310000, "errmsg": "invalid timestamp"}
        mac = hmac.new(self.secret.encode(), f"{stamp}\n{self.secret}".encode(), hashlib.sha256)
        expected = base64.b64encode(mac.digest()).decode()
        raw_sign = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("sign")
        if raw_sign != quote_plus(expected):  # sent URL-encoded, as documented
            return {"errcode": 310000, "errmsg": "sign not match"}
        if not headers.get("Content-Type", "").startswith("application/json"):
            return {"errcode": 40035, "errmsg": "missing content type"}
        kind = body.get("msgtype") if isinstance(body, dict) else None
        inner = body.get(kind) if kind in ("markdown", "text") else None
        needed = ("title", "text") if kind == "markdown" else ("content",)
        if not isinstance(inner, dict) or not all(inner.get(k) for k in needed):
            return {"errcode": 40035, "errmsg": "missing parameter"}
        return None


@dataclass
class MailServer:
    """aiosmtpd on a free loopback port: STARTTLS required, then AUTH with `user`/`password`."""

    cert: Path
    user: str
    password: str
    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def start(self, key: Path) -> None:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
            ready_timeout=10,
        )
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.user.encode(),
            self.password.encode(),
        )
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok, handled=False)  # a refusal answers 535

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        return "250 OK"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
