"""The crew's screen and its taps (issue 16): what a photo is (by its bytes), what a tap's
fields mean, and on the real stack: a crew sees and taps only its own vehicle's stops (any
other stop answers as a missing one), a tap sent twice is one action, could-not-empty is a
report with its reason in the reader's language, photos are checked and kept, and a disputed
stop shows on the crew's screen and the manager's site page."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.main import create_app
from collection import crew, store
from collection.lifecycle import COLLECTOR, Status
from collection.models import CollectionEvent, CrewTap, RouteStop
from collection.photo_store import DiskStore
from collection.proof import PhotoRejected, keep_photo, photo_kind
from core.errors import NotFound, StoreUnavailable
from core.settings import Settings
from core.sql import make_engine
from devices.models import Site
from security.keys import ApiRole, create_key
from security.scopes import ScopeError
from security.users import UserRole, create_user
from tests.crew_world import CREW, MINE, PASSWORD, SIBLING, THEIRS, CrewWorld, build
from tests.helpers import ADMIN_HEADERS

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64


# --- without servers ----------------------------------------------------------------------------


def test_a_photo_is_what_its_bytes_say_and_is_kept_under_its_day(tmp_path: Path) -> None:
    assert photo_kind(JPEG, max_bytes=1024) == "jpg"
    assert photo_kind(PNG, max_bytes=1024) == "png"
    refused = {
        "photo_not_image": (GIF, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\xff\xd8"),
        "photo_empty": (b"",),
        "photo_too_big": (JPEG + b"\x00" * 1024,),
    }
    for code, samples in refused.items():
        for data in samples:
            with pytest.raises(PhotoRejected) as caught:
                photo_kind(data, max_bytes=1024)
            assert caught.value.code == code, data[:10]
    tap_id = uuid.uuid4()
    disk = DiskStore(tmp_path)
    kept = keep_photo(disk, PNG, tap_id=tap_id, day=date(2026, 12, 2), max_bytes=1024)
    assert kept == f"2026-12-02/{tap_id}-{hashlib.sha256(PNG).hexdigest()[:16]}.png"
    assert (tmp_path / kept).read_bytes() == disk.get(kept) == PNG
    assert [p.name for p in (tmp_path / "2026-12-02").iterdir()] == [kept.split("/")[1]]
    for outside in ("../../etc/passwd", "/etc/passwd", "2026-12-02", "2026-12-02/missing.png"):
        with pytest.raises(NotFound):
            disk.get(outside)


def test_two_photos_of_one_tap_sent_at_once_never_share_a_key(tmp_path: Path) -> None:
    """Both uploads are kept before either is attached to the tap (the API releases the
    registry while the store is slow); whichever the tap keeps must be the photo under its key.
    The same photo from many threads at once (a phone retrying) is one file and no error."""
    disk, tap_id, day = DiskStore(tmp_path), uuid.uuid4(), date(2026, 12, 2)
    first = keep_photo(disk, PNG, tap_id=tap_id, day=day, max_bytes=1024)
    second = keep_photo(disk, JPEG, tap_id=tap_id, day=day, max_bytes=1024)
    assert first != second and disk.get(first) == PNG and disk.get(second) == JPEG
    with ThreadPoolExecutor(8) as pool:
        keys = set(
            pool.map(
                lambda _n: keep_photo(disk, PNG, tap_id=tap_id, day=day, max_bytes=1024), range(64)
            )
        )
    assert keys == {first} and disk.get(first) == PNG
    assert sorted(p.name for p in (tmp_path / "2026-12-02").iterdir()) == sorted(
        k.split("/")[1] for k in (first, second)
    )  # no partial file left behind


def test_a_photo_folder_that_cannot_be_written_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """A folder that is a file (as root, a read-only folder would be written all the same):
    StoreUnavailable, which the console and the API answer with a 503 that says so."""
    (tmp_path / "photos").write_bytes(b"not a folder")
    with pytest.raises(StoreUnavailable, match="photo folder"):
        DiskStore(tmp_path / "photos").put("2026-12-02/x.png", PNG, content_type="image/png")


def test_boto3_is_loaded_only_when_a_photo_goes_to_a_bucket() -> None:
    """The API, ingest and the CLI, even with the S3 store chosen, load boto3 only at the first
    photo (core/objects.py): a fresh interpreter, since this one may have it loaded already."""
    program = (
        "import sys, api.main, binwatch.cli, ingest.service\n"
        "from collection.photo_store import photo_store\n"
        "from core.settings import Settings\n"
        "photo_store(Settings(route_photo_store='s3', route_photo_s3_bucket='b').route)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('boto3', 'botocore'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert loaded.stdout.strip() == "[]", loaded.stderr


def test_a_tap_is_read_from_its_fields() -> None:
    tap_id = str(uuid.uuid4())
    assert crew.Tap.of(tap_id, "emptied", "blocked") == crew.Tap(uuid.UUID(tap_id), "emptied")
    by_reason = crew.Tap.of(tap_id.upper(), "", "no_access")  # a reason's button alone
    assert (str(by_reason.id), by_reason.action, by_reason.reason) == (
        tap_id,
        "not_emptied",
        "no_access",
    )
    for fields, code in (
        (("../../etc/passwd", "emptied", ""), "bad_tap_id"),
        ((tap_id, "burnt", ""), "bad_action"),
        ((tap_id, "not_emptied", ""), "bad_reason"),
        ((tap_id, "not_emptied", "lazy"), "bad_reason"),
    ):
        with pytest.raises(crew.TapError) as caught:
            crew.Tap.of(*fields)
        assert caught.value.code == code


# --- on the real stack --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(module_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One crew's day for the module: each test taps its own stops."""
    photos = tmp_path_factory.mktemp("photos")
    settings = module_settings.model_copy(
        update={
            "route": module_settings.route.model_copy(
                update={"photo_dir": str(photos), "photo_max_kb": 16}
            )
        }
    )
    day = build(settings)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield World(settings, day, client, photos)


