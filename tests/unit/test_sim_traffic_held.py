"""The demo's synthetic traffic and the cars someone sends by hand: a car sent in by the
page or the API stays parked until its sender sends it out (for ten minutes at most, so
the demo's lot never fills with forgotten cars); the traffic drives out only the others.
The README's walk-through sends the car it let in to the exit: the traffic had driven it
out first, now and then, and the walk-through's exit found no such car inside."""

from __future__ import annotations

import asyncio

from gateway.settings import SimulationSettings
from gateway.sim.traffic import SimLaneWorld
from gateway.sim.world import SimWorld
from hardware.sim import sim_factory

HAND, OTHER = "34KLM257", "06TRK742"


def world() -> SimWorld:
    settings = SimulationSettings(traffic=True, traffic_interval_s=0.001)
    w = SimWorld(settings)
    for lane, direction in (("entry-1", "entry"), ("exit-1", "exit")):
        w.add_lane(SimLaneWorld(lane, sim_factory(), None, settings), direction)
    return w


async def exits(w: SimWorld, count: int) -> list[str]:
    """The plates the traffic sends to the exit (its lanes' queues drained as it fills them:
    no lane is started, so nothing drives)."""
    seen: list[str] = []
    enough = asyncio.Event()

    async def inside() -> list[str]:
        for lane in w.worlds.values():
            while not lane.queue.empty():
                v = lane.queue.get_nowait()
                if lane.lane_id == "exit-1":
                    seen.append(v.plate)
        if len(seen) >= count:
            enough.set()
        return [HAND, OTHER]

    task = asyncio.create_task(w._generate(inside))
    try:
        await enough.wait()
    finally:
        task.cancel()
    return seen


async def test_the_traffic_never_drives_out_a_car_sent_in_by_hand() -> None:
    w = world()
    w.add_vehicle("entry-1", HAND, "pass")
    out = await asyncio.wait_for(exits(w, 20), 30)
    assert set(out) == {OTHER}


async def test_a_car_sent_by_hand_is_the_traffics_again_after_ten_minutes() -> None:
    w = world()
    w.add_vehicle("entry-1", HAND, "pass")
    w.held[HAND] -= SimWorld.HELD_S
    out = await asyncio.wait_for(exits(w, 40), 30)
    assert HAND in out and OTHER in out


async def test_a_car_sent_out_by_hand_is_no_longer_held() -> None:
    w = world()
    w.add_vehicle("entry-1", HAND, "pass")
    w.add_vehicle("exit-1", HAND, "pass")
    assert HAND not in w.held
    out = await asyncio.wait_for(exits(w, 40), 30)
    assert HAND in out


async def test_the_traffics_own_cars_are_never_held() -> None:
    w = world()
    w.add_vehicle("entry-1", OTHER, "pass", by_hand=False)
    assert not w.held
