"""Building a lane's devices from its settings: the one place that knows which adapter
each ``kind`` means. Simulated devices use gpiozero mock pins (a board per lane, wired as
``hardware.sim.SIM_WIRING`` says real detectors are)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import DeviceError
from gateway.settings import INPUTS, InputSettings, LaneSettings, LoopSettings
from hardware.camera import CaptureSettings, LatestFrameGrabber, OpenCvSource, upload_mode
from hardware.gpio import GpioBarrier, GpioInput, GpioRelay
from hardware.serial_loop import SerialLoop, SerialLoopPort
from hardware.sim import SIM_WIRING, SimCameraSource, drive


class LoopInput(Protocol):
    name: str

    @property
    def occupied(self) -> bool: ...
    def start(self, on_change: Callable[[str, bool], None]) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SimPins:
    """Which mock pins a simulated lane uses (the vehicle simulator drives them)."""

    arming: int = 4
    safety: int = 5
    open_relay: int = 6
    close_relay: int = 7
    green: int = 8
    red: int = 9
    arm_open_limit: int = 10
    arm_closed_limit: int = 11
    vend_input: int = 12
    help_input: int = 13
    hold_open_input: int = 16


SIM_PINS = SimPins()  # the same on every lane: each simulated lane has its own mock board


def rest_sim_inputs(factory: Any) -> None:
    """A simulated lane at rest, with nobody driving it: detectors powered, both loops
    clear, the arm on its closed limit (for ``hw-test`` on simulated devices)."""
    for name, wiring, on in (("arming", SIM_WIRING["arming"], False),
                             ("safety", SIM_WIRING["safety"], False),
                             ("arm_closed_limit", SIM_WIRING["limit"], True)):
        drive(factory.pin(getattr(SIM_PINS, name)), wiring, on)


@dataclass
class LaneDevices:
    arming: LoopInput
    safety: LoopInput
    barrier: GpioBarrier
    camera: LatestFrameGrabber | None
    capture: CaptureSettings
    indicators: dict[str, GpioRelay] = field(default_factory=dict)
    inputs: dict[str, GpioInput] = field(default_factory=dict)  # by settings name
    simulated: bool = False
    sim_camera: SimCameraSource | None = None

    def release(self) -> None:
        """Relays de-energised, pins freed, camera stopped: on every exit."""
        for relay in self.indicators.values():
            relay.close()
        self.barrier.release()
        for loop in (self.arming, self.safety, *self.inputs.values()):
            loop.close()
        if self.camera is not None:
            self.camera.stop()


def _loop(name: str, s: LoopSettings, factory: Any, ports: dict[str, SerialLoopPort],
          safety: bool, unguarded: bool) -> LoopInput:
    if s.kind == "serial":
        port = ports.get(s.port)
        if port is None:
            port = ports[s.port] = SerialLoopPort(s.port, s.baudrate, silent_s=s.silent_s)
        return SerialLoop(name, port, s.channel, fail_occupied=safety)
    if s.kind == "sim":
        return GpioInput(name, getattr(SIM_PINS, name), SIM_WIRING[name], pin_factory=factory,
                         unguarded=unguarded)
    return GpioInput(name, s.pin, s.wiring(), unguarded=unguarded)


def _input(name: str, s: InputSettings, factory: Any) -> GpioInput:
    if s.kind == "sim":
        wiring = SIM_WIRING["limit" if name.startswith("arm_") else "input"]
        return GpioInput(name, getattr(SIM_PINS, name), wiring, pin_factory=factory)
    return GpioInput(name, s.pin, s.wiring())


def _relay(name: str, kind: str, pin: int | str | None, sim_pin: int, active_high: bool,
           factory: Any) -> GpioRelay | None:
    if kind == "sim":
        return GpioRelay(name, sim_pin, pin_factory=factory)
    return None if pin is None else GpioRelay(name, pin, active_high=active_high)


def lane_relays(lane: LaneSettings, sim_factory: Any,
                keep: Callable[[Any], Any] = lambda device: device,
                failed: Callable[[str, DeviceError], None] | None = None
                ) -> dict[str, GpioRelay]:
    """Every relay of a lane, each at its de-energised level from the start: "open",
    "close" (when wired) and the lights ("green", "red", "full"). With ``failed``, a relay
    that cannot be opened is reported there and the others are still opened."""
    b, ind = lane.barrier, lane.indicators
    wanted: list[tuple[str, str, int | str | None, int, bool]] = [
        ("open", b.kind, b.open_pin, SIM_PINS.open_relay, b.active_high),
        ("close", b.kind, b.close_pin, SIM_PINS.close_relay, b.active_high)]
    if ind.kind != "none":
        wanted += [("green", ind.kind, ind.green_pin, SIM_PINS.green, ind.active_high),
                   ("red", ind.kind, ind.red_pin, SIM_PINS.red, ind.active_high)]
        if ind.kind == "gpio":
            wanted.append(("full", ind.kind, ind.full_sign_pin, 0, ind.active_high))
    relays = {}
    for name, kind, pin, sim_pin, active_high in wanted:
        try:
            relay = keep(_relay(name, kind, pin, sim_pin, active_high, sim_factory))
        except DeviceError as exc:
            if failed is None:
                raise
            failed(name, exc)
            continue
        if relay is not None:
            relays[name] = relay
    return relays


def build_lane_devices(lane: LaneSettings, sim_factory: Any, ports: dict[str, SerialLoopPort],
                       *, unguarded: bool = False) -> LaneDevices:
    """Open every device of a lane; on any failure, release what was opened and raise a
    ``DeviceError`` naming the lane and the device. ``sim_factory`` is this lane's mock
    board (``None`` without simulation); ``unguarded`` is for one test only."""
    opened: list[Any] = []

    def keep(device: Any) -> Any:
        if device is not None:
            opened.append(device)
        return device

    try:
        arming = keep(_loop("arming", lane.arming_loop, sim_factory, ports, False, False))
        safety = keep(_loop("safety", lane.safety_loop, sim_factory, ports, True, unguarded))
        relays = lane_relays(lane, sim_factory, keep)
        barrier = GpioBarrier(relays.pop("open"), relays.pop("close", None),
                              pulse_s=lane.barrier.pulse_s, travel_s=lane.timings.arm_travel_s,
                              safety_occupied=lambda: safety.occupied, guard=not unguarded)
        indicators = relays
        inputs = {name: keep(_input(name, getattr(lane, name), sim_factory))
                  for name in INPUTS if getattr(lane, name).kind != "none"}
        c = lane.camera
        capture = CaptureSettings(burst=c.burst, frame_timeout_s=c.frame_timeout_s,
                                  max_width=c.max_width, jpeg_quality=c.jpeg_quality,
                                  upload=upload_mode(c.upload, c.crop_plate))
        sim_camera = None
        grabber = None
        if c.kind == "sim":
            sim_camera = SimCameraSource(c.width, c.height, plain=c.mode == "plain")
            grabber = LatestFrameGrabber(sim_camera, watchdog_s=c.watchdog_s,
                                         max_frame_age_s=c.max_frame_age_s,
                                         frame_interval_s=sim_camera.frame_interval_s,
                                         name=lane.id)
        elif c.kind == "opencv":
            grabber = LatestFrameGrabber(OpenCvSource(c.source, rtsp_transport=c.rtsp_transport),
                                         watchdog_s=c.watchdog_s,
                                         max_frame_age_s=c.max_frame_age_s, name=lane.id)
    except DeviceError as exc:
        for device in reversed(opened):
            device.close()
        raise DeviceError(f"lane {lane.id}: {exc}") from None
    simulated = sim_factory is not None and "sim" in (
        lane.arming_loop.kind, lane.safety_loop.kind, lane.barrier.kind)
    return LaneDevices(arming, safety, barrier, grabber, capture, indicators, inputs,
                       simulated, sim_camera)
