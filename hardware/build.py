"""Building a lane's devices from its settings: the one place that knows which adapter
each ``kind`` means. Simulated devices use gpiozero mock pins, numbered per lane."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import DeviceError
from gateway.settings import LaneSettings, LoopSettings
from hardware.camera import CaptureSettings, LatestFrameGrabber, OpenCvSource
from hardware.gpio import GpioBarrier, GpioLoop, GpioRelay
from hardware.serial_loop import SerialLoop, SerialLoopPort
from hardware.sim import SimCameraSource


class LoopInput(Protocol):
    name: str

    @property
    def occupied(self) -> bool: ...
    def start(self, on_change: Callable[[str, bool], None]) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SimPins:
    """Which mock pins a simulated lane uses (the vehicle simulator drives them)."""

    arming: int
    safety: int
    open_relay: int
    close_relay: int
    green: int
    red: int


SIM_PINS_PER_LANE = 6
MAX_SIM_LANES = 4  # the mock board has GPIO4..GPIO27 free


def sim_pins(index: int) -> SimPins:
    if index >= MAX_SIM_LANES:
        raise DeviceError(f"at most {MAX_SIM_LANES} simulated lanes")
    b = 4 + index * SIM_PINS_PER_LANE  # GPIO2 and GPIO3 have fixed pull-ups (I2C)
    return SimPins(b, b + 1, b + 2, b + 3, b + 4, b + 5)


@dataclass
class LaneDevices:
    arming: LoopInput
    safety: LoopInput
    barrier: GpioBarrier
    camera: LatestFrameGrabber | None
    capture: CaptureSettings
    indicators: dict[str, GpioRelay] = field(default_factory=dict)
    sim_pins: SimPins | None = None
    sim_camera: SimCameraSource | None = None

    def release(self) -> None:
        """Relays de-energised, pins freed, camera stopped: on every exit."""
        for relay in self.indicators.values():
            relay.close()
        self.barrier.release()
        for loop in (self.arming, self.safety):
            loop.close()
        if self.camera is not None:
            self.camera.stop()


def _loop(name: str, s: LoopSettings, sim_pin: int | None, factory: Any,
          ports: dict[str, SerialLoopPort], safety: bool) -> LoopInput:
    if s.kind == "serial":
        port = ports.get(s.port)
        if port is None:
            port = ports[s.port] = SerialLoopPort(s.port, s.baudrate, silent_s=s.silent_s)
        return SerialLoop(name, port, s.channel, fail_occupied=safety)
    pin = sim_pin if s.kind == "sim" and sim_pin is not None else s.pin
    return GpioLoop(name, pin, active_high=s.active_high if s.kind != "sim" else True,
                    pull=s.pull if s.kind != "sim" else "none", mode=s.mode,
                    pin_factory=factory if s.kind == "sim" else None)


def build_lane_devices(lane: LaneSettings, index: int, sim_factory: Any,
                       ports: dict[str, SerialLoopPort]) -> LaneDevices:
    """Open every device of a lane; on any failure, release what was opened and raise a
    ``DeviceError`` naming the lane and the device."""
    pins = sim_pins(index) if "sim" in (lane.arming_loop.kind, lane.safety_loop.kind,
                                        lane.barrier.kind, lane.indicators.kind) else None
    opened: list[Any] = []
    try:
        arming = _loop("arming", lane.arming_loop, pins.arming if pins else None, sim_factory,
                       ports, False)
        opened.append(arming)
        safety = _loop("safety", lane.safety_loop, pins.safety if pins else None, sim_factory,
                       ports, True)
        opened.append(safety)
        b = lane.barrier
        factory = sim_factory if b.kind == "sim" else None
        open_pin = pins.open_relay if b.kind == "sim" and pins else b.open_pin
        close_pin = pins.close_relay if b.kind == "sim" and pins else b.close_pin
        open_relay = GpioRelay("open", open_pin, active_high=b.active_high, pin_factory=factory)
        opened.append(open_relay)
        close_relay = None
        if close_pin is not None:
            close_relay = GpioRelay("close", close_pin, active_high=b.active_high,
                                    pin_factory=factory)
            opened.append(close_relay)
        barrier = GpioBarrier(open_relay, close_relay, pulse_s=b.pulse_s,
                              safety_occupied=lambda: safety.occupied)
        indicators: dict[str, GpioRelay] = {}
        ind = lane.indicators
        if ind.kind != "none":
            f = sim_factory if ind.kind == "sim" else None
            wanted = {"green": pins.green if pins and ind.kind == "sim" else ind.green_pin,
                      "red": pins.red if pins and ind.kind == "sim" else ind.red_pin}
            if ind.kind == "gpio" and ind.full_sign_pin is not None:
                wanted["full"] = ind.full_sign_pin
            for name, pin in wanted.items():
                if pin is not None:
                    indicators[name] = GpioRelay(name, pin, pin_factory=f)
                    opened.append(indicators[name])
        c = lane.camera
        capture = CaptureSettings(burst=c.burst, frame_timeout_s=c.frame_timeout_s,
                                  max_width=c.max_width, jpeg_quality=c.jpeg_quality,
                                  crop_plate=c.crop_plate)
        sim_camera = None
        grabber = None
        if c.kind == "sim":
            sim_camera = SimCameraSource(c.width, c.height)
            grabber = LatestFrameGrabber(sim_camera, watchdog_s=c.watchdog_s,
                                         frame_interval_s=sim_camera.frame_interval_s)
        elif c.kind == "opencv":
            grabber = LatestFrameGrabber(OpenCvSource(c.source), watchdog_s=c.watchdog_s)
    except DeviceError as exc:
        for device in reversed(opened):
            device.close()
        raise DeviceError(f"lane {lane.id}: {exc}") from None
    return LaneDevices(arming, safety, barrier, grabber, capture, indicators, pins, sim_camera)
