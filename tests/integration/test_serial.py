"""A serial loop detector on a pseudo-terminal: readings, faults, heartbeats, silence,
unplug and replug (the port path is a link that is pointed at a new terminal, as udev does),
and the status request ``?`` the gateway writes (read back on the master end).

The loops' faults go through ``Gateway._serial_fault`` to a lane's loop-fault bookkeeping
(keyed by loop name, as ``LaneController.loop_fault`` is)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from types import SimpleNamespace

from gateway.app import Gateway
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


class Detector:
    """The detector at the far end of a pseudo-terminal. It reads what the gateway writes
    (``heard``, ``requests``: the ``?`` lines) and, with ``answers``, answers ``?`` with
    one ``L<ch>=<0|1>`` line per channel, as the protocol asks of a detector."""

    def __init__(self, link: Path, levels: dict[int, bool] | None = None, *,
                 answers: bool = False) -> None:
        self.pty = Pty(link)
        os.set_blocking(self.pty.master, False)
        self.levels = dict(levels or {})
        self.answers = answers
        self.heard = b""
        self.requests = 0
        self._task = asyncio.get_running_loop().create_task(self._listen())

    def send(self, data: bytes) -> None:
        self.pty.write(data)

    async def _listen(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self.pty.master, 1024)
            except OSError:  # nothing to read, or nobody has the terminal open (EIO)
                data = b""
            if not data:
                await asyncio.sleep(0.01)
                continue
            self.heard += data
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip() == b"?":
                    self.requests += 1
                    if self.answers:
                        self.send(b"".join(f"L{ch}={int(occ)}\n".encode()
                                           for ch, occ in sorted(self.levels.items())))

    async def unplug(self) -> None:
        if self._task.done():
            return  # unplugged already
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.pty.unplug()


class LaneStub:
    """A lane's loop-fault bookkeeping, as the lane machine keeps it (``_loop_fault`` in
    gateway/core/lane.py): keyed by loop name, the first reason stands while the loop is
    faulty, and a recovery of a loop that is not faulty is ignored."""

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}

    def loop_fault(self, loop: str, reason: str, recovered: bool) -> None:
        if recovered:
            self.faults.pop(loop, None)
        else:
            self.faults.setdefault(loop, reason)


class Rig:
    """One port, an arming loop on channel 1 and a safety loop on channel 2, one lane."""

    def __init__(self, link: Path, silent_s: float = 5.0) -> None:
        self.port = SerialLoopPort(str(link), silent_s=silent_s, backoff_initial_s=0.05,
                                   backoff_max_s=0.1)
        self.arming = SerialLoop("arming", self.port, 1)
        self.safety = SerialLoop("safety", self.port, 2, fail_occupied=True)
        self.changes: list[tuple[str, bool]] = []
        self.arming.start(lambda name, occ: self.changes.append((name, occ)))
        self.safety.start(lambda name, occ: self.changes.append((name, occ)))
        self.lane = LaneStub()
        gateway = SimpleNamespace(
            devices={"exit-1": SimpleNamespace(arming=self.arming, safety=self.safety)},
            lanes={"exit-1": self.lane})
        to_lane = Gateway._serial_fault(gateway, self.port)
        self.reports: list[tuple[int | None, str, bool]] = []

        def on_fault(channel: int | None, reason: str, recovered: bool) -> None:
            self.reports.append((channel, reason, recovered))
            to_lane(channel, reason, recovered)
        self.port.on_fault = on_fault

    async def start(self, det: Detector) -> None:
        """Start the port; return once it is open and has asked the detector for its
        levels (bytes written to the terminal before the port opens are flushed)."""
        self.port.start()
        await wait_for(lambda: self.port.connected and det.requests >= 1)

    def reported(self, channel: int | None, *, recovered: bool = False) -> list[str]:
        return [r for ch, r, rec in self.reports if ch == channel and rec is recovered]


async def wait_for(cond, within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_a_safety_fault_latches_through_heartbeats_until_the_loop_reports(tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link)
    rig = Rig(link)
    try:
        await rig.start(det)
        det.send(b"L1=0\nL2=0\n")  # the safety loop reports clear
        await wait_for(lambda: rig.safety.known and rig.arming.known)
        assert not rig.safety.occupied and rig.lane.faults == {}
        det.send(b"F2=OPEN\n")  # the detector: the safety loop is faulty
        await wait_for(lambda: "safety" in rig.lane.faults)
        assert rig.safety.occupied
        assert rig.reported(2) == ["detector fault on channel 2: OPEN"]
        assert rig.lane.faults == {"safety": "detector fault on channel 2: OPEN"}
        # heartbeats (and a line for the other channel) prove the link, not the loop
        det.send(b"HB\nHB\nL1=1\n")
        await wait_for(lambda: rig.changes[-1] == ("arming", True))
        assert rig.safety.occupied and not rig.safety.known
        assert "safety" in rig.lane.faults and rig.reported(2, recovered=True) == []
        # the loop reports a level again: known, clear, recovered
        det.send(b"L2=0\n")
        await wait_for(lambda: "safety" not in rig.lane.faults)
        assert not rig.safety.occupied and rig.safety.known
        assert rig.reports[-1][0] == 2 and rig.reports[-1][2] is True
        assert rig.lane.faults == {}
    finally:
        await rig.port.stop()
        await det.unplug()


async def test_one_channel_fault_is_not_the_other_loops_fault(tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link)
    rig = Rig(link)
    try:
        await rig.start(det)
        det.send(b"L1=0\nL2=0\n")
        await wait_for(lambda: rig.safety.known and rig.arming.known)
        # an arming fault: the arming loop is faulty (and reads clear), the safety loop is not
        det.send(b"F1=SHORT\n")
        await wait_for(lambda: "arming" in rig.lane.faults)
        assert "safety" not in rig.lane.faults
        assert not rig.arming.occupied and not rig.arming.known
        assert rig.safety.known and not rig.safety.occupied
        # and the other way round, with both faulty for a while
        det.send(b"F2=OPEN\n")
        await wait_for(lambda: "safety" in rig.lane.faults)
        det.send(b"L1=0\n")  # the arming loop's recovery does not clear the safety loop
        await wait_for(lambda: "arming" not in rig.lane.faults)
        assert rig.lane.faults == {"safety": "detector fault on channel 2: OPEN"}
        assert rig.safety.occupied
        det.send(b"L2=1\nL2=0\n")
        await wait_for(lambda: rig.lane.faults == {} and rig.changes[-1] == ("safety", False))
        assert not rig.safety.occupied
    finally:
        await rig.port.stop()
        await det.unplug()


async def test_after_unplug_and_replug_the_safety_loop_is_occupied_until_it_reports(tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link)
    rig = Rig(link)
    try:
        await rig.start(det)
        det.send(b"L1=0\nL2=0\n")
        await wait_for(lambda: rig.safety.known and rig.arming.known)
        await det.unplug()
        await wait_for(lambda: any("disconnected" in r for r in rig.reported(None)))
        assert rig.safety.occupied and not rig.port.connected
        assert set(rig.lane.faults) == {"arming", "safety"}
        assert "level unknown after" in rig.lane.faults["safety"]
        assert "disconnected" in rig.lane.faults["safety"]
        det = Detector(link)  # replugged; this detector does not answer "?"
        await wait_for(lambda: rig.port.connected and rig.port.reconnects >= 1)
        await wait_for(lambda: det.requests >= 1)  # the gateway asked for the levels
        det.send(b"HB\nHB\n")
        await wait_for(lambda: rig.port.port_fault is None)  # the link is back ...
        assert rig.reported(None, recovered=True)
        det.send(b"HB\n")
        await asyncio.sleep(0.1)
        assert rig.safety.occupied  # ... but not the loops
        assert set(rig.lane.faults) == {"arming", "safety"}
        det.send(b"L2=0\n")
        await wait_for(lambda: "safety" not in rig.lane.faults)
        assert not rig.safety.occupied and "arming" in rig.lane.faults
        det.send(b"L1=0\n")
        await wait_for(lambda: rig.lane.faults == {})
    finally:
        await rig.port.stop()
        await det.unplug()


async def test_silence_then_a_heartbeat_ends_the_port_fault_not_the_channels(tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link)
    rig = Rig(link, silent_s=0.3)
    try:
        await rig.start(det)
        det.send(b"L1=0\nL2=0\n")
        await wait_for(lambda: rig.safety.known and rig.arming.known)
        asked = det.requests
        await wait_for(lambda: any("silent" in r for r in rig.reported(None)))
        assert rig.safety.occupied and set(rig.lane.faults) == {"arming", "safety"}
        assert "silent for 0.3s" in rig.lane.faults["safety"]
        await wait_for(lambda: det.requests > asked)  # a silent detector is asked again
        det.send(b"garbage\n")  # garbage proves nothing
        await asyncio.sleep(0.05)
        assert rig.port.port_fault is not None
        asked = det.requests
        det.send(b"HB\n")
        await wait_for(lambda: rig.port.port_fault is None)
        assert rig.reported(None, recovered=True) and len(rig.reported(None)) == 1
        assert rig.safety.occupied and set(rig.lane.faults) == {"arming", "safety"}
        await wait_for(lambda: det.requests > asked)  # heard again: asked for the levels
        det.send(b"L2=0\nL1=1\n")
        await wait_for(lambda: rig.lane.faults == {})
        assert not rig.safety.occupied and rig.arming.occupied
    finally:
        await rig.port.stop()
        await det.unplug()


async def test_at_start_the_gateway_asks_and_an_answering_detector_makes_the_loops_known(
        tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link, {1: True, 2: False}, answers=True)
    rig = Rig(link)
    assert rig.safety.occupied and not rig.arming.occupied  # unknown at start
    rig.port.start()
    try:
        await wait_for(lambda: rig.safety.known and rig.arming.known)
        assert det.heard.startswith(b"?\n") and det.requests == 1
        assert rig.arming.occupied and not rig.safety.occupied
        assert rig.changes == [("arming", True), ("safety", False)]
        assert rig.reports == [] and rig.lane.faults == {}  # no fault at a normal start
    finally:
        await rig.port.stop()
        await det.unplug()


async def test_a_detector_that_does_not_answer_leaves_its_loops_faulty_until_they_change(
        tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link)
    rig = Rig(link, silent_s=0.3)
    rig.port.start()

    async def heartbeats() -> None:
        while True:
            det.send(b"HB\n")
            await asyncio.sleep(0.05)
    beating = asyncio.create_task(heartbeats())
    try:
        await wait_for(lambda: set(rig.lane.faults) == {"arming", "safety"})
        assert "does the detector answer the status request '?'" in rig.lane.faults["arming"]
        assert rig.reported(None) == []  # the link is fine
        det.send(b"L1=1\n")  # the first change makes that loop known
        await wait_for(lambda: "arming" not in rig.lane.faults)
        assert rig.arming.occupied and rig.safety.occupied and "safety" in rig.lane.faults
    finally:
        beating.cancel()
        await rig.port.stop()
        await det.unplug()


async def test_garbage_is_counted_and_skipped(tmp_path):
    link = tmp_path / "ttyLOOP"
    det = Detector(link)
    rig = Rig(link)
    try:
        await rig.start(det)
        det.send(b"noise!\nL1=1\n\xff\xfe\r\nL2=7\nF2=\nL2=0\n")
        await wait_for(lambda: rig.changes == [("arming", True), ("safety", False)])
        assert rig.port.parser.garbage == 4
        assert rig.arming.occupied and not rig.safety.occupied and rig.reports == []
    finally:
        await rig.port.stop()
        await det.unplug()


async def test_a_port_that_does_not_exist_is_a_fault_not_a_crash(tmp_path):
    rig = Rig(tmp_path / "ttyNOPE")
    rig.port.start()
    try:
        await wait_for(lambda: len(rig.reports) == 3)
        await asyncio.sleep(0.3)  # several attempts to open it: still one report each
        assert len(rig.reported(None)) == 1 and "ttyNOPE" in rig.reported(None)[0]
        assert "cannot open" in rig.reported(None)[0] and not rig.port.connected
        assert set(rig.lane.faults) == {"arming", "safety"}
        assert rig.lane.faults["safety"].startswith("level unknown after serial port")
        assert rig.safety.occupied and not rig.arming.occupied
        assert len(rig.reports) == 3
    finally:
        await rig.port.stop()
