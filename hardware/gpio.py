"""Loop detectors, contact inputs, relays and the barrier on GPIO (gpiozero).

Wiring notes for installers (the README's "Wiring" table has every case):
- What a level means is declared per input (``pull``, ``active_level``, ``active_means``)
  and decided here in software (``gateway.core.wiring``): gpiozero's own "active" is only
  used to learn the pin's electrical level.
- The safety loop is wired fail-safe (the detector's contact closed while the loop is
  clear): a cut wire or a dead detector reads "occupied" and the arm is never brought down.
- Relays start de-energised and are de-energised again on every exit; a crash is covered
  by ``parking-gateway relays-off`` in the unit's ``ExecStopPost=``.
- The barrier holds an interlock of its own (``GpioBarrier``): it refuses a close while
  the safety loop reads occupied, and reverses a closing arm the moment the safety loop
  becomes occupied, before any debouncing or decision in the lane.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, OutputDevice
from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError

from gateway.core.errors import DeviceError
from gateway.core.wiring import Wiring

OnChange = Callable[[str, bool], None]
GPIOZERO_PULL = {"up": True, "down": False}  # external pulls and "none": the pin's pull off


def _device_error(what: str, exc: Exception) -> DeviceError:
    hint = ""
    if isinstance(exc, BadPinFactory):
        hint = (" (no GPIO here: not a Raspberry Pi, or the lgpio package is missing; "
                "use kind = \"sim\" with simulation.enabled to try the gateway without one)")
    elif isinstance(exc, GPIOPinInUse):
        hint = " (another device in the configuration, or another program, uses this pin)"
    return DeviceError(f"{what}: {type(exc).__name__}: {exc}{hint}")


class GpioInput:
    """One contact input. ``on`` is its meaning ("occupied", or "on" for a button or a
    limit switch) decided from the pin's level and the declared wiring.

    ``unguarded`` (tests only, ``GATEWAY_TEST_UNGUARDED_SAFETY``) reads the pin the way the
    gateway once did: gpiozero's "active" taken as "occupied", whatever the wiring.
    The callback runs in gpiozero's thread; the controller hands it to the event loop."""

    def __init__(self, name: str, pin: int | str, wiring: Wiring, *,
                 pin_factory: Any = None, unguarded: bool = False) -> None:
        self.name = name
        self.wiring = wiring
        self.unguarded = unguarded
        pull_up = GPIOZERO_PULL.get(wiring.pull)
        try:
            self.device = DigitalInputDevice(
                pin, pull_up=pull_up, active_state=True if pull_up is None else None,
                pin_factory=pin_factory)
        except GPIOZeroError as exc:
            what = "loop" if name in ("arming", "safety") else "input"
            raise _device_error(f"{name} {what} on GPIO {pin}", exc) from None
        # gpiozero calls a pulled-up pin active when low, any other pin when high
        self._active_is_high = pull_up is not True

    def _on(self, gz_active: bool) -> bool:
        if self.unguarded:
            return gz_active
        return self.wiring.reads(gz_active == self._active_is_high)

    @property
    def on(self) -> bool:
        return self._on(bool(self.device.is_active))

    @property
    def occupied(self) -> bool:  # the loop face
        return self.on

    def start(self, on_change: OnChange) -> None:
        self.device.when_activated = lambda: on_change(self.name, self._on(True))
        self.device.when_deactivated = lambda: on_change(self.name, self._on(False))

    def close(self) -> None:
        self.device.close()


class GpioRelay:
    """One relay output, de-energised from the start."""

    def __init__(self, name: str, pin: int | str, *, active_high: bool = True,
                 pin_factory: Any = None) -> None:
        self.name = name
        try:
            self.device = OutputDevice(pin, active_high=active_high, initial_value=False,
                                       pin_factory=pin_factory)
        except GPIOZeroError as exc:
            raise _device_error(f"{name} relay on GPIO {pin}", exc) from None

    @property
    def energised(self) -> bool:
        return bool(self.device.value)

    def set(self, on: bool) -> None:
        (self.device.on if on else self.device.off)()

    def close(self) -> None:
        try:
            self.device.off()
        finally:
            self.device.close()


class GpioBarrier:
    """The barrier: an open relay pulsed for ``pulse_s``, and optionally a close relay.

    Its interlock (``guard``) is the last word on bringing the arm down, below the lane's
    decisions: a close is refused while ``safety_occupied()`` says a vehicle is under the
    arm, and ``safety_changed(True)`` while the arm may still be coming down (a close
    commanded less than ``travel_s`` ago, not followed by an open) reverses it at once.
    ``guard = False`` exists for one test that must see what the simulator does without it.
    """

    def __init__(self, open_relay: GpioRelay, close_relay: GpioRelay | None, *,
                 pulse_s: float, travel_s: float, safety_occupied: Callable[[], bool],
                 guard: bool = True) -> None:
        self.open_relay = open_relay
        self.close_relay = close_relay
        self.pulse_s = pulse_s
        self.travel_s = travel_s
        self.safety_occupied = safety_occupied
        self.guard = guard
        self.open_pulses = 0
        self.close_pulses = 0
        self.refused_closes = 0
        self.reversals = 0
        self._generation = 0
        self._closing_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def pulse_open(self) -> None:
        self.open_pulses += 1
        self._closing_until = 0.0
        await self._pulse(self.open_relay)

    async def close(self) -> None:
        if self.guard and self.safety_occupied():
            self.refused_closes += 1
            raise DeviceError("close refused: the safety loop is occupied")
        self.close_pulses += 1
        self._closing_until = _now() + self.pulse_s + self.travel_s
        if self.close_relay is None:
            return  # the barrier closes on its own timer
        await self._pulse(self.close_relay)

    def safety_changed(self, occupied: bool) -> bool:
        """The raw safety loop changed (called on the event loop, before debouncing).
        Returns whether the arm was reversed."""
        if not (self.guard and occupied and _now() < self._closing_until):
            return False
        self.reversals += 1
        task = asyncio.get_running_loop().create_task(self.pulse_open(), name="reverse")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _pulse(self, relay: GpioRelay) -> None:
        # One command at a time: a new one ends the pulse in progress first, so open and
        # close are never energised together, and a repeated open is a fresh edge.
        for other in (self.open_relay, self.close_relay):
            if other is not None and other.energised:
                other.set(False)
        self._generation += 1
        mine = self._generation
        relay.set(True)
        try:
            await asyncio.sleep(self.pulse_s)
        finally:
            if self._generation == mine:  # else a newer pulse owns the relays now
                relay.set(False)  # also when cancelled: never leave a relay energised

    def release(self) -> None:
        """De-energise everything and free the pins (on any exit)."""
        for task in list(self._tasks):
            task.cancel()
        for relay in (self.open_relay, self.close_relay):
            if relay is not None:
                relay.close()


def _now() -> float:
    return asyncio.get_running_loop().time()
