"""What an outside attacker sends to the console and the API, against the real stack: input the
registry cannot hold is a 4xx that says what to fix, never a 500, and nothing of it is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from alerts import store as alert_store
from alerts.rules import AlertType, Finding
from api.paging import cursor
from collection.models import CollectionRequest
from security.models import User
from tests.api_process import ApiProcess
from tests.helpers import ADMIN_HEADERS
from tests.test_console import (  # noqa: F401
    MANAGER,
    PASSWORD,
    SITE_A,
    Stack,
    _csrf,
    _login,
    _problem,
    add_city_admin,
    stack,
)

NUL = "\x00"


def test_a_nul_character_anywhere_is_a_4xx_saying_so_never_a_500(stack: Stack) -> None:  # noqa: F811
    """PostgreSQL's text columns cannot hold U+0000: psycopg refused the statement and every
    form, JSON body or cookie that carried one to the registry was a 500 (SQLite stored it)."""
    with stack.session() as session:
        add_city_admin(session)
        alert = alert_store.raise_alert(
            session, stack.bin_a, Finding(AlertType.tilt, True), now=datetime.now(UTC), prefix="t"
        )
        session.commit()
        assert alert is not None
        alert_id = alert.id
    with stack.client(**{"Accept-Language": "en"}) as client:
        # A cookie's quoted value may spell a NUL as \000 (RFC 2109 quoting, which Starlette
        # reads): a session nobody opened, so the login page, as for any other.
        forged = client.get("/console", headers={"Cookie": 'binwatch_session="\\000_x"'})
        assert forged.status_code == 303 and forged.headers["location"] == "/console/login"
        form = client.get("/console/login")
        for name in (f"li{NUL}manager", "x" * 5000):  # no user can have it: the same 401
            wrong = client.post(
                "/console/login",
                data={"username": name, "password": PASSWORD, "csrf": _csrf(form.text)},
            )
            assert wrong.status_code == 401
            assert _problem(wrong.text) == "Wrong user name or password."
        _login(client)
        csrf = _csrf(client.get(f"/console/sites/{SITE_A}").text)
        noted = client.post(
            f"/console/sites/{SITE_A}/collections",
            data={"bin_id": stack.bin_a, "note": f"gate{NUL}code", "csrf": csrf},
        )
        assert noted.status_code == 422  # a typed text is checked first (core/printable.py)
        assert _problem(noted.text) == "备注包含控制字符；请删除后重新提交。"
        for path, body in (
            ("/api/v1/collections", {"bin_id": stack.bin_a, "reason": f"full{NUL}"}),
            (f"/api/v1/alerts/{alert_id}/ack", {"note": f"on it{NUL}"}),
        ):
            refused = client.post(path, json=body, headers=ADMIN_HEADERS)
            assert refused.status_code == 422, path
            # Refused as JSON no store can hold, before the route (api/limits.py).
            (problem,) = refused.json()["detail"]
            assert problem["type"] == "json_invalid" and "NUL character" in problem["msg"]
    with stack.client(**{"Accept-Language": "en"}) as admin:
        _login(admin, "city.admin")
        csrf = _csrf(admin.get("/console/users").text)
        new = {"csrf": csrf, "username": "new.one", "locale": "en", "display_name": "New"}
        named = admin.post(
            "/console/users", data=new | {"role": "admin", "display_name": f"N{NUL}"}
        )
        assert named.status_code == 422
        assert _problem(named.text) == "姓名包含控制字符；请写在一行内。"
        for fields in (  # ids reach the registry's guard (core/sql.py)
            {"role": "manager", "site_ids": [f"{SITE_A}{NUL}"]},
            {"role": "grid", "area_id": f"xiaoba{NUL}"},
            {"role": "operator", "operator_id": f"op-lvyuan{NUL}"},
            {"role": "crew", "vehicle_id": f"lvyuan-dry-1{NUL}"},
        ):
            refused = admin.post("/console/users", data=new | fields)
            assert refused.status_code == 422, fields
            assert _problem(refused.text) == "文本不能包含空字符（U+0000），请删除后重新提交。"
    with stack.session() as session:
        assert session.scalars(select(CollectionRequest)).all() == []
        assert session.get(User, "new.one") is None
        assert alert_store.get_alert(session, alert_id).acknowledged_at is None
        assert session.get_one(User, MANAGER).locale == "zh_CN"


def test_a_typed_note_keeps_its_lines_and_holds_no_other_control_character(
    stack: Stack,  # noqa: F811
) -> None:
    """An ESC sequence or a bell in a note is nothing any screen, PDF or chat shows (and an
    ESC reaches a terminal as a command): refused with the character named; line breaks and
    tabs are a note's own."""
    with stack.client() as client:
        for path, body in (
            ("/api/v1/collections", {"bin_id": stack.bin_a, "reason": "gate\x1b[2J code"}),
            ("/api/v1/alerts/1/ack", {"note": "on it\x07"}),
        ):
            refused = client.post(path, json=body, headers=ADMIN_HEADERS)
            assert refused.status_code == 422, path
            (problem,) = refused.json()["detail"]
            assert "holds a control character" in problem["msg"], problem
        _login(client)
        csrf = _csrf(client.get(f"/console/sites/{SITE_A}").text)
        noted = client.post(
            f"/console/sites/{SITE_A}/collections",
            data={"bin_id": stack.bin_a, "note": "gate\x0bcode", "csrf": csrf},
        )
        assert noted.status_code == 422
        assert _problem(noted.text) == "备注包含控制字符；请删除后重新提交。"
        with stack.session() as session:
            assert session.scalars(select(CollectionRequest)).all() == []
        kept = "bags by the gate\r\n\tsecond line"
        created = client.post(
            "/api/v1/collections", json={"bin_id": stack.bin_a, "reason": kept},
            headers=ADMIN_HEADERS,
        )  # fmt: skip
        assert created.status_code == 201 and created.json()["reason"] == kept


