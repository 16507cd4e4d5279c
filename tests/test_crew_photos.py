"""Crews' photos in an S3-compatible bucket (issue 16), against a real S3 server process
(tests/s3_server.py): a photo tapped on the console lands in the bucket and the request's
history serves it back to whoever sees the site; the API's tap takes its photo in a PUT of the
image, once; a photo of the wrong type or too big is a 4xx that says so and stores nothing; a
store that is down or has no bucket is a 503 that says so, loses nothing (the console's tap
waits on the phone, the API's tap is kept without its photo) and never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.main import create_app
from binwatch.servers import free_port
from collection.models import CrewTap, RouteStop
from core.settings import Settings
from core.sql import make_engine
from devices.models import Site
from security.keys import ApiRole, create_key
from security.users import UserRole, create_user
from tests.conftest import AttachedServer
from tests.crew_world import CREW, MINE, PASSWORD, SIBLING, CrewWorld, build
from tests.helpers import ADMIN_HEADERS
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_client
from tests.test_console_grid import _csrf, _login

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="the store is the same whatever holds the registry; the taps' own rules run on "
        "both backends in test_crew.py",
    ),
]

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x02" * 64
GIF = b"GIF89a" + b"\x00" * 64
OURS = "op-lvyuan"


def _s3_settings(settings: Settings, *, url: str, bucket: str) -> Settings:
    return settings.model_copy(
        update={
            "route_photo_store": "s3",
            "route_photo_s3_url": url,
            "route_photo_s3_bucket": bucket,
            "route_photo_s3_region": REGION,
            "route_photo_s3_access_key": ACCESS_KEY,
            "route_photo_s3_secret_key": SECRET_KEY,
            "route_photo_max_kb": 16,
        }
    )


@dataclass
class World:
    settings: Settings
    day: CrewWorld
    client: TestClient
    bucket: str
    s3: Any  # a plain boto3 client of the server, to look into the bucket
    crew_key: dict[str, str]
    engine: Engine

    def session(self) -> Session:
        return Session(self.engine)

    def log_in(self, client: TestClient, username: str = CREW, page: str = "/console/crew") -> str:
        """Log `client` in; the CSRF token of its session."""
        client.cookies.clear()
        assert _login(client, username, PASSWORD).status_code == 303
        return _csrf(client.get(page).text)

    def console_tap(
        self, client: TestClient, stop: int, csrf: str, tap_id: str, photo: bytes, **headers: str
    ) -> httpx.Response:
        return client.post(
            f"/console/crew/stops/{stop}/tap",
            data={"csrf": csrf, "tap_id": tap_id, "action": "emptied"},
            files={"photo": ("IMG_0001.jpg", photo, "image/jpeg")},
            headers={"Accept": "application/json", **headers},
        )

    def api_tap(self, client: TestClient, stop: int, **body: str) -> str:
        """A tap over the API (plain JSON, as before photos); its id."""
        tap_id = str(uuid.uuid4())
        answer = client.post(
            f"/api/v1/operators/{OURS}/routes/{MINE}/stops/{stop}/taps",
            json={"tap_id": tap_id, "action": "emptied"} | body,
            headers=self.crew_key,
        )
        assert answer.status_code == 200, answer.text
        return tap_id

    def put_photo(
        self, client: TestClient, stop: int, tap_id: str, photo: bytes, *, vehicle: str = MINE
    ) -> httpx.Response:
        return client.put(
            f"/api/v1/operators/{OURS}/routes/{vehicle}/stops/{stop}/taps/{tap_id}/photo",
            content=photo,
            headers={**self.crew_key, "Content-Type": "image/jpeg"},
        )

    def objects(self) -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {
            o["Key"]: self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
            for o in listed
        }

    def tap_row(self, tap_id: str) -> CrewTap | None:
        with self.session() as session:
            return session.get(CrewTap, tap_id)

    def manager(self, username: str, stop: int) -> str:
        """A manager of the stop's site; the site."""
        with self.session() as session:
            site_id = session.get_one(RouteStop, stop).site_id or ""
            create_user(
                session, username=username, display_name="", password=PASSWORD,
                role=UserRole.manager, now=datetime.now(UTC), site_ids=[site_id],
            )  # fmt: skip
        return site_id


@pytest.fixture(scope="module")
def world(module_settings: Settings, s3_server: S3Server | AttachedServer) -> Iterator[World]:
    """One crew's day whose photos go to a bucket of its own on the S3 server."""
    bucket = f"photos-{uuid.uuid4().hex[:12]}"
    s3 = s3_client(s3_server.url)
    s3.create_bucket(Bucket=bucket)
    settings = _s3_settings(module_settings, url=s3_server.url, bucket=bucket)
    day = build(settings)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        key = create_key(
            session, name="truck", role=ApiRole.crew, now=datetime.now(UTC), vehicle_id=MINE
        )
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield World(
            settings, day, client, bucket, s3, {"Authorization": f"Bearer {key.token}"}, engine
        )
    engine.dispose()


