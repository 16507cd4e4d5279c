"""Driving times and distances between places, from a pluggable source: by default the straight
line (great circle) times a circuity factor at an urban speed, or, when its URL is set
(`BINWATCH_ROUTE_OSRM_URL`), any OSRM-compatible `table` service (OSRM, or Valhalla/GraphHopper
behind an OSRM-shaped facade), which knows the streets.

A source answers for a whole list of places at once (`Matrix`): the solver needs every pair,
and one `table` request is far cheaper than one `route` request per pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import httpx

from collection.planning import Leg, Place
from core.errors import SinkUnavailable
from core.settings import RouteSettings

EARTH_RADIUS_M: Final = 6_371_000.0


@dataclass(frozen=True, slots=True)
class Matrix:
    """Seconds and metres from every place to every other, rows and columns in the order asked."""

    places: tuple[Place, ...]
    seconds: list[list[float]]
    metres: list[list[float]]
    index: dict[Place, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {place: i for i, place in enumerate(self.places)})

    def leg(self, origin: Place, destination: Place) -> Leg:
        """One pair (`planning.Travel`)."""
        i, j = self.index[origin], self.index[destination]
        return Leg(self.seconds[i][j], self.metres[i][j])


class TravelSource(Protocol):
    def matrix(self, places: Sequence[Place]) -> Matrix: ...


def great_circle_m(a: Place, b: Place) -> float:
    """Haversine distance in metres."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


@dataclass(frozen=True, slots=True)
class StraightLine:
    """Street distance ≈ straight line × `circuity` (about 1.3–1.4 in a city grid), driven at
    `speed_kmh` including stops at lights."""

    circuity: float
    speed_kmh: float

    def matrix(self, places: Sequence[Place]) -> Matrix:
        metres = [[great_circle_m(a, b) * self.circuity for b in places] for a in places]
        per_metre = 3.6 / self.speed_kmh
        seconds = [[m * per_metre for m in row] for row in metres]
        return Matrix(tuple(places), seconds, metres)


# A table of a few thousand places takes OSRM seconds; a service that has not answered by then
# is down, and planning says so rather than hanging the collector or the API.
OSRM_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class OsrmTable:
    """`GET {url}/table/v1/driving/{lon,lat;…}?annotations=duration,distance` (the OSRM HTTP
    API's table service: https://project-osrm.org/docs/v5.24.0/api/#table-service)."""

    url: str
    client: httpx.Client | None = None

    def matrix(self, places: Sequence[Place]) -> Matrix:
        coordinates = ";".join(f"{p.lon:.6f},{p.lat:.6f}" for p in places)
        address = f"{self.url.rstrip('/')}/table/v1/driving/{coordinates}"
        params = {"annotations": "duration,distance"}
        try:
            if self.client is not None:
                answer = self.client.get(address, params=params, timeout=OSRM_TIMEOUT_S)
            else:
                answer = httpx.get(address, params=params, timeout=OSRM_TIMEOUT_S)
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SinkUnavailable(f"travel times from {self.url}: {exc}") from exc
        if body.get("code") != "Ok" or "durations" not in body or "distances" not in body:
            raise SinkUnavailable(f"travel times from {self.url}: {body.get('code')!r} answer")
        # OSRM answers null for a pair it cannot route: unreachable, as far as planning goes.
        unreachable = 10 * 86_400.0
        seconds = [
            [unreachable if v is None else float(v) for v in row] for row in body["durations"]
        ]
        metres = [
            [unreachable if v is None else float(v) for v in row] for row in body["distances"]
        ]
        return Matrix(tuple(places), seconds, metres)


def travel_source(settings: RouteSettings) -> TravelSource:
    """The OSRM-compatible service when its URL is set, else the straight line."""
    if settings.osrm_url:
        return OsrmTable(settings.osrm_url)
    return StraightLine(circuity=settings.circuity, speed_kmh=settings.speed_kmh)
