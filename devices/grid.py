"""The city's grid as a tree (city → district → street → community), read once and walked in
memory: the areas under an area, the path down to one, its children. Pure, so the scope rules
built on it (api.auth, the console's drill-down) are unit-tested without a database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Place:
    id: str
    name: str
    kind: str  # city, district, street, community
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class Grid:
    places: dict[str, Place]
    _children: dict[str | None, list[str]] = field(repr=False)

    @classmethod
    def of(cls, places: Iterable[Place]) -> Grid:
        by_id = {place.id: place for place in places}
        children: dict[str | None, list[str]] = defaultdict(list)
        for place in sorted(by_id.values(), key=lambda p: p.id):
            children[place.parent_id].append(place.id)
        return cls(by_id, dict(children))

    def children(self, area_id: str) -> list[Place]:
        """The areas one level down, by id."""
        return [self.places[child] for child in self._children.get(area_id, [])]

    def under(self, area_id: str) -> frozenset[str]:
        """The area and every area below it, at any depth (empty for an unknown id)."""
        if area_id not in self.places:
            return frozenset()
        found, frontier = {area_id}, [area_id]
        while frontier:
            for child in self._children.get(frontier.pop(), []):
                if child not in found:  # a cycle in a hand-edited registry must not hang
                    found.add(child)
                    frontier.append(child)
        return frozenset(found)

    def path(self, area_id: str, *, top: str | None = None) -> list[Place] | None:
        """The areas from `top` (default: the root) down to `area_id`, both included; None when
        `area_id` is unknown or not under `top`."""
        chain: list[Place] = []
        current = self.places.get(area_id)
        while current is not None and len(chain) <= len(self.places):
            chain.append(current)
            if current.id == top:
                return chain[::-1]
            current = self.places.get(current.parent_id) if current.parent_id else None
        return chain[::-1] if top is None and chain else None

    def roots(self) -> list[Place]:
        """The areas without a parent (the city)."""
        return [self.places[root] for root in self._children.get(None, [])]
