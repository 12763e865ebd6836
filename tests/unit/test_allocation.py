from gateway.core.allocation import (
    AllocationRequest,
    FreeSpace,
    SpaceKind,
    ZoneSpec,
    choose_space,
)


def free_of(*zones: ZoneSpec) -> list[FreeSpace]:
    return [FreeSpace(sid, z.name, n, kind) for z in zones
            for n, (sid, kind) in enumerate(z.space_ids(), 1)]


def test_zone_names_spaces_and_kinds():
    z = ZoneSpec("A", 5, reserved=1, accessible=1, ev=1)
    assert z.space_ids() == [("A-001", "reserved"), ("A-002", "accessible"), ("A-003", "ev"),
                             ("A-004", "standard"), ("A-005", "standard")]


def test_visitors_never_get_reserved_accessible_or_ev_spaces():
    free = free_of(ZoneSpec("A", 3, reserved=1, accessible=1, ev=1))
    assert choose_space(free, AllocationRequest("X")) is None
    assert choose_space(free, AllocationRequest("X", permit_holder=True)).space_id == "A-001"
    assert choose_space(free, AllocationRequest("X", wants_kind=SpaceKind.EV)).space_id == "A-003"


def test_permit_holders_fall_back_to_standard_and_zone_order_is_honoured():
    free = free_of(ZoneSpec("A", 3), ZoneSpec("B", 3))
    assert choose_space(free, AllocationRequest("X", permit_holder=True)).space_id == "A-001"
    req = AllocationRequest("X", zone_order=("B", "A"))
    assert choose_space(free, req).space_id == "B-001"