def test_a_console_tap_keeps_its_photo_in_the_bucket_and_the_history_serves_it(
    world: World,
) -> None:
    csrf = world.log_in(world.client)
    stop, tap_id = world.day.mine[0], str(uuid.uuid4())
    refused = world.console_tap(world.client, stop, csrf, str(uuid.uuid4()), GIF)
    assert refused.status_code == 422
    assert refused.json()["message"] == "照片必须是 JPEG 或 PNG 图片。"
    too_big = world.console_tap(world.client, stop, csrf, str(uuid.uuid4()), JPEG * 300)
    assert too_big.status_code == 413 and too_big.json()["message"] == "照片太大：最多 16 KB。"
    assert world.objects() == {}
    kept = world.console_tap(world.client, stop, csrf, tap_id, PNG)
    assert kept.status_code == 200 and kept.json()["outcome"] == "completed", kept.text
    row = world.tap_row(tap_id)
    assert (
        row is not None
        and row.photo is not None
        and row.photo.split("/")[1].startswith(f"{tap_id}-")
    )
    assert world.objects() == {row.photo: PNG}
    stored = world.s3.head_object(Bucket=world.bucket, Key=row.photo)
    assert stored["ContentType"] == "image/png"

    # scoped as on disk: the site's manager sees it, another site's gets the missing photo's 404
    site_id = world.manager("manager.s3", stop)
    with world.session() as session:
        elsewhere = session.scalars(select(Site.id).where(Site.id != site_id)).first() or ""
        create_user(
            session, username="manager.s3.elsewhere", display_name="", password=PASSWORD,
            role=UserRole.manager, now=datetime.now(UTC), site_ids=[elsewhere],
        )  # fmt: skip
    world.log_in(world.client, "manager.s3", f"/console/sites/{site_id}")
    history = world.client.get(f"/console/requests/{world.day.requests[stop]}").text
    assert f'<img src="/console/photos/{tap_id}"' in history
    assert "· 绿源压缩车1号</span>" in history and MINE not in history  # the vehicle by its name
    shown = world.client.get(f"/console/photos/{tap_id}")
    assert shown.status_code == 200 and shown.content == PNG
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["x-content-type-options"] == "nosniff"
    missing = world.client.get(f"/console/photos/{uuid.uuid4()}")
    world.log_in(world.client, "manager.s3.elsewhere", f"/console/sites/{elsewhere}")
    hidden = world.client.get(f"/console/photos/{tap_id}")
    assert hidden.status_code == missing.status_code == 404 and hidden.text == missing.text


def test_an_api_tap_takes_its_photo_once_in_a_put_of_the_image(world: World) -> None:
    stop = world.day.mine[1]
    tap_id = world.api_tap(world.client, stop)
    first, again = (world.put_photo(world.client, stop, tap_id, JPEG) for _copy in range(2))
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == {"tap_id": tap_id, "repeated": False}
    assert again.json() == {"tap_id": tap_id, "repeated": True}
    row = world.tap_row(tap_id)
    assert (
        row is not None
        and row.photo is not None
        and row.photo.endswith(".jpg")
        and f"/{tap_id}-" in row.photo
    )
    assert world.objects()[row.photo] == JPEG
    other = world.put_photo(world.client, stop, tap_id, PNG)
    assert other.status_code == 409
    assert other.json() == {"detail": f"tap {tap_id} has another photo already"}
    assert world.objects()[row.photo] == JPEG  # evidence is never replaced

    # the checks of the console's tap, in English for machines, and nothing stored
    reported = world.api_tap(
        world.client, world.day.mine[2], action="could_not_empty", reason="blocked"
    )
    before = world.objects()
    bad = {
        GIF: (422, "the photo is neither a JPEG nor a PNG image"),
        b"": (422, "the photo is empty"),
        JPEG * 300: (413, f"the photo is {len(JPEG) * 300} bytes, over the limit of 16384"),
        JPEG * 2000: (
            413,
            f"request body over the limit of {16384 + world.settings.api.max_body} bytes",
        ),
    }
    for photo, (code, detail) in bad.items():
        answer = world.put_photo(world.client, world.day.mine[2], reported, photo)
        assert (answer.status_code, answer.json()) == (code, {"detail": detail}), photo[:8]
    assert world.objects() == before and world.tap_row(reported).photo is None  # type: ignore[union-attr]

    # another vehicle's tap, a tap on another stop, one that does not exist: the same 404
    with world.session() as session:
        admin_tap = str(uuid.uuid4())
        session.add(
            CrewTap(
                id=admin_tap, stop_id=world.day.sibling, vehicle_id=SIBLING, request_id=None,
                actor="test", action="emptied", at=datetime.now(UTC), outcome="noted",
            )
        )  # fmt: skip
        session.commit()
    for vehicle, on_stop, tap in (
        (SIBLING, world.day.sibling, admin_tap),  # a crew key acts for its own vehicle only
        (MINE, world.day.mine[0], tap_id),
        (MINE, stop, str(uuid.uuid4())),
    ):
        answer = world.put_photo(world.client, on_stop, tap, JPEG, vehicle=vehicle)
        assert answer.status_code == 404, (vehicle, on_stop, answer.text)
    assert world.put_photo(world.client, stop, "not-a-uuid", JPEG).status_code == 422