class World:
    def __init__(self, settings: Settings, day: CrewWorld, client: TestClient, photos: Path):
        self.settings, self.day, self.client, self.photos = settings, day, client, photos
        self.engine = make_engine(settings.database_url)

    def session(self) -> Session:
        return Session(self.engine)

    def log_in(self, username: str = CREW, page: str = "/console/crew") -> str:
        """Log the client in; the CSRF token of its session."""
        self.client.cookies.clear()
        form = self.client.get("/console/login")
        answer = self.client.post(
            "/console/login",
            data={"username": username, "password": PASSWORD, "csrf": _csrf(form.text)},
        )
        assert answer.status_code == 303, answer.text
        return _csrf(self.client.get(page).text)

    def tap(
        self, stop_id: int, csrf: str, tap_id: str, *, photo: bytes | None = None, **fields: str
    ) -> httpx.Response:
        files = (
            {"photo": ("from-the-phone.jpg", photo, "image/jpeg")} if photo is not None else None
        )
        return self.client.post(
            f"/console/crew/stops/{stop_id}/tap",
            data={"csrf": csrf, "tap_id": tap_id, **fields},
            files=files,
            headers={"Accept": "application/json"},
        )

    def card(self, stop_id: int) -> str:
        """The stop's card on the crew's screen."""
        page = self.client.get("/console/crew").text
        return page[page.index(f'id="stop-{stop_id}"') :].split("</li>")[0]

    def events(self, request_id: int) -> list[CollectionEvent]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(CollectionEvent)
                    .where(CollectionEvent.request_id == request_id)
                    .order_by(CollectionEvent.id)
                )
            )

    def taps(self, stop_id: int) -> int:
        with self.session() as session:
            return (
                session.scalar(
                    select(func.count()).select_from(CrewTap).where(CrewTap.stop_id == stop_id)
                )
                or 0
            )


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


@pytest.mark.servers
def test_the_same_tap_taken_twice_acts_once(world: World) -> None:
    """Two copies of one tap, each in its own session (two API workers): the primary key lets
    one claim it; the other answers what the first did."""
    stop_id, tap = world.day.mine[3], crew.Tap(uuid.uuid4(), "emptied")
    answers = []
    for _copy in range(2):
        with world.session() as session:
            taken = crew.take(
                session,
                tap,
                session.get_one(RouteStop, stop_id),
                crew_vehicle=crew.vehicle(session, MINE),
                actor_key="crew key test (truck)",
                now=datetime.now(UTC),
            )
            answers.append((taken.repeated, taken.tap.outcome))
    assert answers == [(False, "completed"), (True, "completed")]
    assert world.taps(stop_id) == 1
    moves = [e.to_status for e in world.events(world.day.requests[stop_id])]
    assert moves == ["open", "acknowledged", "completed"]


