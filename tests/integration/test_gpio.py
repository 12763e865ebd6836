"""GPIO adapters against gpiozero's MockFactory pins (no patching of the library)."""

from __future__ import annotations

import asyncio

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.core.debounce import Debouncer, PulsePresence
from gateway.core.errors import DeviceError
from gateway.core.wiring import Wiring
from gateway.settings import parse_settings
from hardware.build import build_lane_devices
from hardware.gpio import GpioBarrier, GpioInput, GpioRelay
from hardware.sim import sim_factory


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


FAIL_SAFE = Wiring("up", "auto", "clear")  # contact closed while the loop is clear
NPN_ACTIVE_OCCUPIED = Wiring("up", "low", "occupied")  # output pulls low on a vehicle


class Contact:
    """The detector's relay contact between the pin and ground, with the Pi's pull-up: a
    closed contact pulls the pin low, an open one (or a cut wire) leaves it high."""

    def __init__(self, pin) -> None:
        self.pin = pin

    def close(self) -> None:
        self.pin.drive_low()

    def open(self) -> None:
        self.pin.drive_high()

    cut = open  # a cut wire is an open contact: the pull-up wins


def test_fail_safe_safety_loop_reads_clear_only_while_its_contact_is_closed(factory):
    loop = GpioInput("safety", 27, FAIL_SAFE, pin_factory=factory)
    contact = Contact(factory.pin(27))
    seen: list[bool] = []
    loop.start(lambda name, occupied: seen.append(occupied))
    contact.close()  # detector powered, loop clear
    assert loop.occupied is False
    contact.open()  # a vehicle: the detector drops its relay
    assert loop.occupied is True
    contact.close()
    contact.cut()  # the wire is cut (or the detector lost power)
    assert loop.occupied is True
    assert seen == [False, True, False, True]
    loop.close()


def test_the_old_reading_of_that_wiring_was_inverted(factory):
    """What the gateway did before (gpiozero's "active" taken as occupied): the contact
    closed on a clear loop read occupied, and a cut wire read clear."""
    loop = GpioInput("safety", 27, FAIL_SAFE, pin_factory=factory, unguarded=True)
    contact = Contact(factory.pin(27))
    contact.close()
    assert loop.occupied is True
    contact.cut()
    assert loop.occupied is False
    loop.close()


def test_an_output_on_while_occupied_with_a_pull_up(factory):
    loop = GpioInput("arming", 17, NPN_ACTIVE_OCCUPIED, pin_factory=factory)
    contact = Contact(factory.pin(17))
    contact.open()
    assert loop.occupied is False
    contact.close()
    assert loop.occupied is True
    loop.close()


def test_chatter_reaches_the_core_which_debounces_it(factory):
    loop = GpioInput("arming", 17, NPN_ACTIVE_OCCUPIED, pin_factory=factory)
    seen: list[bool] = []
    loop.start(lambda name, occupied: seen.append(occupied))
    contact = Contact(factory.pin(17))
    for _ in range(3):  # contact chatter: mock pins ignore bounce_time, as documented
        contact.close()
        contact.open()
    contact.close()
    assert seen == [True, False] * 3 + [True]
    deb = Debouncer(0.05)
    stable = []
    for i, level in enumerate(seen):  # the edges 5 ms apart, then quiet
        deb.raw(level, i * 0.005)
        if (s := deb.poll(i * 0.005)) is not None:
            stable.append(s)
    assert deb.poll(0.2) is True and stable == []
    loop.close()


def test_a_pulse_output_becomes_one_presence_per_pulse(factory):
    """pulse_on_entry and pulse_on_exit alike: the adapter passes the output's level, the
    core (PulsePresence) turns each debounced pulse into one presence."""
    loop = GpioInput("arming", 17, NPN_ACTIVE_OCCUPIED, pin_factory=factory)
    presence = PulsePresence(0.02, hold_s=2.0)
    now = [0.0]

    def edge(name: str, on: bool) -> None:
        presence.raw(on, now[0])

    loop.start(edge)
    contact = Contact(factory.pin(17))
    contact.open()
    levels = []

    def until(t: float) -> None:
        while (d := presence.deadline()) is not None and d <= t:
            if (level := presence.poll(d)) is not None:
                levels.append((round(d, 3), level))

    for t, action in ((1.0, contact.close), (1.002, contact.open), (1.004, contact.close),
                      (1.15, contact.open), (5.0, contact.close), (5.15, contact.open)):
        until(t)
        now[0] = t
        action()  # a 150 ms pulse with a bounce at its start, then another much later
    until(8.0)
    assert levels == [(1.024, True), (3.024, False), (5.02, True), (7.02, False)]
    assert presence.pulses == 2  # the bounce did not count, nothing toggled
    loop.close()


async def test_open_pulse_has_its_width_and_relays_end_de_energised(factory):
    occupied = {"safety": False}
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory),
                          GpioRelay("close", 23, pin_factory=factory), pulse_s=0.05,
                          travel_s=1.0, safety_occupied=lambda: occupied["safety"])
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
                          travel_s=1.0, safety_occupied=lambda: False)
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
            build_lane_devices(settings.lanes[0], f, {})
        taken.close()
        # what was opened before the failure was released: the lane builds now
        devices = build_lane_devices(settings.lanes[0], f, {})
        devices.release()
    finally:
        f.reset()


async def test_open_and_close_relays_are_never_energised_together(factory):
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory),
                          GpioRelay("close", 23, pin_factory=factory), pulse_s=5,
                          travel_s=1.0, safety_occupied=lambda: False)
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


async def test_the_barrier_reverses_a_closing_arm_the_moment_the_safety_loop_is_occupied(
        factory):
    safety = GpioInput("safety", 27, FAIL_SAFE, pin_factory=factory)
    contact = Contact(factory.pin(27))
    contact.close()
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory),
                          GpioRelay("close", 23, pin_factory=factory), pulse_s=0.05,
                          travel_s=1.0, safety_occupied=lambda: safety.occupied)
    safety.start(lambda name, occupied: barrier.safety_changed(occupied))
    await barrier.close()
    contact.open()  # a vehicle under the arm while it comes down
    assert barrier.reversals == 1
    await asyncio.sleep(0)
    assert factory.pin(22).state is True and factory.pin(23).state is False  # opening
    contact.cut()  # and a cut wire refuses the next close
    with pytest.raises(DeviceError, match="safety loop is occupied"):
        await barrier.close()
    barrier.release()
    safety.close()


async def test_without_its_guard_the_barrier_closes_on_a_car(factory):
    barrier = GpioBarrier(GpioRelay("open", 22, pin_factory=factory),
                          GpioRelay("close", 23, pin_factory=factory), pulse_s=0.01,
                          travel_s=1.0, safety_occupied=lambda: True, guard=False)
    await barrier.close()
    assert barrier.close_pulses == 1 and not barrier.safety_changed(True)
    barrier.release()


def test_an_active_low_relay_board_is_energised_by_a_low_pin(factory):
    relay = GpioRelay("green", 5, active_high=False, pin_factory=factory)
    assert factory.pin(5).state is True  # de-energised: high
    relay.set(True)
    assert factory.pin(5).state is False
    relay.close()
