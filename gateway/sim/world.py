"""All simulated lanes of the gate, the vehicles sent to them, and synthetic traffic."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.settings import SimulationSettings
from gateway.sim.traffic import SimLaneWorld, SimVehicle, new_vehicle, random_plate

# what the demo's traffic is made of (most drive in; now and then something harder)
TRAFFIC_MIX = ["pass", "back_out", "tailgate", "trailer", "motorbike", "reverse", "bumper",
               "stall_under_arm"]
TRAFFIC_WEIGHTS = [80, 5, 3, 3, 4, 2, 1, 2]


class SimWorld:
    MAX_VEHICLES_KEPT = 500
    MAX_HELD = 500  # plates sent in by hand that the traffic leaves parked...
    HELD_S = 600.0  # ...for ten minutes: then it may drive them out (the lot never fills)

    def __init__(self, settings: SimulationSettings) -> None:
        self.settings = settings
        self.worlds: dict[str, SimLaneWorld] = {}
        self.directions: dict[str, str] = {}
        self.vehicles: OrderedDict[str, SimVehicle] = OrderedDict()
        # plates sent in by hand (the page's buttons, the API), with when: the
        # synthetic traffic leaves them parked for HELD_S, so the one who sent a car finds
        # it there to send it out (the README's walk-through sends its car to the exit)
        self.held: OrderedDict[str, float] = OrderedDict()
        self._traffic: asyncio.Task[None] | None = None

    def add_lane(self, world: SimLaneWorld, direction: str) -> None:
        self.worlds[world.lane_id] = world
        self.directions[world.lane_id] = direction
        world.on_follower = self._keep

    def _keep(self, vehicle: SimVehicle) -> None:
        self.vehicles[vehicle.vehicle_id] = vehicle
        while len(self.vehicles) > self.MAX_VEHICLES_KEPT:
            self.vehicles.popitem(last=False)

    @property
    def collisions(self) -> int:
        return sum(world.collisions for world in self.worlds.values())

    def as_json(self) -> dict[str, Any]:
        """``GET /api/sim/world``: collisions, each arm, the vehicles still on a lane."""
        return {"collisions": self.collisions,
                "arm": {lane: world.as_json() for lane, world in self.worlds.items()},
                "vehicles": [v.as_json() for v in self.vehicles.values()
                             if v.status not in ("passed", "left")]}

    def start(self, inside: Callable[[], Awaitable[list[str]]]) -> None:
        for world in self.worlds.values():
            world.start()
        if self.settings.traffic:
            self._traffic = asyncio.get_running_loop().create_task(
                self._generate(inside), name="sim traffic")

    async def stop(self) -> None:
        if self._traffic is not None:
            self._traffic.cancel()
            await asyncio.gather(self._traffic, return_exceptions=True)
        for world in self.worlds.values():
            await world.stop()

    def add_vehicle(self, lane_id: str, plate: str, behaviour: str, *,
                    by_hand: bool = True) -> SimVehicle:
        """A vehicle queued at ``lane_id``; ``by_hand``: sent by someone, not the traffic
        (at an entry its plate is held, at an exit released)."""
        if by_hand:
            if self.directions.get(lane_id) == "exit":
                self.held.pop(plate, None)
            else:
                self.held[plate] = time.monotonic()
                self.held.move_to_end(plate)
                while len(self.held) > self.MAX_HELD:
                    self.held.popitem(last=False)
        vehicle = new_vehicle(lane_id, plate, behaviour)
        self._keep(vehicle)
        self.worlds[lane_id].add(vehicle)
        return vehicle

    async def _generate(self, inside: Callable[[], Awaitable[list[str]]]) -> None:
        """Vehicles come and go: new plates at entry lanes, parked ones at exit lanes."""
        rng = random.Random()
        entries = [lane for lane, d in self.directions.items() if d == "entry"]
        exits = [lane for lane, d in self.directions.items() if d == "exit"]
        while True:
            await asyncio.sleep(self.settings.traffic_interval_s * rng.uniform(0.5, 1.5))
            since = time.monotonic() - self.HELD_S
            parked = [p for p in await inside() if self.held.get(p, since) <= since]
            leave = exits and parked and (not entries or rng.random() < len(parked) / 12)
            if leave:
                lane, plate = rng.choice(exits), rng.choice(parked)
            elif entries:
                lane, plate = rng.choice(entries), random_plate(rng)
            else:
                continue
            if self.worlds[lane].queue.qsize() > 2:
                continue  # the lane is busy: do not build an endless queue
            behaviour = rng.choices(TRAFFIC_MIX, TRAFFIC_WEIGHTS)[0]
            self.add_vehicle(lane, plate, behaviour, by_hand=False)
