"""The demo's console logins, one per kind of person the pilot has: a compound's property
manager, a community official and a district official (grid officials of the compound's own
community and district, so the three see the same place at three levels), the city admin, and
the operator serving the compound: its dispatcher and the crew of one of its vehicles.

They are created on a demo's first run and get a new password on every run, printed like the
run's admin key: a demo's passwords are worth nothing once it stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import BinwatchError
from core.sql import make_engine
from devices.models import Area, Bin, Site, Vehicle
from security import passwords
from security.models import User
from security.users import UserRole, create_user, reset_password


@dataclass(frozen=True, slots=True)
class DemoLogin:
    title: str  # who it is, for the terminal: "property manager", "community official", …
    username: str
    password: str = field(repr=False)
    role: UserRole
    display_name: str
    scope: str  # what it sees, said for the terminal: a site's or an area's name
    site_ids: tuple[str, ...] = ()
    area_id: str | None = None
    operator_id: str | None = None
    vehicle_id: str | None = None


def demo_logins(database_url: str) -> list[DemoLogin]:
    """The six logins for this run: created when missing, a fresh password each."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            logins = _wanted(session)
            now = datetime.now(UTC)
            for login in logins:
                if session.get(User, login.username) is not None:
                    reset_password(session, login.username, login.password, now=now)
                    continue
                create_user(
                    session,
                    username=login.username,
                    display_name=login.display_name,
                    password=login.password,
                    role=login.role,
                    now=now,
                    site_ids=login.site_ids,
                    area_id=login.area_id,
                    operator_id=login.operator_id,
                    vehicle_id=login.vehicle_id,
                )
    finally:
        engine.dispose()
    return logins


def _wanted(session: Session) -> list[DemoLogin]:
    """The fleet's biggest compound (most bins; in the pilot fleet 嘉州水岸小区), its community
    and its district, its operator and that operator's first vehicle (by id) carrying residual
    waste, the stream every site has (or its first vehicle)."""
    compound = session.scalars(
        select(Site)
        .join(Bin, Bin.site_id == Site.id)
        .where(Site.site_type == "compound", Site.retired_at.is_(None))
        .group_by(Site.id)
        .order_by(func.count(Bin.id).desc(), Site.id)
    ).first()
    if compound is None:
        raise BinwatchError("the fleet has no compound for the demo's manager login")
    community = compound.community
    district: Area | None = community.parent.parent if community.parent else None
    if district is None or district.kind != "district":
        raise BinwatchError(f"community {community.id!r} does not hang under a street and district")
    operator = compound.operator
    vehicles = session.scalars(
        select(Vehicle).where(Vehicle.operator_id == operator.id).order_by(Vehicle.id)
    ).all()
    if not vehicles:
        raise BinwatchError(f"operator {operator.id!r} has no vehicle for the demo's crew login")
    truck = next((v for v in vehicles if "residual" in v.streams), vehicles[0])
    return [
        DemoLogin(
            "property manager",
            "demo.manager",
            passwords.generate(),
            UserRole.manager,
            "物业经理 (demo)",
            compound.name,
            site_ids=(compound.id,),
        ),
        DemoLogin(
            "community official",
            "demo.community",
            passwords.generate(),
            UserRole.grid,
            "社区网格员 (demo)",
            community.name,
            area_id=community.id,
        ),
        DemoLogin(
            "district official",
            "demo.district",
            passwords.generate(),
            UserRole.grid,
            "区级网格长 (demo)",
            district.name,
            area_id=district.id,
        ),
        DemoLogin(
            "city admin",
            "demo.admin",
            passwords.generate(),
            UserRole.admin,
            "市管理员 (demo)",
            district.parent.name if district.parent else "the whole city",
        ),
        DemoLogin(
            "dispatcher",
            "demo.dispatcher",
            passwords.generate(),
            UserRole.operator,
            "调度员 (demo)",
            operator.name,
            operator_id=operator.id,
        ),
        DemoLogin(
            "crew",
            "demo.crew",
            passwords.generate(),
            UserRole.crew,
            "清运班组 (demo)",
            truck.name,
            vehicle_id=truck.id,
        ),
    ]
