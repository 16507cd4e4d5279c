"""Console users in the registry (no other server needed): each role's scope checked when a
user is created, logins, sessions that end, and `binwatch users …` as a person runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from binwatch.database import migrate
from binwatch.demo_logins import demo_logins
from core.errors import InvalidRequest
from core.sql import make_engine
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from security.models import ConsoleSession, User
from security.users import (
    UserRole,
    check_login,
    close_session,
    create_user,
    disable_user,
    open_session,
    reset_password,
    session_user,
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PASSWORD = "green bins 2026"
IDLE, MAX_AGE = timedelta(minutes=30), timedelta(hours=12)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        yield session
    engine.dispose()


def _manager(session: Session, username: str = "li.manager") -> User:
    return create_user(
        session,
        username=username,
        display_name="李经理",
        password=PASSWORD,
        role=UserRole.manager,
        now=NOW,
        site_ids=["jiazhou-shuian"],
    )


@pytest.mark.parametrize(
    ("role", "scope", "why"),
    [
        (UserRole.manager, {}, "manager users need a site"),
        (UserRole.manager, {"site_ids": ["nowhere"]}, "no site with id 'nowhere'"),
        (
            UserRole.manager,
            {"site_ids": ["jiazhou-shuian"], "area_id": "xiaoba"},
            "manager users are not scoped to an area",
        ),
        (UserRole.grid, {"area_id": "op-lvyuan"}, "district, street or community"),
        (UserRole.grid, {"area_id": "pilot-city"}, "district, street or community"),
        (UserRole.operator, {"operator_id": "op-none"}, "no operator with id 'op-none'"),
        (UserRole.admin, {"site_ids": ["jiazhou-shuian"]}, "admin users are not scoped to a site"),
    ],
)
def test_each_role_gets_exactly_its_kind_of_scope(
    registry: Session, role: UserRole, scope: dict[str, Any], why: str
) -> None:
    with pytest.raises(InvalidRequest, match=why):
        create_user(
            registry, username="u1", display_name="", password=PASSWORD, role=role, now=NOW, **scope
        )


def test_a_grid_official_is_scoped_to_a_community_street_or_district(registry: Session) -> None:
    for n, area in enumerate(("xiaoba", "lvxin", "shizhong")):
        user = create_user(
            registry,
            username=f"grid{n}",
            display_name="",
            password=PASSWORD,
            role=UserRole.grid,
            now=NOW,
            area_id=area,
        )
        assert user.area_id == area


def test_names_locales_and_weak_passwords_are_refused_saying_why(registry: Session) -> None:
    _manager(registry)
    with pytest.raises(InvalidRequest, match="exists already"):
        _manager(registry)
    with pytest.raises(InvalidRequest, match="lower-case letters"):
        _manager(registry, "Li Manager")
    # '$' matched before a final line break: a user nobody could log in as (login strips it).
    with pytest.raises(InvalidRequest, match="lower-case letters"):
        _manager(registry, "li.manager2\n")
    with pytest.raises(InvalidRequest, match="at least 10 characters"):
        create_user(
            registry, username="u2", display_name="", password="short", role=UserRole.admin, now=NOW
        )
    # A display name is one line of what a screen, a PDF and a chat show: no ESC sequence, no
    # line break, no NUL (PostgreSQL refuses it).
    for name, shown in (("\x1b[31mLi", "\\x1b"), ("Li\nWang", "\\n"), ("Li\x00", "\\x00")):
        with pytest.raises(
            InvalidRequest, match=re.escape(f"name holds a control character, {shown},")
        ):
            create_user(registry, username="u4", display_name=name, password=PASSWORD,
                        role=UserRole.admin, now=NOW)  # fmt: skip
    with pytest.raises(InvalidRequest, match="locale must be one of zh_CN, en"):
        create_user(
            registry,
            username="u3",
            display_name="",
            password=PASSWORD,
            role=UserRole.admin,
            now=NOW,
            locale="fr",
        )


def test_login_needs_the_right_password_of_an_enabled_user(registry: Session) -> None:
    _manager(registry)
    assert check_login(registry, "li.manager", PASSWORD) is not None
    assert check_login(registry, " LI.manager ", PASSWORD) is not None
    assert check_login(registry, "li.manager", PASSWORD + "x") is None
    assert check_login(registry, "nobody", PASSWORD) is None
    disable_user(registry, "li.manager", now=NOW)
    assert check_login(registry, "li.manager", PASSWORD) is None


def test_a_session_lives_while_used_and_ends_idle_old_or_closed(registry: Session) -> None:
    user = _manager(registry)
    opened = open_session(registry, user, now=NOW)
    assert opened.token not in opened.row.token_hash
    later = NOW
    for _ in range(30):  # used every 25 minutes: alive until its 12 hours are up
        later += timedelta(minutes=25)
        if later >= NOW + MAX_AGE:
            break
        assert (
            session_user(registry, opened.token, now=later, idle=IDLE, max_age=MAX_AGE) is not None
        )
    assert (
        session_user(registry, opened.token, now=NOW + MAX_AGE, idle=IDLE, max_age=MAX_AGE) is None
    )
    assert registry.get(ConsoleSession, opened.row.id) is None  # an ended session is deleted

    idle = open_session(registry, user, now=NOW)
    assert session_user(registry, idle.token, now=NOW + IDLE, idle=IDLE, max_age=MAX_AGE) is None

    closed = open_session(registry, user, now=NOW)
    forged = closed.token[:-1] + ("A" if closed.token[-1] != "A" else "B")
    assert session_user(registry, forged, now=NOW, idle=IDLE, max_age=MAX_AGE) is None
    close_session(registry, closed.token)
    assert session_user(registry, closed.token, now=NOW, idle=IDLE, max_age=MAX_AGE) is None


def test_disabling_or_resetting_a_password_ends_the_users_sessions(registry: Session) -> None:
    user = _manager(registry)
    opened = open_session(registry, user, now=NOW)
    reset_password(registry, "li.manager", "a new password 7", now=NOW)
    assert session_user(registry, opened.token, now=NOW, idle=IDLE, max_age=MAX_AGE) is None
    assert check_login(registry, "li.manager", "a new password 7") is not None
    opened = open_session(registry, user, now=NOW)
    disable_user(registry, "li.manager", now=NOW)
    assert session_user(registry, opened.token, now=NOW, idle=IDLE, max_age=MAX_AGE) is None


def _binwatch(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "binwatch", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_creates_resets_and_disables_users_reading_passwords_from_stdin(
    tmp_path: Path,
) -> None:
    assert _binwatch(tmp_path, "db", "migrate").returncode == 0  # a fresh install's first step
    made = _binwatch(
        tmp_path,
        "users",
        "create",
        "city.admin",
        "--role",
        "admin",
        "--name",
        "市管理员",
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    weak = _binwatch(tmp_path, "users", "reset-password", "city.admin", stdin="short\n")
    assert weak.returncode == 1
    assert "at least 10 characters" in weak.stderr
    generated = _binwatch(tmp_path, "users", "reset-password", "city.admin", "--generate")
    assert generated.returncode == 0, generated.stderr
    password = generated.stdout.strip().splitlines()[-1]
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    with Session(engine) as session:
        assert check_login(session, "city.admin", password) is not None
        assert check_login(session, "city.admin", PASSWORD) is None
    disabled = _binwatch(tmp_path, "users", "disable", "city.admin")
    assert disabled.returncode == 0, disabled.stderr
    with Session(engine) as session:
        assert check_login(session, "city.admin", password) is None
    engine.dispose()
    unknown = _binwatch(tmp_path, "users", "disable", "nobody")
    assert unknown.returncode == 1
    assert "no user 'nobody'" in unknown.stderr


def test_the_demo_makes_one_login_per_role_and_renews_their_passwords_each_run(
    tmp_path: Path,
) -> None:
    """A compound's manager, its community's and its district's grid officials, the city admin:
    in the pilot fleet, Jiazhou Shuian, Xiaoba Community, Shizhong District."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        session.commit()
    first = demo_logins(url)
    second = demo_logins(url)
    assert [(login.title, login.username, login.scope) for login in second] == [
        ("property manager", "demo.manager", "嘉州水岸小区"),
        ("community official", "demo.community", "肖坝社区"),
        ("district official", "demo.district", "市中区"),
        ("city admin", "demo.admin", "乐山市"),
        ("dispatcher", "demo.dispatcher", "乐山绿源环境服务有限公司"),
        ("crew", "demo.crew", "绿源压缩车1号"),
    ]
    with Session(engine) as session:
        for old, new in zip(first, second, strict=True):
            assert old.password != new.password
            assert check_login(session, old.username, old.password) is None
            user = check_login(session, new.username, new.password)
            assert user is not None and user.role == new.role.value
        scopes = {
            u.username: (u.site_ids, u.area_id, u.operator_id, u.vehicle_id)
            for u in session.query(User)
        }
    assert scopes == {
        "demo.manager": ("jiazhou-shuian", None, None, None),
        "demo.community": ("", "xiaoba", None, None),
        "demo.district": ("", "shizhong", None, None),
        "demo.admin": ("", None, None, None),
        "demo.dispatcher": ("", None, "op-lvyuan", None),
        "demo.crew": ("", None, None, "lvyuan-dry-1"),
    }
    engine.dispose()
