"""GPIO adapters against gpiozero's MockFactory pins (no patching of the library)."""

from __future__ import annotations

import asyncio

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.core.debounce import Debouncer
from gateway.core.errors import DeviceError
from gateway.settings import parse_settings
from hardware.build import build_lane_devices
from hardware.gpio import GpioBarrier, GpioLoop, GpioRelay
from hardware.sim import sim_factory


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def test_presence_loop_reports_edges_and_the_core_debounces_chatter(factory):
    loop = GpioLoop("arming", 17, pin_factory=factory)
    seen: list[tuple[str, bool]] = []
    loop.start(lambda name, occupied: seen.append((name, occupied)))
    pin = factory.pin(17)
    for _ in range(3):  # contact chatter: mock pins ignore bounce_time, as documented
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    assert seen == [("arming", True), ("arming", False)] * 3 + [("arming", True)]
    assert loop.occupied
    deb = Debouncer(0.05)
    stable = []
    for i, (_, level) in enumerate(seen):  # the edges 5 ms apart, then quiet
        deb.raw(level, i * 0.005)
        if (s := deb.poll(i * 0.005)) is not None:
            stable.append(s)
    assert deb.poll(0.2) is True and stable == []
    loop.close()


def test_active_low_input_with_pull_up(factory):
    loop = GpioLoop("safety", 27, active_high=False, pull="up", pin_factory=factory)
    assert not loop.occupied  # pulled up = clear for an active-low detector
    factory.pin(27).drive_low()
    assert loop.occupied
    loop.close()


def test_pulse_mode_toggles_on_each_pulse(factory):
    loop = GpioLoop("arming", 17, mode="pulse", pin_factory=factory)
    seen: list[bool] = []
    loop.start(lambda name, occupied: seen.append(occupied))
    pin = factory.pin(17)
    for _ in range(2):
        pin.drive_high()
        pin.drive_low()
    assert seen == [True, False] and not loop.occupied
    loop.close()


async def test_open_pulse_has_its_width_and_relays_end_de_energised(factory):
    occupied = {"safety": False}
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory),
                          GpioRelay("close", 23, pin_factory=factory), pulse_s=0.05,
                          safety_occupied=lambda: occupied["safety"])
    pin = factory.pin(22)
    assert pin.state is False  # de-energised from the start
    await barrier.pulse_open()
    states = [s.state for s in pin.states]
    assert states == [False, True, False]
    assert 0.04 <= pin.states[2].timestamp <= 0.5  # the time it was energised
    occupied["safety"] = True
    with pytest.raises(DeviceError, match="safety loop is occupied"):
        await barrier.close()
    assert factory.pin(23).state is False and barrier.refused_closes == 1
    occupied["safety"] = False
    await barrier.close()
    assert barrier.close_pulses == 1
    barrier.release()
    assert pin.state is False and factory.pin(23).state is False


async def test_a_cancelled_pulse_still_de_energises(factory):
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory), None, pulse_s=5,
                          safety_occupied=lambda: False)
    task = asyncio.create_task(barrier.pulse_open())
    await asyncio.sleep(0)
    assert factory.pin(22).state is True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert factory.pin(22).state is False
    barrier.release()


def test_pin_in_use_is_a_clear_device_error_and_nothing_stays_open():
    settings = parse_settings("""
[simulation]
enabled = true
[[lanes]]
id = "entry-1"
direction = "entry"
[lanes.camera]
kind = "none"
[lanes.barrier]
kind = "sim"
""", "t.toml")
    f = sim_factory()
    try:
        taken = GpioRelay("other", 6, pin_factory=f)  # lane 0's open relay pin
        with pytest.raises(DeviceError, match=r"lane entry-1: open relay on GPIO 6"):
            build_lane_devices(settings.lanes[0], 0, f, {})
        taken.close()
        # what was opened before the failure was released: the lane builds now
        devices = build_lane_devices(settings.lanes[0], 0, f, {})
        devices.release()
    finally:
        f.reset()


async def test_open_and_close_relays_are_never_energised_together(factory):
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory),
                          GpioRelay("close", 23, pin_factory=factory), pulse_s=5,
                          safety_occupied=lambda: False)
    open_pin, close_pin = factory.pin(22), factory.pin(23)
    closing = asyncio.create_task(barrier.close())
    await asyncio.sleep(0)
    assert close_pin.state is True
    opening = asyncio.create_task(barrier.pulse_open())  # a new vehicle: open again
    await asyncio.sleep(0)
    assert open_pin.state is True and close_pin.state is False
    again = asyncio.create_task(barrier.pulse_open())  # a repeated open is a fresh edge
    await asyncio.sleep(0)
    assert [s.state for s in open_pin.states][-3:] == [True, False, True]
    for task in (closing, opening, again):
        task.cancel()
    await asyncio.gather(closing, opening, again, return_exceptions=True)
    assert open_pin.state is False and close_pin.state is False
    barrier.release()