@pytest.mark.servers
def test_a_crew_user_or_key_names_an_existing_vehicle(world: World) -> None:
    now = datetime.now(UTC)
    with world.session() as session:
        for kwargs, code in (
            ({}, "scope_needs_vehicle"),
            ({"vehicle_id": "no-such-truck"}, "no_vehicle"),
            ({"vehicle_id": MINE, "operator_id": "op-lvyuan"}, "scope_not_operator"),
        ):
            with pytest.raises(ScopeError) as caught:
                create_user(
                    session, username="x.crew", display_name="", password=PASSWORD,
                    role=UserRole.crew, now=now, **kwargs,
                )  # fmt: skip
            assert caught.value.code == code
        with pytest.raises(ScopeError):
            create_key(session, name="k", role=ApiRole.manager, now=now, vehicle_id=MINE)
        token = create_key(session, name="truck", role=ApiRole.crew, now=now, vehicle_id=MINE)
    headers = {"Authorization": f"Bearer {token.token}"}
    own = world.client.get(f"/api/v1/operators/op-lvyuan/routes/{MINE}", headers=headers)
    assert own.status_code == 200, own.text
    assert [s["request_id"] for s in own.json()["vehicles"][0]["stops"]] == [
        world.day.requests[s] for s in world.day.mine
    ]
    elsewhere = [
        f"/api/v1/operators/op-lvyuan/routes/{SIBLING}",
        f"/api/v1/operators/op-jiejing/routes/{THEIRS}",
        "/api/v1/operators/op-jiejing/routes/no-such-truck",
    ]
    answers = [world.client.get(path, headers=headers) for path in elsewhere]
    assert {(a.status_code, a.json()["detail"]) for a in answers[1:]} == {
        (404, "no operator with id 'op-jiejing'")
    }
    assert answers[0].status_code == 404
    for path in ("/api/v1/sites", "/api/v1/collections", "/api/v1/operators/op-lvyuan/routes"):
        assert world.client.get(path, headers=headers).status_code == 403, path


@pytest.mark.servers
def test_a_crew_sees_and_taps_only_its_own_vehicles_stops(world: World) -> None:
    csrf = world.log_in()
    assert world.client.get("/console").headers["location"] == "/console/crew"
    page = world.client.get("/console/crew").text
    shown = [int(s) for s in re.findall(r'id="stop-(\d+)"', page)]
    assert shown == world.day.mine  # in driving order, no other vehicle's
    # ETAs in the city's time (the world plans the first stop LEG after now)
    with world.session() as session:
        first = session.get_one(RouteStop, world.day.mine[0]).arrival_at
    local = first.astimezone(ZoneInfo(world.settings.timezone)).strftime("%H:%M")
    assert f'class="eta" title="预计到达">{local}<' in page
    # a stop is a 清运点 (a place to empty), not a 站点 (a site: the managers' "my sites")
    assert "<h1>今日清运点</h1>" in page and ">我的清运点</a>" in page and "站点" not in page
    for path in ("/console/map", "/console/sites/jiazhou-shuian"):
        assert world.client.get(path).status_code == 403, path
    refused = [
        world.tap(stop, csrf, str(uuid.uuid4()), action="emptied")
        for stop in (world.day.sibling, world.day.theirs, 2_000_000_000)
    ]
    assert {(a.status_code, _problem(a.text)) for a in refused} == {
        (404, "您今天的路线上没有这个清运点。")
    }
    no_csrf = world.tap(world.day.mine[2], "forged", str(uuid.uuid4()), action="emptied")
    assert no_csrf.status_code == 403
    assert world.taps(world.day.sibling) == world.taps(world.day.theirs) == 0
    assert world.taps(world.day.mine[2]) == 0


def _problem(page: str) -> str:
    found = re.search(r'class="problem" role="alert">([^<]*)<', page)
    assert found, page
    return found.group(1)


@pytest.mark.servers
def test_a_tap_sent_twice_is_one_action_and_a_disputed_stop_shows(world: World) -> None:
    csrf = world.log_in()
    stop, tap_id = world.day.mine[0], str(uuid.uuid4())
    request_id = world.day.requests[stop]
    first = world.tap(stop, csrf, tap_id, action="emptied")
    again = world.tap(stop, csrf, tap_id, action="emptied")
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() | {"repeated": True} == again.json()
    assert first.json()["outcome"] == "completed" and not first.json()["repeated"]
    assert world.taps(stop) == 1
    moves = [(e.from_status, e.to_status) for e in world.events(request_id)]
    assert moves == [(None, "open"), ("open", "acknowledged"), ("acknowledged", "completed")]
    assert {e.actor for e in world.events(request_id)[1:]} == {"crew user wang.crew (wang.crew)"}
    elsewhere = world.tap(world.day.mine[1], csrf, tap_id, action="emptied")
    assert elsewhere.status_code == 422
    assert elsewhere.json()["message"] == "该操作已用于另一个清运点。"
    # another tap (a new id) on a stop whose request is completed is refused, and says why
    late = world.tap(stop, csrf, str(uuid.uuid4()), action="not_emptied", reason="blocked")
    assert late.status_code == 409 and late.json()["outcome"] == "refused"

    # the bin's next readings do not drop: the collector disputes the completion
    with world.session() as session:
        store.transition(
            session, request_id, Status.disputed, actor=COLLECTOR, now=datetime.now(UTC)
        )
    card = world.card(stop)
    assert "disputed" in card.split(">")[0] and "有争议：垃圾桶读数未显示已清空。" in card
    with world.session() as session:
        site_id = session.get_one(RouteStop, stop).site_id
        bin_id = session.get_one(RouteStop, stop).bin_id
        create_user(
            session, username="manager.disputed", display_name="", password=PASSWORD,
            role=UserRole.manager, now=datetime.now(UTC), site_ids=[site_id or ""],
        )  # fmt: skip
    world.log_in("manager.disputed", f"/console/sites/{site_id}")
    site = world.client.get(f"/console/sites/{site_id}").text
    disputed = site[site.index("有争议的清运") :]
    assert bin_id is not None and bin_id in disputed.split("</section>")[0]


