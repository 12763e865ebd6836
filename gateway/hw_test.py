"""``python -m gateway hw-test --config PATH``: the installer's check of a gate's devices.

For each lane: opens every device (reporting a wiring or configuration problem clearly),
shows the loops' levels and every change for ``--seconds`` (drive a car or a metal plate
over each loop meanwhile), grabs a camera shot and saves it next to the database, and with
``--pulse`` pulses the barrier's open relay, then its close relay (only while the safety
loop is clear), and the lane lights. Every relay is de-energised at the end, whatever
happens. Exit code 0 when every device answered, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TextIO

from gateway.core.errors import DeviceError
from gateway.settings import LaneSettings, Settings
from hardware.build import LaneDevices, build_lane_devices, rest_sim_inputs
from hardware.camera import capture
from hardware.serial_loop import SerialLoopPort
from hardware.sim import sim_factory


async def _lane(lane: LaneSettings, settings: Settings, seconds: float,
                pulse: bool, out: TextIO, ports: dict[str, SerialLoopPort],
                factory: object, on_watch: Callable[[], None]) -> bool:
    print(f"lane {lane.id} ({lane.direction})", file=out)
    try:
        devices: LaneDevices = build_lane_devices(lane, factory, ports)
    except DeviceError as exc:
        print(f"  FAULT {exc}", file=out)
        return False
    if devices.simulated:
        rest_sim_inputs(factory)  # nobody drives the mock pins here: a lane at rest
    ok = True
    loop = asyncio.get_running_loop()
    started = time.monotonic()

    def changed(name: str, occupied: bool) -> None:
        t = time.monotonic() - started
        line = f"  {t:7.3f}s {name} loop {'OCCUPIED' if occupied else 'clear'}"
        loop.call_soon_threadsafe(partial(print, line, file=out))

    def contact_changed(name: str, on: bool) -> None:
        t = time.monotonic() - started
        loop.call_soon_threadsafe(partial(print, f"  {t:7.3f}s {name} {'ON' if on else 'off'}",
                                          file=out))

    try:
        for port in ports.values():  # this lane's serial ports only
            port.on_fault = lambda channel, reason, recovered: print(
                f"  {'recovered' if recovered else 'FAULT'} "
                f"{'' if channel is None else f'channel {channel}: '}{reason}", file=out)
            port.start()
        for dev in (devices.arming, devices.safety):
            dev.start(changed)
            print(f"  {dev.name} loop now {'OCCUPIED' if dev.occupied else 'clear'}", file=out)
        for name, contact in devices.inputs.items():  # limit switches, vend, help, hold-open
            contact.start(contact_changed)
            print(f"  {name} now {'ON' if contact.on else 'off'}", file=out)
        if devices.camera is not None:
            devices.camera.start()
            try:
                shot = await asyncio.to_thread(capture, devices.camera, devices.capture)
            except DeviceError as exc:
                print(f"  FAULT camera: {exc}", file=out)
                ok = False
            else:
                path = settings.data_dir / f"hw-test-{lane.id}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(shot.jpeg)
                region = "found" if shot.cropped else "not found"
                print(f"  camera: {len(shot.jpeg)} byte JPEG saved to {path}; sharpness "
                      f"{shot.sharpness:.0f}; plate region {region}; reading "
                      f"{shot.plate or '-'}", file=out)
        else:
            print("  camera: none configured", file=out)
        if pulse:
            print(f"  pulsing the open relay for {devices.barrier.pulse_s:g}s", file=out)
            await devices.barrier.pulse_open()
            if devices.barrier.close_relay is not None:
                try:
                    await devices.barrier.close()
                    print("  pulsed the close relay", file=out)
                except DeviceError as exc:
                    print(f"  close not pulsed: {exc}", file=out)
            for name, relay in devices.indicators.items():
                relay.set(True)
                await asyncio.sleep(0.5)
                relay.set(False)
                print(f"  light {name} on for 0.5 s", file=out)
        if seconds > 0:
            print(f"  watching the loops for {seconds:g}s …", file=out)
            on_watch()
            await asyncio.sleep(seconds)
    finally:
        devices.release()
        for port in list(ports.values()):
            await port.stop()
        ports.clear()
    return ok


async def hw_test(settings: Settings, seconds: float, pulse: bool, out: TextIO, *,
                  factory: Any = None, on_watch: Callable[[], None] = lambda: None) -> int:
    if factory is None and settings.simulation.enabled:
        factory = sim_factory()
    results = []
    for lane in settings.lanes:
        ports: dict[str, SerialLoopPort] = {}
        results.append(await _lane(lane, settings, seconds, pulse, out, ports, factory,
                                   on_watch))
    if not settings.lanes:
        print("no lanes configured", file=out)
    print("all devices answered" if all(results) else "some devices did not answer", file=out)
    return 0 if all(results) else 1
