"""Simulated lanes on the event loop: the physics of ``physics.py`` turned into mock-pin
levels (loops, arm limit switches) and camera frames, and the barrier's relays read back
into the arm's movement. Nothing here talks to the lane controller: the gateway sees pins
change and frames, as at a gate.

Behaviours (``POST /api/sim/lanes/{id}/vehicles``): ``pass``, ``back_out``, ``stall``
(stays on the arming loop, then leaves), ``tailgate`` (a second car follows under the
raised arm), ``trailer``, ``motorbike``, ``reverse`` (reaches the safety loop, then backs
out), ``bumper`` (a second car right behind the first) and ``stall_under_arm``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import string
from collections.abc import Callable
from typing import Any

from gateway.settings import SimulationSettings
from gateway.sim.physics import CAR, MOTORBIKE, TRAILER, DriverTimes, LaneWorld, Vehicle
from hardware.build import SIM_PINS
from hardware.sim import SIM_WIRING, ObservedMockPin, SimCameraSource, drive

TICK_S = 0.005
FOLLOW_GAP_M = {"tailgate": 4.0, "bumper": 2.5}  # how close a follower keeps
SHAPES = {"trailer": TRAILER, "motorbike": MOTORBIKE}


class SimVehicle(Vehicle):
    """A vehicle sent to a lane, with an event set once it has passed or left."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.done = asyncio.Event()

    def set(self, status: str) -> None:
        super().set(status)
        if status in ("passed", "left"):
            self.done.set()


class SimLaneWorld:
    """One simulated lane: its pins, its camera, its arm, and the vehicles sent to it (one
    at a time, with a follower for ``tailgate`` and ``bumper``)."""

    def __init__(self, lane_id: str, factory: Any, camera: SimCameraSource | None,
                 settings: SimulationSettings) -> None:
        self.lane_id = lane_id
        self.camera = camera
        self.time_scale = settings.time_scale
        self.physics = LaneWorld(settings.arm_travel_s, DriverTimes(
            reaction_s=settings.reaction_s, patience_s=settings.patience_s,
            stall_s=settings.stall_s))
        self.pins = {name: factory.pin(getattr(SIM_PINS, name)) for name in (
            "arming", "safety", "arm_open_limit", "arm_closed_limit")}
        open_pin: ObservedMockPin = factory.pin(SIM_PINS.open_relay)
        close_pin: ObservedMockPin = factory.pin(SIM_PINS.close_relay)
        open_pin.listeners.append(lambda on: self._relay(on, 1.0))
        close_pin.listeners.append(lambda on: self._relay(on, 0.0))
        self.queue: asyncio.Queue[SimVehicle] = asyncio.Queue()
        self.on_follower: Callable[[SimVehicle], None] = lambda vehicle: None
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._levels: dict[str, bool] = {}
        self._update_pins()  # detectors powered, loops clear, the arm down

    @property
    def collisions(self) -> int:
        return self.physics.collisions

    def _relay(self, energised: bool, target: float) -> None:
        # the barrier's own controller: an energised relay sends the arm that way
        if energised:
            self.physics.arm.target = target
            self._wake.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"sim {self.lane_id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def add(self, vehicle: SimVehicle) -> None:
        """Queue a vehicle; a tailgating or bumping one brings a follower when it starts."""
        self.queue.put_nowait(vehicle)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            if not self.physics.busy and self.physics.arm.moving is None:
                if self.queue.empty():
                    self._wake.clear()
                    await self._wake.wait()
                    last = loop.time()
                if not self.physics.busy and not self.queue.empty():
                    await self._begin(self.queue.get_nowait())
                    last = loop.time()  # rendering its scene took no world time
            await asyncio.sleep(TICK_S)
            now = loop.time()
            self.physics.step(min(now - last, 5 * TICK_S) * self.time_scale)
            last = now
            self._update_pins()

    async def _begin(self, v: SimVehicle) -> None:
        follower = SimVehicle(f"{v.vehicle_id}f", v.lane_id, random_plate(random.Random()),
                              f"{v.behaviour}_follower", leader=v,
                              gap_m=FOLLOW_GAP_M[v.behaviour]) \
            if v.behaviour in FOLLOW_GAP_M else None
        if self.camera is not None:
            # what the camera will see is rendered before the vehicles come up the lane:
            # a camera's frame costs the gate nothing, and the simulator's rendering (a
            # plain scene: hundreds of ms of CPU on a loaded machine) was the first part
            # of the gate's capture, past its capture timeout
            for plate in [v.plate] + ([follower.plate] if follower is not None else []):
                await asyncio.to_thread(self.camera.prepare, plate)
        self.physics.add(v)
        if follower is not None:
            self.physics.add(follower)
            follower.front = v.rear - follower.gap_m
            self.on_follower(follower)

    def _update_pins(self) -> None:
        arming, safety = self.physics.loops()
        arm = self.physics.arm
        levels = {"arming": arming, "safety": safety, "arm_open_limit": arm.position >= 0.99,
                  "arm_closed_limit": arm.position <= 0.01}
        for name, on in levels.items():
            if self._levels.get(name) != on:
                self._levels[name] = on
                wiring = SIM_WIRING["limit" if name.startswith("arm_") else name]
                drive(self.pins[name], wiring, on)
        if self.camera is not None:
            shown = self.physics.in_front_of_camera()
            self.camera.show(shown.plate if shown is not None else None)

    def as_json(self) -> dict[str, Any]:
        arm = self.physics.arm
        return {"position": round(arm.position, 3), "moving": arm.moving}


_counter = itertools.count(1)


def new_vehicle(lane_id: str, plate: str, behaviour: str) -> SimVehicle:
    return SimVehicle(f"v{next(_counter)}", lane_id, plate, behaviour,
                      shape=SHAPES.get(behaviour, CAR))


def random_plate(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice((2, 3))))
    return f"{rng.randint(1, 81):02d}{letters}{rng.randint(10, 9999)}"
