"""A serial loop detector on a pseudo-terminal: readings, garbage, silence, unplug and
replug (the port path is a link that is pointed at a new terminal, as udev does)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from hardware.serial_loop import SerialLoop, SerialLoopPort


class Pty:
    def __init__(self, link: Path) -> None:
        self.master, slave = os.openpty()
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(self.slave_name)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)


async def wait_for(cond, within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_readings_garbage_silence_unplug_and_replug(tmp_path):
    link = tmp_path / "ttyLOOP"
    pty = Pty(link)
    port = SerialLoopPort(str(link), silent_s=0.3, backoff_initial_s=0.05,
                          backoff_max_s=0.1)
    faults: list[tuple[str, bool]] = []
    port.on_fault = lambda reason, recovered: faults.append((reason, recovered))
    arming = SerialLoop("arming", port, 1)
    safety = SerialLoop("safety", port, 2, fail_occupied=True)
    changes: list[tuple[str, bool]] = []
    arming.start(lambda name, occ: changes.append((name, occ)))
    safety.start(lambda name, occ: changes.append((name, occ)))
    port.start()
    try:
        await wait_for(lambda: port.connected)
        pty.write(b"L1=1\nnoise!\nL2=1\nL2=0\n")
        await wait_for(lambda: len(changes) == 3)
        assert changes == [("arming", True), ("safety", True), ("safety", False)]
        assert port.parser.garbage == 1
        assert arming.occupied and not safety.occupied
        # silence is a fault; a heartbeat clears it
        await wait_for(lambda: any("silent" in r for r, rec in faults if not rec))
        assert safety.occupied  # a safety loop that cannot be heard reads occupied
        pty.write(b"HB\n")
        await wait_for(lambda: faults[-1][1] is True)
        # unplug: a fault, then reconnect attempts; replug: readings again
        pty.unplug()
        await wait_for(lambda: any("disconnected" in r for r, rec in faults if not rec))
        assert safety.occupied
        pty2 = Pty(link)
        await wait_for(lambda: port.connected and port.reconnects >= 1)
        pty2.write(b"L1=0\n")
        await wait_for(lambda: changes[-1] == ("arming", False))
        assert faults[-1][1] is True
        pty2.unplug()
    finally:
        await port.stop()


async def test_a_port_that_does_not_exist_is_a_fault_not_a_crash(tmp_path):
    port = SerialLoopPort(str(tmp_path / "ttyNOPE"), backoff_initial_s=0.05)
    faults: list[str] = []
    port.on_fault = lambda reason, recovered: faults.append(reason)
    port.start()
    try:
        await wait_for(lambda: bool(faults))
        assert "ttyNOPE" in faults[0] and not port.connected
    finally:
        await port.stop()
