"""Loop sensors and relays on GPIO (gpiozero).

Wiring notes for installers:
- Relays start de-energised and are de-energised again on every exit. gpiozero leaves an
  output pin as a floating input when the process ends, so the relay driver needs a pull
  resistor that makes "floating" mean "not energised".
- A safety loop detector should be wired fail-safe (relay contact closed when the loop is
  clear): then a broken wire reads "occupied" and the barrier is never commanded down.
  Set ``active_high`` so that an open circuit reads as occupied.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, OutputDevice
from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError

from gateway.core.errors import DeviceError

OnChange = Callable[[str, bool], None]


def _device_error(what: str, exc: Exception) -> DeviceError:
    hint = ""
    if isinstance(exc, BadPinFactory):
        hint = (" (no GPIO here: not a Raspberry Pi, or the lgpio package is missing; "
                "use kind = \"sim\" with simulation.enabled to try the gateway without one)")
    elif isinstance(exc, GPIOPinInUse):
        hint = " (another device in the configuration, or another program, uses this pin)"
    return DeviceError(f"{what}: {type(exc).__name__}: {exc}{hint}")


class GpioLoop:
    """A loop detector's output on one GPIO input.

    ``mode = "presence"``: the output is active while a vehicle is over the loop.
    ``mode = "pulse"``: the detector gives a short pulse when a vehicle arrives and another
    when it leaves; each pulse toggles the occupancy this adapter reports.
    The callback runs in gpiozero's thread; the controller hands it to the event loop.
    """

    def __init__(self, name: str, pin: int | str, *, active_high: bool = True,
                 pull: str = "none", mode: str = "presence", pin_factory: Any = None) -> None:
        self.name = name
        self.mode = mode
        pull_up = {"up": True, "down": False, "none": None}[pull]
        try:
            self.device = DigitalInputDevice(
                pin, pull_up=pull_up, active_state=active_high if pull_up is None else None,
                pin_factory=pin_factory)
        except GPIOZeroError as exc:
            raise _device_error(f"{name} loop on GPIO {pin}", exc) from None
        self._pulse_state = False
        self._lock = threading.Lock()

    @property
    def occupied(self) -> bool:
        if self.mode == "pulse":
            return self._pulse_state
        return bool(self.device.is_active)

    def start(self, on_change: OnChange) -> None:
        if self.mode == "pulse":
            def pulse() -> None:
                with self._lock:
                    self._pulse_state = not self._pulse_state
                    state = self._pulse_state
                on_change(self.name, state)
            self.device.when_activated = pulse
        else:
            self.device.when_activated = lambda: on_change(self.name, True)
            self.device.when_deactivated = lambda: on_change(self.name, False)

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

    A close is refused while ``safety_occupied()`` says a vehicle is under the arm: this is
    enforced here, at the device, not only in the lane state machine."""

    def __init__(self, open_relay: GpioRelay, close_relay: GpioRelay | None, *,
                 pulse_s: float, safety_occupied: Callable[[], bool]) -> None:
        self.open_relay = open_relay
        self.close_relay = close_relay
        self.pulse_s = pulse_s
        self.safety_occupied = safety_occupied
        self.open_pulses = 0
        self.close_pulses = 0
        self.refused_closes = 0
        self._generation = 0

    async def pulse_open(self) -> None:
        self.open_pulses += 1
        await self._pulse(self.open_relay)

    async def close(self) -> None:
        if self.close_relay is None:
            return  # the barrier closes on its own timer
        if self.safety_occupied():
            self.refused_closes += 1
            raise DeviceError("close refused: the safety loop is occupied")
        self.close_pulses += 1
        await self._pulse(self.close_relay)

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
        for relay in (self.open_relay, self.close_relay):
            if relay is not None:
                relay.close()