@pytest.mark.registry_backends(
    "sqlite", reason="what the answers' headers say; the pages' queries run on both elsewhere"
)
def test_no_other_origin_may_frame_a_console_page(stack: Stack) -> None:  # noqa: F811
    with stack.client() as client:
        pages = [client.get("/console/login")]
        _login(client)
        pages += [client.get(path) for path in ("/console", f"/console/sites/{SITE_A}")]
        pages.append(client.get("/console/sites/no-such-site"))  # an error page too
        for page in pages:
            assert page.headers["x-frame-options"] == "DENY", page.url
            assert page.headers["content-security-policy"] == "frame-ancestors 'none'"


@pytest.mark.registry_backends(
    "sqlite", reason="refused before any query: the cursor is read first, on both the same"
)
def test_a_forged_cursor_at_the_calendars_edges_is_a_422_like_any_other_forged_one(
    stack: Stack,  # noqa: F811
) -> None:
    """`after` is the one time a client can send that TimeParam did not check: a cursor the
    client wrote itself with a moment UTC cannot hold (0001-01-01 east of Greenwich, 9999-12-31
    west of it) was a 500 (OverflowError) where any other forged cursor is a 422."""
    with stack.client() as client:
        for moment in (
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59+00:00",
        ):
            forged = cursor(moment, 1)
            answer = client.get("/api/v1/alerts", params={"after": forged}, headers=ADMIN_HEADERS)
            assert answer.status_code == 422, (moment, answer.text)
            assert answer.json() == {
                "detail": "after is not a cursor of this list: use the next URL of a page as given"
            }


PROXY = "127.0.0.2"
"""The reverse proxy's address as `binwatch api` sees it: another loopback address than the
127.0.0.1 uvicorn trusts by default, as a TLS proxy on another machine, or compose's published
port (the API container sees the network's gateway), would be."""


@pytest.mark.registry_backends(
    "sqlite", reason="the failed logins are counted in the API process's memory"
)
def test_behind_a_trusted_proxy_a_guesser_locks_out_their_own_address_only(
    stack: Stack,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Failed logins are counted per client address. Behind a proxy whose X-Forwarded-For the
    server did not trust, every person had the proxy's address: a few wrong passwords from
    anywhere locked the whole city out of the console (429 for everyone, for 15 minutes)."""
    settings = stack.settings
    proxied = settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"trusted_proxies": PROXY}),
            "console": settings.console.model_copy(update={"address_failures": 3}),
        }
    )
    transport = httpx.HTTPTransport(local_address=PROXY)  # connect as the proxy does
    with (
        ApiProcess(proxied, tmp_path / "api.log") as api,
        httpx.Client(base_url=api.url, transport=transport) as client,
    ):

        def log_in(client_address: str, username: str, password: str) -> int:
            forwarded = {"X-Forwarded-For": client_address}
            form = client.get("/console/login", headers=forwarded)
            data = {"username": username, "password": password, "csrf": _csrf(form.text)}
            return client.post("/console/login", data=data, headers=forwarded).status_code

        guesser, manager = "203.0.113.7", "198.51.100.20"
        assert [log_in(guesser, f"guess.{n}", "wrong password!") for n in range(3)] == [401] * 3
        assert log_in(guesser, MANAGER, PASSWORD) == 429  # the guesser's address waits
        assert log_in(manager, MANAGER, PASSWORD) == 303  # everyone else logs in
        # An IPv6 guesser holds a /64 (2⁶⁴ addresses) and tried from a fresh one each time:
        # every address had its own count, so it sprayed passwords over the accounts for ever.
        block = "2001:db8:7:7"
        tries = [log_in(f"{block}::{n:x}", f"spray.{n}", "wrong password!") for n in range(1, 4)]
        assert tries == [401] * 3
        assert log_in(f"{block}:ffff:ffff:ffff:ffff", MANAGER, PASSWORD) == 429
        assert log_in("2001:db8:7:8::1", MANAGER, PASSWORD) == 303  # the next /64 is another's
