"""WeCom (企业微信) and DingTalk group robots: the chat groups people already read.

Both are a webhook that takes a JSON message and answers HTTP 200 with `{"errcode": 0, …}`;
any other errcode is a failure (docs/alerts.md cites both services' documentation):
- WeCom: POST `{"msgtype": "markdown", "markdown": {"content": …}}` to
  `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>`.
- DingTalk: POST `{"msgtype": "markdown", "markdown": {"title": …, "text": …}}` to
  `https://oapi.dingtalk.com/robot/send?access_token=<token>&timestamp=<ms>&sign=<sign>`, where
  `sign` is the URL-encoded base64 of HMAC-SHA256 keyed with the robot's secret over
  `"<ms>\\n<secret>"` (the robot's "加签" security setting; DingTalk refuses a timestamp more
  than an hour off).

The robot's URL carries its key (WeCom `key`, DingTalk `access_token`): whoever has it can post
to the group, so it is a secret like the DingTalk secret. Errors name the URL without its query
(`shown`), and a value of the query echoed in an answer is scrubbed. The POST goes through the
webhooks' sender, so the same rules apply to where it may go (core/webhook_targets.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.webhooks import Outcome, WebhookSender, refusal

# errcodes that say "not now" rather than "never": the service busy (-1) or the robot's limit
# of 20 messages a minute (WeCom 45009, DingTalk 130101). Any other is not tried again.
WECOM_TRANSIENT: Final = frozenset({-1, 45009})
DINGTALK_TRANSIENT: Final = frozenset({-1, 130101})
# WeCom's markdown content may be 4,096 bytes; DingTalk's is larger. Longer text is cut.
MARKDOWN_BYTES: Final = 4096
# Of a 2xx answer this much is read for its errcode (the answers are a few dozen bytes).
ANSWER_KEEP: Final = 2000


@dataclass(frozen=True, slots=True)
class Note:
    """A rendered notification: a title, and the body as markdown and as plain text."""

    title: str
    markdown: str
    plain: str

    @classmethod
    def of(cls, title: str, lines: list[str]) -> Note:
        """A title over lines of facts: a markdown list for the robots, plain lines for mail.
        Each on one line: the facts quote text from outside (a bin's event detail, a site's
        name), whose line breaks wrote headings and facts of their own."""
        title, lines = _one_line(title), [_one_line(line) for line in lines]
        markdown = "\n".join(f"- {_inert(line)}" for line in lines)
        return cls(title=title, markdown=markdown, plain="\n".join([title, "", *lines]))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _inert(text: str) -> str:
    """`text` as the robots' markdown shows it and does not act on: a bin's detail saying
    `[打开处理](https://…)` drew a link into the officials' group under binwatch's name (an
    image, `![](…)`, made every phone fetch it), and `<@all>` or `<font …>` are WeCom's tags
    (a mention of everyone, a colour). Our own texts hold neither a `](` nor a `<`."""
    return text.replace("](", "] (").replace("<", "＜").replace(">", "＞")


def shown_url(url: str) -> str:
    """`url` without its query, which holds the robot's key: what errors may show."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="…" if parts.query else "", fragment=""))


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature before URL-encoding: base64(HMAC-SHA256(secret, "<ms>\\n<secret>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """The robot URL with `timestamp` and the URL-encoded `sign` added to its query."""
    signed = urlencode({"timestamp": timestamp_ms, "sign": dingtalk_sign(secret, timestamp_ms)})
    return f"{url}{'&' if urlsplit(url).query else '?'}{signed}"


def wecom_body(note: Note) -> bytes:
    content = _cut(f"### {_inert(note.title)}\n{note.markdown}", MARKDOWN_BYTES)
    return _json({"msgtype": "markdown", "markdown": {"content": content}})


def dingtalk_body(note: Note) -> bytes:
    text = _cut(f"### {_inert(note.title)}\n{note.markdown}", MARKDOWN_BYTES)
    return _json({"msgtype": "markdown", "markdown": {"title": note.title, "text": text}})


class RobotSender:
    """Posts to robots through the webhook sender (its transport, timeouts and address rules)."""

    def __init__(self, http: WebhookSender) -> None:
        self.http = http

    def wecom(self, url: str, note: Note) -> Outcome:
        return self._post(url, url, wecom_body(note), WECOM_TRANSIENT)

    def dingtalk(self, url: str, secret: str, note: Note) -> Outcome:
        signed = dingtalk_signed_url(url, secret, round(time.time() * 1000))
        return self._post(url, signed, dingtalk_body(note), DINGTALK_TRANSIENT, secret)

    def _post(
        self, url: str, target: str, body: bytes, transient: frozenset[int], *secrets: str
    ) -> Outcome:
        shown = shown_url(url)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        answer = self.http.exchange(target, body, headers, shown=shown, keep=ANSWER_KEEP)
        if isinstance(answer, Outcome):
            return answer
        code, said = answer
        if not 200 <= code < 300:
            return refusal(shown, code, _scrub(said, target, secrets))
        text = _scrub(said, target, secrets).decode("utf-8", "replace")
        try:
            reply = json.loads(text)
            errcode = int(reply["errcode"])
        except (ValueError, TypeError, KeyError):
            return Outcome(False, f"{shown} answered {code} without an errcode: {text[:200]}")
        if errcode == 0:
            return Outcome(True)
        said_msg = str(reply.get("errmsg", ""))[:200]
        return Outcome(False, f"{shown} errcode {errcode}: {said_msg}", errcode in transient)


def _scrub(answer: bytes, url: str, secrets: tuple[str, ...]) -> bytes:
    """The answer with the URL's query values and the secrets blotted out, should the service
    echo them."""
    for value in [v for _k, v in parse_qsl(urlsplit(url).query)] + list(secrets):
        if len(value) >= 4:
            answer = answer.replace(value.encode(), b"***")
    return answer


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    encoded = text.encode()
    return text if len(encoded) <= limit else encoded[: limit - 3].decode("utf-8", "ignore") + "…"


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
