"""The physical lane the simulator drives: where the loops and the arm are, how far the
arm is up, where each vehicle is and what it does next. No I/O and no clock: ``step(dt)``
moves the world; ``traffic.py`` turns it into mock-pin levels and reads the relays.

Along the lane (metres, in the direction of travel): the arming loop, a gap, the safety
loop, with the arm's line over the safety loop. A vehicle is a body with detected parts (a
trailer's drawbar is not detected, but it is hit); a **collision** is the arm below
``CLEARANCE`` while any vehicle's body is under the arm line.

Drivers behave as people do at a barrier: they stop in front of a closed arm, drive on
once it is fully up, brake for an arm that starts to come down unless they are already at
it, and leave when nobody lets them in within their patience.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ARMING = (0.0, 1.5)
SAFETY = (3.0, 6.0)
ARM_LINE = 3.6
CLEARANCE = 0.8  # arm position (0 down … 1 up) below which it hits what is under it
START = -0.5  # where a vehicle's front appears
BEHAVIOURS = ("pass", "back_out", "stall", "tailgate", "trailer", "motorbike", "reverse",
              "bumper", "stall_under_arm")


@dataclass(frozen=True)
class Shape:
    length_m: float
    speed: float  # m/s when driving on
    detected: tuple[tuple[float, float], ...]  # parts a loop sees, metres from the front


CAR = Shape(4.5, 3.0, ((0.0, 4.5),))
MOTORBIKE = Shape(1.2, 6.0, ((0.0, 1.2),))
# car, a drawbar of which loops see nothing for 1.6 m, then the trailer
TRAILER = Shape(10.1, 2.5, ((0.0, 4.5), (6.1, 10.1)))


@dataclass
class Arm:
    travel_s: float
    position: float = 0.0
    target: float = 0.0

    def step(self, dt: float) -> None:
        rate = dt / self.travel_s if self.travel_s > 0 else 1.0
        if self.position < self.target:
            self.position = min(self.target, self.position + rate)
        elif self.position > self.target:
            self.position = max(self.target, self.position - rate)

    @property
    def moving(self) -> str | None:
        if self.position == self.target:
            return None
        return "up" if self.target > self.position else "down"

    @property
    def fully_up(self) -> bool:
        return self.position >= 0.99 and self.target >= 1.0


@dataclass
class Vehicle:
    vehicle_id: str
    lane_id: str
    plate: str
    behaviour: str
    shape: Shape = CAR
    front: float = START
    speed: float = 0.0
    phase: str = "queued"  # queued approach wait through pause stall leave done
    status: str = "queued"  # queued arriving waiting passing passed left
    timer: float = 0.0  # seconds left in a pause, a stall or the driver's patience
    stops: int = 1  # reverse and stall_under_arm stop once on their way through
    leader: Vehicle | None = None  # a follower keeps its distance to this one
    gap_m: float = 0.0
    under_arm: bool = False
    collisions: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def rear(self) -> float:
        return self.front - self.shape.length_m

    @property
    def stop_at(self) -> float:
        """Where the driver stops for a closed arm: still over the arming loop."""
        return ARMING[1] + min(self.shape.length_m - 0.3, 1.2)

    def on(self, loop: tuple[float, float]) -> bool:
        return any(self.front - b < loop[1] and self.front - a > loop[0]
                   for a, b in self.shape.detected)

    def set(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.history.append(status)

    def as_json(self) -> dict[str, Any]:
        return {"vehicle_id": self.vehicle_id, "lane_id": self.lane_id, "plate": self.plate,
                "behaviour": self.behaviour, "status": self.status,
                "position_m": round(self.front, 2), "length_m": self.shape.length_m,
                "collisions": self.collisions, "history": self.history}


@dataclass(frozen=True)
class DriverTimes:
    reaction_s: float = 0.3  # arm up -> moving
    patience_s: float = 8.0  # not let in by then: drives away
    stall_s: float = 5.0  # how long a stalling vehicle stays
    reverse_speed: float = 1.5


class LaneWorld:
    """One lane's physics: its arm and the vehicles on it."""

    def __init__(self, arm_travel_s: float, times: DriverTimes) -> None:
        self.arm = Arm(arm_travel_s)
        self.t = times
        self.vehicles: list[Vehicle] = []
        self.collisions = 0

    def add(self, v: Vehicle) -> None:
        v.phase = "approach"
        v.set("arriving")
        v.speed = v.shape.speed
        self.vehicles.append(v)

    @property
    def busy(self) -> bool:
        return any(v.phase != "done" for v in self.vehicles)

    def loops(self) -> tuple[bool, bool]:
        live = [v for v in self.vehicles if v.phase != "done"]
        return any(v.on(ARMING) for v in live), any(v.on(SAFETY) for v in live)

    def in_front_of_camera(self) -> Vehicle | None:
        waiting = [v for v in self.vehicles if v.phase != "done" and v.on(ARMING)
                   and v.front < ARM_LINE + 0.5]
        return max(waiting, key=lambda v: v.front) if waiting else None

    def step(self, dt: float) -> None:
        self.arm.step(dt)
        for v in self.vehicles:
            if v.phase != "done":
                self._drive(v, dt)
        for v in self.vehicles:
            under = v.phase != "done" and v.rear < ARM_LINE < v.front
            if under and self.arm.position < CLEARANCE and not v.under_arm:
                v.collisions += 1
                self.collisions += 1
            v.under_arm = under and self.arm.position < CLEARANCE
        self.vehicles = [v for v in self.vehicles if v.phase != "done"] + [
            v for v in self.vehicles if v.phase == "done"][-20:]

    # -- drivers -----------------------------------------------------------------------
    def _drive(self, v: Vehicle, dt: float) -> None:
        getattr(self, f"_{v.phase}")(v, dt)

    def _limit(self, v: Vehicle, to: float) -> float:
        """How far ``v`` may go: not through its leader, not into an arm that is not up."""
        if v.leader is not None and v.leader.phase != "done":
            to = min(to, v.leader.rear - v.gap_m)
        committed = v.front >= v.stop_at - 0.05
        if not committed and not self.arm.fully_up:
            to = min(to, v.stop_at)
        return to

    def _move_to(self, v: Vehicle, to: float, speed: float, dt: float) -> bool:
        """Move toward ``to``; ``True`` once there."""
        step = speed * dt
        if to >= v.front:
            v.front = min(to, v.front + step)
        else:
            v.front = max(to, v.front - step)
        return abs(v.front - to) < 1e-9

    def _approach(self, v: Vehicle, dt: float) -> None:
        stops = v.leader is None and v.behaviour in ("back_out", "stall")
        self._move_to(v, self._limit(v, v.stop_at if stops else SAFETY[1] + 50),
                      v.shape.speed, dt)
        if v.front < v.stop_at - 1e-6:
            return
        if self.arm.fully_up and not stops:  # the arm is up already: drive on
            v.phase = "through"
            v.set("passing")
            return
        v.phase = "wait"
        v.timer = self.t.stall_s if v.behaviour == "stall" else self.t.patience_s
        v.set("waiting")

    def _wait(self, v: Vehicle, dt: float) -> None:
        v.timer -= dt
        if v.behaviour == "stall":
            if v.timer <= 0:
                self._go_away(v)
            return
        if self.arm.fully_up:
            v.phase, v.timer = "pause", self.t.reaction_s
            return
        if v.timer <= 0:
            self._go_away(v)

    def _pause(self, v: Vehicle, dt: float) -> None:
        v.timer -= dt
        if not self.arm.fully_up and v.front < v.stop_at + 0.05:
            v.phase, v.timer = "wait", self.t.patience_s  # it came down again: wait
            return
        if v.timer > 0:
            return
        if v.behaviour == "back_out" and v.leader is None:
            self._go_away(v)
            return
        v.phase = "through"
        v.set("passing")

    def _through(self, v: Vehicle, dt: float) -> None:
        goal = {"reverse": SAFETY[0] + 0.5, "stall_under_arm": SAFETY[1] - 0.5}.get(
            v.behaviour) if v.leader is None and v.stops else None
        self._move_to(v, self._limit(v, SAFETY[1] + 50 if goal is None else goal),
                      v.shape.speed, dt)
        if goal is not None and v.front >= goal - 1e-6:
            v.stops -= 1
            v.phase = "stall"
            v.timer = self.t.stall_s if v.behaviour == "stall_under_arm" else self.t.reaction_s
        if v.rear > SAFETY[1] + 1.0:
            v.phase = "done"
            v.set("passed")

    def _stall(self, v: Vehicle, dt: float) -> None:
        v.timer -= dt
        if v.timer > 0:
            return
        if v.behaviour == "reverse":
            self._go_away(v)
            return
        v.phase = "through"  # drives on

    def _go_away(self, v: Vehicle) -> None:
        v.phase = "leave"
        v.set("leaving")

    def _leave(self, v: Vehicle, dt: float) -> None:
        if self._move_to(v, START - 1.0, self.t.reverse_speed, dt):
            v.phase = "done"
            v.set("left")

    def _done(self, v: Vehicle, dt: float) -> None:
        pass

