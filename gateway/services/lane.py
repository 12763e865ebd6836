"""The lane controller: runs the pure lane machine against the lane's devices and the
saga orchestrator, and serves the saga's ``gate_service`` steps (open the barrier, confirm
the passage) for its lane.

Device callbacks arrive on gpiozero's (or the camera's) threads and are handed to the
event loop with ``call_soon_threadsafe``; everything else runs on the loop. A decision's
images (the plate crop, the frame) are kept as its saga starts and handed to the image
writer's thread once the lane decided (the open pulse is out, or the saga ended), never
waited for: the barrier does not wait on a disk, and the images' writes do not share it
with the saga log's commits of the decision. Nor does the barrier wait on the gate's own
plate reader when an ANPR camera read the plate: that reading decides, and the gate's
reading of the same burst (compared with it, ``plates.compare_anpr``) is taken once the
lane decided, so that its CPU does not slow the decision either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.clock import Clock
from gateway.core.errors import DeviceError, LaneTableError, PermanentError
from gateway.core.lane import Lane
from gateway.core.lane_types import (
    AnswerOpen,
    ArmLimit,
    BarrierInterlock,
    Capture,
    Close,
    Command,
    Emit,
    Event,
    InputChanged,
    LaneConfig,
    LaneState,
    LoopFault,
    LoopRaw,
    ManualOpen,
    OpenRequested,
    PassageResult,
    PlateCaptured,
    PulseOpen,
    SagaFinished,
    StartSaga,
    Tick,
)
from gateway.core.steps import DEFINITIONS
from gateway.ops.vehicle_log import VehicleRecord
from gateway.plates.reader import PlateReader
from gateway.plates.roi import Roi
from gateway.sagas.runner import SagaRunner
from gateway.services.plate_reading import ShotReading, reading_for
from gateway.settings import LaneSettings, PolicySettings
from gateway.store.images import ImageWriter, Kind
from gateway.store.store import Store
from hardware.build import LaneDevices
from hardware.camera import Shot, capture

log = logging.getLogger(__name__)
Json = dict[str, Any]


class LaneController:
    def __init__(self, settings: LaneSettings, devices: LaneDevices, runner: SagaRunner,
                 store: Store, clock: Clock, gate_id: str,
                 after_saga: Callable[[], Awaitable[None]] | None = None,
                 policy: PolicySettings | None = None, reader: PlateReader | None = None,
                 compare_anpr: bool = True, images: ImageWriter | None = None) -> None:
        self.settings = settings
        self.id = settings.id
        self.direction = settings.direction
        self.lane = Lane(settings.id, settings.direction,
                         lane_config(settings, policy or PolicySettings()))
        self.devices = devices
        self.runner = runner
        self.store = store
        self.clock = clock
        self.gate_id = gate_id
        self.after_saga = after_saga
        # one journal line per finished saga (gateway/ops/vehicle_log.py; set by app.py)
        self.vehicle_log: Callable[[VehicleRecord], None] | None = None
        self.last: Json = {}
        self.reader = reader  # the gate's own plate reader, shared by the lanes
        self.roi = Roi.parse(settings.camera.roi) if settings.camera.roi else None
        self.compare_anpr = compare_anpr
        self.last_reading: Json = {}
        self.last_crop: bytes | None = None
        self.images = images  # the decisions' images on disk ([images]); None: not kept
        self._shot_images: tuple[str, dict[Kind, bytes]] = ("", {})  # the last capture's
        self.latencies: deque[dict[str, float]] = deque(maxlen=1000)
        # the same of the vehicles decided without the arm opening (denied, refused, failed):
        # the stages up to the decision; kept apart, as they have no relay and no total
        self.refusals: deque[dict[str, float]] = deque(maxlen=1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._open: dict[str, asyncio.Future[AnswerOpen]] = {}
        self._passage: dict[str, asyncio.Future[PassageResult]] = {}
        self._decided: dict[str, asyncio.Future[None]] = {}  # comparisons wait on these
        self._decision_images: dict[str, tuple[dict[Kind, bytes], float]] = {}
        self._cycle: dict[str, float] = {}
        self.camera_fault = ""
        self.idle = asyncio.Event()  # set while the lane is idle (tools and benchmarks wait)
        self.on_change: Callable[[], None] | None = None  # the state worth publishing moved

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        d = self.devices
        for device in (d.arming, d.safety, *d.inputs.values()):
            device.start(self._from_thread)
        if d.camera is not None:
            d.camera.on_health = lambda ok, why: self._threadsafe(self._camera_health, ok, why)
            d.camera.start()
        self._lights()
        # what the inputs say now, as if each had just changed, the loops first: a
        # vehicle already waiting is served, an arm found up with the loops clear closed
        self.feed(LoopRaw("arming", d.arming.occupied))
        self.feed(LoopRaw("safety", d.safety.occupied))
        for name, device in d.inputs.items():
            self._input(name, device.occupied)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        waiters: list[asyncio.Future[Any]] = [*self._open.values(), *self._passage.values()]
        for fut in waiters:
            if not fut.done():
                fut.cancel()

    # -- events in ---------------------------------------------------------------------
    def _threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _from_thread(self, name: str, on: bool) -> None:
        self._threadsafe(self._input, name, on)

    def _input(self, name: str, on: bool) -> None:
        # the barrier's interlock acts first, before any debouncing or decision
        reversed_ = name == "safety" and self.devices.barrier.safety_changed(on)
        if name in ("arming", "safety"):
            self.feed(LoopRaw(name, on))
            if reversed_:
                self.feed(BarrierInterlock("reversed: the safety loop became occupied"))
        elif name.startswith("arm_"):  # arm_open_limit, arm_closed_limit
            self.feed(ArmLimit(name.split("_")[1], on))
        elif name == "vend_input":
            if on:
                self.feed(ManualOpen("ticket machine", "vend", source="vend"))
        else:  # help_input, hold_open_input
            self.feed(InputChanged(name.removesuffix("_input"), on))

    def feed(self, event: Event) -> None:
        now = self.clock.monotonic()
        try:
            commands = self.lane.handle(event, now)
        except LaneTableError as exc:  # a gap in the lane's table: say so, keep running
            log.error("%s", exc)
            self.emit("lane_error", {"reason": str(exc), "event": type(event).__name__})
            commands = []
            if isinstance(event, OpenRequested):  # refused (safe), so its saga is not left
                commands = [AnswerOpen(event.saga_id, False, f"lane error: {exc}")]
        for cmd in commands:
            self._execute(cmd, now)
        if self.lane.state is LaneState.IDLE:
            self._no_passage("the lane went back to rest without seeing it pass")
            self.idle.set()
        else:
            self.idle.clear()
        self._lights()
        if self.on_change is not None and (commands or isinstance(event, LoopRaw)):
            self.on_change()
        self._arm_timer(now)

    def loop_fault(self, loop: str, reason: str, recovered: bool) -> None:
        self.feed(LoopFault(loop, reason, recovered))
        device = self.devices.arming if loop == "arming" else self.devices.safety
        self._input(loop, device.occupied)  # a faulty safety loop reads occupied

    def manual_open(self, who: str, why: str) -> bool:
        """A manual open is always carried out (the arm goes up, or stays up)."""
        self.feed(ManualOpen(who, why))
        return self.lane.barrier == "open"

    def set_mode(self, mode: str, who: str, why: str = "") -> bool:
        ok, commands = self.lane.set_mode(mode, who, why)
        now = self.clock.monotonic()
        for cmd in commands:
            self._execute(cmd, now)
        return ok

    def _arm_timer(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.lane.next_deadline()
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, deadline - now), self.feed, Tick())

    # -- commands out ------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("lane %s: %s failed", self.id, task.get_name(), exc_info=task.exception())

    def _execute(self, cmd: Command, now: float) -> None:
        if isinstance(cmd, Emit):
            if cmd.type == "vehicle_detected":
                self._cycle = {"loop": now}
            self.emit(cmd.type, cmd.data)
        elif isinstance(cmd, Capture):
            self._spawn(self._capture(cmd.presence), "capture")
        elif isinstance(cmd, StartSaga):
            self._spawn(self._run_saga(cmd), f"saga {cmd.saga_id}")
        elif isinstance(cmd, PulseOpen):
            self._cycle["open"] = now
            self._spawn(self._relay(self.devices.barrier.pulse_open(), "barrier"), "open pulse")
        elif isinstance(cmd, Close):
            self._spawn(self._close(), "close")
            if cmd.retry:
                log.warning("lane %s: the arm did not close; closing once more", self.id)
        elif isinstance(cmd, PassageResult):
            fut = self._passage.setdefault(cmd.saga_id, self._new_future())
            if not fut.done():
                fut.set_result(cmd)
        elif isinstance(cmd, AnswerOpen):
            waiter = self._open.pop(cmd.saga_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(cmd)

    def _no_passage(self, reason: str) -> None:
        """A saga still waiting for its passage when the lane is at rest waits for nothing:
        every passage the lane saw was answered as it happened."""
        for saga_id, fut in self._passage.items():
            if not fut.done():
                fut.set_result(PassageResult(saga_id, False, reason))

    def _new_future(self) -> asyncio.Future[Any]:
        assert self._loop is not None
        return self._loop.create_future()

    def emit(self, type_: str, data: Json) -> None:
        if type_ == "barrier_opened" and "open" in self._cycle:
            data = {**data, "stages_ms": self._stages()}
        self._spawn(self.store.record_event(self.clock, self.gate_id, type_, data, self.id),
                    f"event {type_}")

    def _stages(self) -> dict[str, float]:
        c = self._cycle
        marks = [("frame", "frame"), ("plate", "plate"), ("decision", "decision"),
                 ("relay", "open")]
        out: dict[str, float] = {}
        prev = c.get("loop")
        for name, key in marks:
            if key in c and prev is not None:
                out[name] = round((c[key] - prev) * 1000, 3)
                prev = c[key]
        if "loop" in c and "open" in c:
            out["total"] = round((c["open"] - c["loop"]) * 1000, 3)
            self.latencies.append({**out, "at": c["open"]})  # "at" orders lanes together
        return out

    def _refused_stages(self) -> None:
        """The stages of a vehicle whose saga ended without the arm opening for it: its
        decision took as long as any other's, and a slow denial is as slow for the driver."""
        c = self._cycle
        if "loop" not in c or "open" in c:
            return  # opened (counted at barrier_opened), or not this vehicle's cycle
        c.setdefault("decision", self.clock.monotonic())
        out: dict[str, float] = {}
        prev = c["loop"]
        for name in ("frame", "plate", "decision"):
            if name in c:
                out[name] = round((c[name] - prev) * 1000, 3)
                prev = c[name]
        self.refusals.append({**out, "at": c["decision"]})
        self._cycle = {}  # counted once; an open by hand later is no vehicle's decision

    async def _relay(self, action: Awaitable[None], device: str) -> None:
        try:
            await action
        except DeviceError as exc:
            self.emit("hardware_fault", {"device": device, "reason": str(exc)})

    async def _close(self) -> None:
        try:
            await self.devices.barrier.close()
        except DeviceError as exc:  # refused by the interlock: the lane must not think closed
            self.feed(BarrierInterlock(str(exc)))

    async def _capture(self, presence: int) -> None:
        saga_id = str(uuid.uuid4())
        # a new vehicle: the last one's crop no longer shows the car in the lane (on an ANPR
        # lane the gate's own reading of this one comes only after its decision)
        self.last_crop = None
        grabber = self.devices.camera
        if grabber is None:
            self.feed(PlateCaptured(None, saga_id, presence=presence))
            return
        try:
            shot = await asyncio.to_thread(capture, grabber, self.devices.capture)
        except DeviceError as exc:
            self.emit("hardware_fault", {"device": "camera", "reason": str(exc)})
            self.feed(PlateCaptured(None, saga_id, presence=presence))
            return
        self._cycle["frame"] = self.clock.monotonic() - shot.timings_ms.get("encode", 0) \
            / 1000 - shot.timings_ms.get("select", 0) / 1000
        if shot.plate and self.reader is not None and self.compare_anpr:
            # the ANPR camera's reading is the one used: the gate's own reading of the
            # burst is only compared with it, after the decision, never before it
            self._cycle["plate"] = self.clock.monotonic()
            self._shot_images = (saga_id, shot_images(shot, None))
            decided = self._decided[saga_id] = self._new_future()
            self.feed(PlateCaptured(shot.plate, saga_id, shot.confidence, shot.image_b64,
                                    presence, "camera"))
            self._spawn(self._compare(shot, saga_id, decided), "compare reading")
            return
        got = await reading_for(shot, self.reader, self.roi, compare_anpr=self.compare_anpr)
        self._cycle["plate"] = self.clock.monotonic()
        self._reading(got)
        self._shot_images = (saga_id, shot_images(shot, got.local.crop_jpeg
                                                  if got.local is not None else None))
        self.feed(PlateCaptured(got.plate, saga_id, got.confidence, shot.image_b64,
                                presence, got.source))

    async def _compare(self, shot: Shot, saga_id: str, decided: asyncio.Future[None]) -> None:
        """The gate's reading of an ANPR camera's burst, once the lane has decided (the
        reader's CPU would otherwise slow the decision: two cores), or gave up waiting."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(decided, self.lane.c.decision_timeout_s)
        finally:
            self._decided.pop(saga_id, None)
        self._reading(await reading_for(shot, self.reader, self.roi, compare_anpr=True))

    def _decision_made(self, saga_id: str) -> None:
        """What waits for the decision goes now: the comparison's reading, the images."""
        fut = self._decided.get(saga_id)
        if fut is not None and not fut.done():
            fut.set_result(None)
        kept = self._decision_images.pop(saga_id, None)
        if kept is not None and self.images is not None:
            self.images.submit(saga_id, *kept)

    def _reading(self, got: ShotReading) -> None:
        for type_, data in got.events:
            self.emit(type_, data)
        if got.local is not None:  # for the page: what the gate's reader saw
            self.last_reading = {
                "license_plate": got.local.plate, "confidence": round(got.local.confidence, 3),
                "latency_ms": round(got.local.latency_ms, 1), "error": got.local.error,
                "used": got.source}
            self.last_crop = got.local.crop_jpeg  # served as /api/lanes/{id}/plate.jpg

    async def _run_saga(self, cmd: StartSaga) -> None:
        ctx: Json = {"lane_id": self.id, "license_plate": cmd.plate,
                     "plate_confidence": cmd.confidence,
                     "reading_source": cmd.reading_source}
        if cmd.image_b64:
            ctx["image_jpeg_b64"] = cmd.image_b64
        saga_id, images = self._shot_images
        if self.images is not None and saga_id == cmd.saga_id:
            # to disk on its own thread once the lane decided: its writes and fsyncs would
            # share the disk with the saga log's commits of the decision
            self._decision_images[saga_id] = (images, self.clock.wall())
            self._shot_images = ("", {})
        definition = DEFINITIONS[self.direction]
        try:
            outcome = await self.runner.run(definition, ctx, saga_id=cmd.saga_id)
        except asyncio.CancelledError:
            raise  # stopping: the log stays as it is and recovery finishes the saga
        except Exception as exc:
            log.exception("lane %s: saga %s crashed", self.id, cmd.saga_id)
            self.feed(SagaFinished(cmd.saga_id, "failed", str(exc)))
            return
        finally:
            self._decision_made(cmd.saga_id)  # denied, failed or done
        if self.lane.saga_id == cmd.saga_id:  # the lane still has this saga's vehicle
            self._refused_stages()
        self.last = {"saga_id": outcome.saga_id, "license_plate": cmd.plate,
                     "status": outcome.status, "reason": outcome.reason,
                     "sources": outcome.sources, "duration_ms": round(outcome.duration_ms, 1)}
        if self.vehicle_log is not None:
            opened = self.latencies[-1].get("total") \
                if self.latencies and outcome.status == "completed" else None
            self.vehicle_log(VehicleRecord.of(self.id, self.direction, cmd.plate, outcome,
                                              opened))
        self._open.pop(cmd.saga_id, None)
        self._passage.pop(cmd.saga_id, None)
        self.feed(SagaFinished(cmd.saga_id, outcome.status, outcome.reason))
        if self.after_saga is not None:
            await self.after_saga()

    # -- the saga's gate_service steps ---------------------------------------------------
    async def open_barrier(self, saga_id: str, recovering: bool) -> Json:
        if recovering:
            return {"opened": False, "assumed": True}
        self._cycle["decision"] = self.clock.monotonic()
        waiter: asyncio.Future[AnswerOpen] = self._new_future()
        self._open[saga_id] = waiter
        self.feed(OpenRequested(saga_id))
        self._decision_made(saga_id)  # the pulse is out (or refused)
        # the answer comes once the arm is seen up, or when the lane gives up looking
        limit = 2 * (1.5 * self.lane.c.arm_travel_s + 0.5) + 5.0
        try:
            answer = await asyncio.wait_for(waiter, limit)
        except TimeoutError:
            # no answer (a lost one): opened only if the lane is letting this saga's
            # vehicle through; else refused, and the saga undoes what it did
            self._open.pop(saga_id, None)
            mine = self.lane.saga_id == saga_id and self.lane.granted
            answer = AnswerOpen(saga_id, mine, "" if mine else "the lane did not answer",
                                arm="not_confirmed")
        if not answer.opened:
            raise PermanentError(f"barrier not opened: {answer.reason}", service="gate_service")
        return {"opened": True, "arm": answer.arm}

    async def confirm_passage(self, saga_id: str, recovering: bool) -> Json:
        if recovering:
            return {"passed": True, "assumed": True}
        fut = self._passage.setdefault(saga_id, self._new_future())
        if self.lane.state is LaneState.IDLE:
            self._no_passage("the lane is at rest: no vehicle passing for it")
        try:
            result = await fut
        finally:
            self._passage.pop(saga_id, None)
        if not result.passed:
            raise PermanentError(result.reason or "no passage", service="gate_service")
        return {"passed": True}

    # -- lights and status -------------------------------------------------------------
    def _lights(self) -> None:
        go = self.lane.state in (LaneState.OPENING, LaneState.PASSING, LaneState.HELD_OPEN)
        ind = self.devices.indicators
        if "green" in ind:
            ind["green"].set(go)
        if "red" in ind:
            ind["red"].set(not go)

    def set_full_sign(self, full: bool) -> None:
        if "full" in self.devices.indicators:
            self.devices.indicators["full"].set(full)

    def _camera_health(self, ok: bool, why: str) -> None:
        if ok and self.camera_fault:
            self.camera_fault = ""
            self.emit("hardware_recovered", {"device": "camera"})
        elif not ok and not self.camera_fault:
            self.camera_fault = why or "no frames"
            self.emit("hardware_fault", {"device": "camera", "reason": self.camera_fault})

    def status(self) -> Json:
        d = self.devices
        return {
            "id": self.id, "direction": self.direction, "state": self.lane.state.value,
            "mode": self.lane.mode,
            "barrier": self.lane.barrier,
            "arm": {"position": self.lane.arm.position(), "assumed": self.lane.arm.assumed},
            "loops": {"arming": bool(d.arming.occupied), "safety": bool(d.safety.occupied)},
            "stale_captures": self.lane.stale_captures,
            "faults": {**self.lane.faults, **({"camera": self.camera_fault}
                                              if self.camera_fault else {})},
            "last": self.last,
            "reading": self.last_reading,
        }


