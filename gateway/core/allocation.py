"""Which free space a vehicle gets. Pure: the store passes the free spaces in and makes
the chosen one allocated atomically; this module only decides.

Rules:
- ``reserved`` spaces go only to permit holders; a permit holder takes a reserved space
  first and a standard one when the reserved are full.
- ``accessible`` and ``ev`` spaces go only to vehicles that ask for that kind.
- Zones are tried in the lane's preferred order (default: configuration order); within a
  zone the lowest-numbered space first, so the lot fills from the entrance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class SpaceKind(StrEnum):
    STANDARD = "standard"
    RESERVED = "reserved"
    ACCESSIBLE = "accessible"
    EV = "ev"


class SpaceState(StrEnum):
    FREE = "free"
    ALLOCATED = "allocated"
    OUT_OF_SERVICE = "out_of_service"


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A zone of the lot: ``spaces`` spaces named ``{name}-001`` …; the first ``reserved``
    are reserved for permit holders, the next ``accessible`` and ``ev`` are of those kinds."""

    name: str
    spaces: int
    reserved: int = 0
    accessible: int = 0
    ev: int = 0

    def space_ids(self) -> list[tuple[str, SpaceKind]]:
        kinds = (
            [SpaceKind.RESERVED] * self.reserved
            + [SpaceKind.ACCESSIBLE] * self.accessible
            + [SpaceKind.EV] * self.ev
        )
        out = []
        for n in range(1, self.spaces + 1):
            kind = kinds[n - 1] if n - 1 < len(kinds) else SpaceKind.STANDARD
            out.append((space_id(self.name, n), kind))
        return out


def space_id(zone: str, number: int) -> str:
    return f"{zone}-{number:03d}"


@dataclass(frozen=True, slots=True)
class FreeSpace:
    space_id: str
    zone: str
    number: int
    kind: SpaceKind


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    plate: str
    permit_holder: bool = False
    wants_kind: SpaceKind | None = None
    zone_order: Sequence[str] = field(default_factory=tuple)


def eligible_kinds(request: AllocationRequest) -> list[SpaceKind]:
    """The kinds this vehicle may take, best first."""
    kinds: list[SpaceKind] = []
    if request.wants_kind in (SpaceKind.ACCESSIBLE, SpaceKind.EV):
        kinds.append(request.wants_kind)
    if request.permit_holder:
        kinds.append(SpaceKind.RESERVED)
    kinds.append(SpaceKind.STANDARD)
    return kinds


def choose_space(free: Iterable[FreeSpace], request: AllocationRequest) -> FreeSpace | None:
    """The space this vehicle should get, or ``None`` when no free space is eligible."""
    kinds = eligible_kinds(request)
    zone_rank = {z: i for i, z in enumerate(request.zone_order)}
    best: FreeSpace | None = None
    best_key: tuple[int, int, int, str] | None = None
    for space in free:
        if space.kind not in kinds:
            continue
        key = (
            kinds.index(space.kind),
            zone_rank.get(space.zone, len(zone_rank)),
            space.number,
            space.zone,
        )
        if best_key is None or key < best_key:
            best, best_key = space, key
    return best