@pytest.mark.servers
def test_could_not_empty_is_a_report_in_the_readers_language(world: World) -> None:
    csrf = world.log_in()
    stop = world.day.mine[1]
    request_id = world.day.requests[stop]
    answer = world.tap(stop, csrf, str(uuid.uuid4()), reason="contaminated_refused")
    assert answer.status_code == 200 and answer.json()["outcome"] == "reported", answer.text
    assert answer.json()["message"] == "已上报：由调度员处理。"
    report = world.events(request_id)[-1]
    assert (report.kind, report.from_status, report.to_status) == ("report", "open", "open")
    assert report.note_msg == {"id": "crew.contaminated_refused", "args": {}}
    assert report.note == "could not empty: contaminated load refused"
    card = world.card(stop)
    assert "分类不合格，拒收" in card and "<form" not in card  # reported: nothing left to tap
    detail = world.client.get(f"/api/v1/collections/{request_id}", headers=ADMIN_HEADERS).json()
    assert detail["status"] == "open" and detail["events"][-1]["kind"] == "report"


@pytest.mark.servers
def test_photos_are_checked_by_their_bytes_and_kept_on_disk(world: World) -> None:
    csrf = world.log_in()
    stop = world.day.mine[2]
    not_image = world.tap(stop, csrf, str(uuid.uuid4()), action="emptied", photo=GIF)
    assert not_image.status_code == 422
    assert not_image.json()["message"] == "照片必须是 JPEG 或 PNG 图片。"
    too_big = world.tap(stop, csrf, str(uuid.uuid4()), action="emptied", photo=JPEG * 300)
    assert too_big.status_code == 413
    assert too_big.json()["message"] == "照片太大：最多 16 KB。"
    beyond = world.tap(stop, csrf, str(uuid.uuid4()), action="emptied", photo=JPEG * 2000)
    assert beyond.status_code == 413  # over the body cap: refused before it is read
    assert world.taps(stop) == 0 and not any(world.photos.rglob("*.*"))
    tap_id = str(uuid.uuid4())
    kept = world.tap(stop, csrf, tap_id, action="emptied", photo=PNG)
    assert kept.status_code == 200 and kept.json()["outcome"] == "completed", kept.text
    with world.session() as session:
        photo = session.get_one(CrewTap, tap_id).photo
    assert photo is not None and (world.photos / photo).read_bytes() == PNG
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d/{tap_id}-[0-9a-f]{{16}}\.png", photo
    )  # not the file's name
    # The site's manager sees it on the request's history; a manager of another site, or a tap
    # without a photo, gets the same 404 as a photo that does not exist.
    with world.session() as session:
        site_id = session.get_one(RouteStop, stop).site_id or ""
        elsewhere = session.scalars(select(Site.id).where(Site.id != site_id)).first() or ""
        for username, site in (("manager.photo", site_id), ("manager.elsewhere", elsewhere)):
            create_user(
                session, username=username, display_name="", password=PASSWORD,
                role=UserRole.manager, now=datetime.now(UTC), site_ids=[site],
            )  # fmt: skip
    world.log_in("manager.photo", f"/console/sites/{site_id}")
    history = world.client.get(f"/console/requests/{world.day.requests[stop]}").text
    assert f'<img src="/console/photos/{tap_id}"' in history and "清运班组拍摄的照片" in history
    shown = world.client.get(f"/console/photos/{tap_id}")
    assert shown.status_code == 200 and shown.content == PNG
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["x-content-type-options"] == "nosniff"
    missing = world.client.get(f"/console/photos/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert world.client.get("/console/photos/not-a-uuid").status_code == 422
    world.log_in("manager.elsewhere", f"/console/sites/{elsewhere}")
    hidden = world.client.get(f"/console/photos/{tap_id}")
    assert hidden.status_code == 404 and hidden.text == world.client.get(missing.url).text
