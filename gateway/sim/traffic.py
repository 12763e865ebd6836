"""Simulated vehicles that drive the lane's mock pins like real cars drive over loops, and
a simulated barrier arm that moves when its relays are pulsed. Nothing here talks to the
lane controller directly: the gateway sees pins change and a camera frame, as at a gate.

Behaviours: ``pass`` (drives through once the arm is up), ``back_out`` (leaves the arming
loop without passing), ``stall`` (stays on the arming loop for ``stall_s``), ``tailgate``
(a second car follows the first under the raised arm).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import string
from dataclasses import dataclass, field
from typing import Any

from gateway.settings import SimulationSettings
from hardware.build import SimPins
from hardware.sim import ObservedMockPin, SimCameraSource

BEHAVIOURS = ("pass", "back_out", "stall", "tailgate")


@dataclass
class SimVehicle:
    vehicle_id: str
    lane_id: str
    plate: str
    behaviour: str
    status: str = "queued"  # queued | arriving | waiting | passing | passed | left
    history: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, status: str) -> None:
        self.status = status
        self.history.append(status)
        if status in ("passed", "left"):
            self.done.set()

    def as_json(self) -> dict[str, Any]:
        return {"vehicle_id": self.vehicle_id, "lane_id": self.lane_id, "plate": self.plate,
                "behaviour": self.behaviour, "status": self.status, "history": self.history}


class SimBarrierArm:
    """The arm: up ``arm_travel_s`` after the open relay is energised, down after the
    close relay is. Watches the relay pins like the barrier's own controller would."""

    def __init__(self, factory: Any, pins: SimPins, arm_travel_s: float) -> None:
        self.arm_travel_s = arm_travel_s
        self.up = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._move: asyncio.TimerHandle | None = None
        open_pin: ObservedMockPin = factory.pin(pins.open_relay)
        close_pin: ObservedMockPin = factory.pin(pins.close_relay)
        open_pin.listeners.append(self._open_relay)
        close_pin.listeners.append(self._close_relay)

    def _open_relay(self, energised: bool) -> None:
        if energised:
            self._loop.call_soon_threadsafe(self._raise)

    def _close_relay(self, energised: bool) -> None:
        if energised:
            self._loop.call_soon_threadsafe(self._lower)

    def _raise(self) -> None:
        if self._move is not None:
            self._move.cancel()
        self._move = self._loop.call_later(self.arm_travel_s, self.up.set)

    def _lower(self) -> None:
        if self._move is not None:
            self._move.cancel()
        self.up.clear()


class SimLaneWorld:
    """One simulated lane: its loops' pins, its camera, its arm, and the vehicles queued
    to use it one after the other."""

    def __init__(self, lane_id: str, factory: Any, pins: SimPins, camera: SimCameraSource,
                 timings: SimulationSettings) -> None:
        self.lane_id = lane_id
        self.t = timings
        self.camera = camera
        self.arming = factory.pin(pins.arming)
        self.safety = factory.pin(pins.safety)
        self.arm = SimBarrierArm(factory, pins, timings.arm_travel_s)
        self.queue: asyncio.Queue[SimVehicle] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"sim {self.lane_id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            vehicle = await self.queue.get()
            try:
                await self.drive(vehicle)
            finally:
                self.arming.drive_low()
                self.safety.drive_low()
                self.camera.show(None)

    async def _arm_up(self, within_s: float) -> bool:
        try:
            await asyncio.wait_for(self.arm.up.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def drive(self, v: SimVehicle) -> None:
        t = self.t
        v.set("arriving")
        self.camera.show(v.plate)
        self.arming.drive_high()
        v.set("waiting")
        if v.behaviour == "stall":
            await asyncio.sleep(t.stall_s)
            self.arming.drive_low()
            v.set("left")
            return
        if not await self._arm_up(t.patience_s):
            self.arming.drive_low()  # not let in: drives away
            v.set("left")
            return
        await asyncio.sleep(t.reaction_s)
        if v.behaviour == "back_out":
            self.arming.drive_low()
            self.camera.show(None)
            v.set("left")
            return
        v.set("passing")
        self.safety.drive_high()
        await asyncio.sleep(t.dwell_s)
        self.arming.drive_low()
        self.camera.show(None)
        if v.behaviour == "tailgate":
            # the follower is right behind: onto the arming loop, then under the arm as
            # soon as the first car clears the safety loop
            self.camera.show(random_plate(random.Random()))
            self.arming.drive_high()
        await asyncio.sleep(t.crossing_s)
        self.safety.drive_low()
        if v.behaviour == "tailgate":
            await asyncio.sleep(t.arm_travel_s / 4)  # well before the arm is down
            self.safety.drive_high()
            await asyncio.sleep(t.dwell_s)
            self.arming.drive_low()
            self.camera.show(None)
            await asyncio.sleep(t.crossing_s)
            self.safety.drive_low()
        v.set("passed")


_counter = itertools.count(1)


def new_vehicle(lane_id: str, plate: str, behaviour: str) -> SimVehicle:
    return SimVehicle(f"v{next(_counter)}", lane_id, plate, behaviour)


def random_plate(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice((2, 3))))
    return f"{rng.randint(1, 81):02d}{letters}{rng.randint(10, 9999)}"