def shot_images(shot: Shot, local_crop: bytes | None) -> dict[Kind, bytes]:
    """What a capture leaves for the image store: the plate crop (the gate's reader's, else
    the camera's) and the frame (unless the camera encoded the crop in its place)."""
    images: dict[Kind, bytes] = {}
    crop = local_crop or shot.crop_jpeg
    if crop:
        images["crop"] = crop
    if shot.jpeg and shot.jpeg is not shot.crop_jpeg:
        images["frame"] = shot.jpeg
    return images


def lane_config(s: LaneSettings, policy: PolicySettings) -> LaneConfig:
    t = s.timings
    exit_lane = s.direction == "exit"
    return LaneConfig(
        debounce_s=t.debounce_s, capture_timeout_s=t.capture_timeout_s,
        capture_attempts=t.capture_attempts, decision_timeout_s=t.decision_timeout_s,
        passage_timeout_s=t.passage_timeout_s, arm_travel_s=t.arm_travel_s,
        dropout_hold_s=t.dropout_hold_s, gap_hold_s=t.gap_hold_s,
        stuck_occupied_s=t.stuck_occupied_s, duplicate_window_s=t.duplicate_window_s,
        arming_mode=s.arming_loop.mode if s.arming_loop.kind == "gpio" else "presence",
        pulse_hold_s=s.arming_loop.pulse_hold_s, tailgate_response=s.tailgate_response,
        fail_open=exit_lane and policy.exit_on_fault == "fail_open",
        unreadable_exit=policy.exit_when_unverifiable if exit_lane else "deny",
        limits=frozenset(name for name in ("open", "closed")
                         if getattr(s, f"arm_{name}_limit").kind != "none"))


class GateService:
    """The saga's ``gate_service``: routes each call to its lane's controller."""

    name = "gate_service"

    def __init__(self) -> None:
        self.lanes: dict[str, LaneController] = {}

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        lane = self.lanes.get(str(payload.get("lane_id", "")))
        saga_id = str(payload.get("saga_id", ""))
        recovering = bool(payload.get("recovering"))
        if lane is None:
            if recovering:  # the lane is gone from the configuration: nothing to drive
                return {"assumed": True}
            raise PermanentError(f"no lane {payload.get('lane_id')!r}", service=self.name)
        if operation == "open_barrier":
            return await lane.open_barrier(saga_id, recovering)
        if operation == "confirm_passage":
            return await lane.confirm_passage(saga_id, recovering)
        raise PermanentError(f"gate_service has no operation {operation!r}", service=self.name)