def test_a_photo_comes_from_its_taps_key_within_a_day_never_as_an_older_visits_proof(
    world: World,
) -> None:
    """A tap of an earlier day left without a photo took one days later, and the request's
    history showed it as that visit's proof, at the tap's time: a photo of today's bin. Now
    a photo follows its tap within BINWATCH_ROUTE_PHOTO_LATE_H (24 h), else a 422 that says
    so, and nothing is stored."""
    stop = world.day.mine[2]
    old_tap, recent_tap = (
        world.api_tap(world.client, stop, action="could_not_empty", reason="no_access")
        for _tap in range(2)
    )
    with world.session() as session:
        for tap_id, hours in ((old_tap, 24 * 3), (recent_tap, 23)):
            row = session.get_one(CrewTap, tap_id)
            row.at = datetime.now(UTC) - timedelta(hours=hours)
        session.commit()
        taken_at = session.get_one(CrewTap, old_tap).at.replace(tzinfo=UTC)
    before = world.objects()
    late = world.put_photo(world.client, stop, old_tap, JPEG)
    assert late.status_code == 422, late.text
    assert late.json() == {
        "detail": f"tap {old_tap} was taken at {taken_at.isoformat(timespec='seconds')}; its"
        " photo had to follow within 24 h of it, and a photo sent later proves nothing of that"
        " visit"
    }
    assert world.objects() == before and world.tap_row(old_tap).photo is None  # type: ignore[union-attr]
    # Only the key that took the tap gives it its photo, shown as the crew's: not the
    # operator's office, not an admin.
    with world.session() as session:
        office = create_key(session, name="lvyuan office", role=ApiRole.operator,
                            now=datetime.now(UTC), operator_id=OURS)  # fmt: skip
    for headers in ({"Authorization": f"Bearer {office.token}"}, ADMIN_HEADERS):
        other = world.client.put(
            f"/api/v1/operators/{OURS}/routes/{MINE}/stops/{stop}/taps/{recent_tap}/photo",
            content=JPEG,
            headers={**headers, "Content-Type": "image/jpeg"},
        )
        assert other.status_code == 403, other.text
        assert other.json() == {
            "detail": f"tap {recent_tap} was taken by another key: only the key that took a tap"
            " may send its photo"
        }
    assert world.objects() == before and world.tap_row(recent_tap).photo is None  # type: ignore[union-attr]
    # After midnight, within the day: the phone that was offline overnight still sends it.
    in_time = world.put_photo(world.client, stop, recent_tap, JPEG)
    assert in_time.status_code == 200, in_time.text
    assert world.tap_row(recent_tap).photo is not None  # type: ignore[union-attr]


def test_a_store_that_is_down_or_has_no_bucket_is_a_503_that_says_so_and_loses_nothing(
    world: World,
) -> None:
    down = _s3_settings(world.settings, url=f"http://127.0.0.1:{free_port()}", bucket=world.bucket)
    no_bucket = _s3_settings(world.settings, url=world.settings.route.photo_s3_url or "",
                             bucket="no-such-bucket")  # fmt: skip
    stop = world.day.mine[3]
    site_id = world.manager("manager.s3.down", stop)
    for broken in (down, no_bucket):
        with TestClient(create_app(broken), follow_redirects=False) as client:
            csrf = world.log_in(client)
            tap_id = str(uuid.uuid4())
            queued = world.console_tap(client, stop, csrf, tap_id, PNG)
            assert queued.status_code == 503, queued.text
            assert queued.json() == {
                "error": "photo_store_unavailable",
                "message": "照片暂时无法保存。该操作已保留在本机，稍后将重新发送。",
            }
            page = world.console_tap(client, stop, csrf, tap_id, PNG, Accept="text/html")
            assert page.status_code == 503
            assert "照片暂时无法保存，因此该操作未被记录。请重试。" in page.text
            assert world.tap_row(tap_id) is None  # not taken: the phone sends it again, whole

            api_tap = world.api_tap(client, stop, action="could_not_empty", reason="no_access")
            refused = world.put_photo(client, stop, api_tap, JPEG)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert refused.json() == {
                "detail": "the photo store is unavailable: nothing was stored, send the photo "
                "again later"
            }
            assert world.tap_row(api_tap).photo is None  # type: ignore[union-attr]
            kept = world.put_photo(world.client, stop, api_tap, JPEG)  # the store is back
            assert kept.status_code == 200, kept.text

            world.log_in(client, "manager.s3.down", f"/console/sites/{site_id}")
            shown = client.get(f"/console/photos/{api_tap}")
            assert shown.status_code == 503 and "照片暂时无法显示，请稍后再试。" in shown.text
    with world.session() as session:
        taps = session.scalar(select(func.count()).where(CrewTap.stop_id == stop))
    assert taps == 2  # the API's two taps; the console's waited on the phone
