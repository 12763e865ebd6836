"""All simulated lanes of the gate, the vehicles sent to them, and synthetic traffic."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from gateway.settings import SimulationSettings
from gateway.sim.traffic import SimLaneWorld, SimVehicle, new_vehicle, random_plate


class SimWorld:
    MAX_VEHICLES_KEPT = 500

    def __init__(self, settings: SimulationSettings) -> None:
        self.settings = settings
        self.worlds: dict[str, SimLaneWorld] = {}
        self.directions: dict[str, str] = {}
        self.vehicles: OrderedDict[str, SimVehicle] = OrderedDict()
        self._traffic: asyncio.Task[None] | None = None

    def add_lane(self, world: SimLaneWorld, direction: str) -> None:
        self.worlds[world.lane_id] = world
        self.directions[world.lane_id] = direction

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

    def add_vehicle(self, lane_id: str, plate: str, behaviour: str) -> SimVehicle:
        vehicle = new_vehicle(lane_id, plate, behaviour)
        self.vehicles[vehicle.vehicle_id] = vehicle
        while len(self.vehicles) > self.MAX_VEHICLES_KEPT:
            self.vehicles.popitem(last=False)
        self.worlds[lane_id].queue.put_nowait(vehicle)
        return vehicle

    async def _generate(self, inside: Callable[[], Awaitable[list[str]]]) -> None:
        """Vehicles come and go: new plates at entry lanes, parked ones at exit lanes."""
        rng = random.Random()
        entries = [lane for lane, d in self.directions.items() if d == "entry"]
        exits = [lane for lane, d in self.directions.items() if d == "exit"]
        while True:
            await asyncio.sleep(self.settings.traffic_interval_s * rng.uniform(0.5, 1.5))
            parked = await inside()
            leave = exits and parked and (not entries or rng.random() < len(parked) / 12)
            if leave:
                lane, plate = rng.choice(exits), rng.choice(parked)
            elif entries:
                lane, plate = rng.choice(entries), random_plate(rng)
            else:
                continue
            if self.worlds[lane].queue.qsize() > 2:
                continue  # the lane is busy: do not build an endless queue
            behaviour = rng.choices(["pass", "back_out", "tailgate"], [90, 7, 3])[0]
            self.add_vehicle(lane, plate, behaviour)
