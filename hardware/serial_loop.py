"""Loop detectors that report over a serial line (RS-232/RS-485).

Line protocol (ASCII, one message per line, ``\\n`` or ``\\r\\n``):
    L<channel>=<0|1>     loop <channel> clear (0) or occupied (1), e.g. ``L1=1``
    HB                   heartbeat: the detector is alive
    F<channel>=<code>    the detector reports a fault on <channel>, e.g. ``F2=OPEN``
Anything else, or a line over 64 bytes, is garbage: counted and skipped.

The gateway writes one line to the detector, the status request ``?``. The detector (or
the firmware of its RS-485 adapter) answers it with one ``L<channel>=<0|1>`` line per
channel. The gateway asks when it opens the port, every ``silent_s`` while the port is
silent, and when the detector is heard again after a port problem. A detector that does
not answer ``?`` still works, but a channel then stays "unknown" (below) until its level
first changes.

What the gateway knows of a channel (``DetectorState``, no I/O): its level is *known* or
*unknown*. Every channel is unknown at start. A fault latches it unknown until the channel
reports a level again: an ``F<channel>=<code>`` line makes that channel unknown, and a port
problem (the port cannot be opened, is disconnected, or is silent for ``silent_s``) makes
every channel unknown, since their levels may have changed unseen. Only an
``L<channel>=<0|1>`` line for that channel makes it known again. A heartbeat, or a line for
another channel, proves the link, not the loop: it ends the port-level fault, never a
channel's.

Faults are reported per channel through ``SerialLoopPort.on_fault(channel, reason,
recovered)``; ``channel`` is None for the port as a whole (reported once when the problem
starts, and once when the detector is heard again). A channel fault is reported when the
channel becomes unknown (the detector's code, or "level unknown after <port problem>"), and
its recovery when it reports a level again. A channel unknown since start is reported only
if it has not reported a level ``silent_s`` after the port was opened, so that a detector
answering ``?`` raises no fault at start.

``SerialLoop`` is one loop on a channel: a safety loop (``fail_occupied``) whose channel is
unknown, or whose port is not connected, reads occupied; any other loop reads its last
known level (clear if it was never known).

``LoopLineParser`` does no I/O (``feed(bytes) -> readings``); ``SerialLoopPort`` reads the
port from the event loop (``add_reader`` on its file descriptor), writes the status request
without ever blocking (a full output buffer drops the request; a write error means the port
is broken), and reconnects with backoff after the port disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import serial

from gateway.core.errors import DeviceError

MAX_LINE = 64
STATUS_REQUEST = b"?\n"
_LINE = re.compile(rb"^(?:L(\d{1,2})=([01])|HB|F(\d{1,2})=([A-Z0-9_]{1,16}))$")


@dataclass(frozen=True, slots=True)
class LoopLevel:
    channel: int
    occupied: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class ChannelFault:
    channel: int
    code: str


Reading = LoopLevel | Heartbeat | ChannelFault


class LoopLineParser:
    def __init__(self) -> None:
        self._buf = b""
        self.garbage = 0
        self._discarding = False

    def feed(self, data: bytes) -> list[Reading]:
        self._buf += data
        out: list[Reading] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:  # a run-on line: drop it up to its end
                    self.garbage += 0 if self._discarding else 1
                    self._discarding = True
                    self._buf = b""
                return out
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            line = raw.strip()
            if self._discarding:
                self._discarding = False
                continue
            if not line and len(raw) <= MAX_LINE:
                continue
            # the length before stripping, as the run-on check above counts it: the same
            # bytes are garbage or not however the reads cut them
            m = _LINE.match(line) if len(raw) <= MAX_LINE else None
            if m is None:
                self.garbage += 1
            elif m.group(1):
                out.append(LoopLevel(int(m.group(1)), m.group(2) == b"1"))
            elif m.group(3):
                out.append(ChannelFault(int(m.group(3)), m.group(4).decode()))
            else:
                out.append(Heartbeat())


@dataclass(frozen=True, slots=True)
class FaultReport:
    channel: int | None  # None: the port (the link to the detector) as a whole
    reason: str
    recovered: bool


class DetectorState:
    """What is known of one detector's channels; no I/O, no clock (the rules are in the
    module docstring). Each method returns the fault reports its change calls for."""

    def __init__(self) -> None:
        self.levels: dict[int, bool] = {}  # the last level each channel reported
        self.known: set[int] = set()  # channels whose level is known now
        self.channel_faults: dict[int, str] = {}  # unknown channels reported faulty: why
        self.port_fault: str | None = None  # the port problem in progress, if any

    def level(self, channel: int) -> bool | None:
        """The channel's level, or None while it is unknown."""
        return self.levels.get(channel) if channel in self.known else None

    def reading(self, r: Reading) -> list[FaultReport]:
        out: list[FaultReport] = []
        if self.port_fault is not None:  # any reading proves the link (not a loop)
            out.append(FaultReport(None, f"{self.port_fault} (ended: the detector is heard "
                                         "again)", True))
            self.port_fault = None
        if isinstance(r, LoopLevel):
            self.levels[r.channel] = r.occupied
            self.known.add(r.channel)
            if self.channel_faults.pop(r.channel, None) is not None:
                out.append(FaultReport(r.channel, f"channel {r.channel}: level reported again",
                                       True))
        elif isinstance(r, ChannelFault):
            out += self._unknown(r.channel, f"detector fault on channel {r.channel}: {r.code}")
        return out

    def port_problem(self, reason: str, channels: Iterable[int]) -> list[FaultReport]:
        """The port cannot be opened, went away or is silent: every channel is unknown."""
        out: list[FaultReport] = []
        if self.port_fault is None:
            self.port_fault = reason
            out.append(FaultReport(None, reason, False))
        for ch in sorted({*channels, *self.levels}):
            out += self._unknown(ch, f"level unknown after {reason}")
        return out

    def unreported(self, reason: str, channels: Iterable[int]) -> list[FaultReport]:
        """Report the channels that are unknown (since start) but not yet reported."""
        out: list[FaultReport] = []
        for ch in sorted(set(channels) - self.known - set(self.channel_faults)):
            self.channel_faults[ch] = reason
            out.append(FaultReport(ch, reason, False))
        return out

    def _unknown(self, channel: int, reason: str) -> list[FaultReport]:
        self.known.discard(channel)
        if channel in self.channel_faults:
            return []  # latched already: the first reason stands
        self.channel_faults[channel] = reason
        return [FaultReport(channel, reason, False)]


FaultCallback = Callable[[int | None, str, bool], None]


class SerialLoopPort:
    """One serial port shared by the loops wired to it (by channel)."""

    def __init__(self, port: str, baudrate: int = 9600, *, silent_s: float = 10.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0) -> None:
        self.port = port
        self.baudrate = baudrate
        self.silent_s = silent_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.parser = LoopLineParser()
        self.state = DetectorState()
        self.listeners: dict[int, Callable[[bool], None]] = {}
        # on_fault(channel, reason, recovered); channel None: the port as a whole
        self.on_fault: FaultCallback = lambda channel, reason, recovered: None
        self.reconnects = 0
        self.connected = False
        self._serial: serial.Serial | None = None
        self._task: asyncio.Task[None] | None = None
        self._data = asyncio.Event()
        self._broken = asyncio.Event()
        self._grace: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"serial {self.port}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._close()

    @property
    def levels(self) -> dict[int, bool]:
        """The last level each channel reported (known or not: see ``known``)."""
        return self.state.levels

    def known(self, channel: int) -> bool:
        return self.connected and self.state.level(channel) is not None

    @property
    def port_fault(self) -> str | None:
        return self.state.port_fault

    def _report(self, reports: list[FaultReport]) -> None:
        for r in reports:
            self.on_fault(r.channel, r.reason, r.recovered)

    def _port_problem(self, reason: str) -> None:
        self._report(self.state.port_problem(reason, self.listeners))

    def _report_unknown(self) -> None:
        self._grace = None
        self._report(self.state.unreported(
            f"level not reported within {self.silent_s:g}s of opening serial port "
            f"{self.port} (does the detector answer the status request '?')",
            self.listeners))

    def _ask(self) -> None:
        """Write the status request. Never blocks: the port's descriptor is non-blocking
        (pyserial's own write with write_timeout=0 retries a full buffer forever)."""
        if self._serial is None:
            return
        try:
            os.write(self._serial.fileno(), STATUS_REQUEST)
        except BlockingIOError:
            return  # the output buffer is full: the next request will do
        except (OSError, ValueError, serial.SerialException):
            self._broken.set()  # the port vanished under us

    def _close(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._serial is not None:
            with contextlib.suppress(OSError, ValueError, RuntimeError, serial.SerialException):
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            with contextlib.suppress(OSError, serial.SerialException):
                self._serial.close()
            self._serial = None
        self.connected = False

    async def _run(self) -> None:
        delay = self.backoff_initial_s
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._serial = serial.Serial(self.port, self.baudrate, timeout=0)
                os.set_blocking(self._serial.fileno(), False)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._close()
                self._port_problem(f"serial port {self.port}: cannot open: {exc}")
                await asyncio.sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            self.connected = True
            self._broken = asyncio.Event()
            loop.add_reader(self._serial.fileno(), self._readable)
            self._grace = loop.call_later(self.silent_s, self._report_unknown)
            self._ask()
            try:
                while not self._broken.is_set():
                    self._data.clear()
                    waiter = asyncio.ensure_future(self._data.wait())
                    breaker = asyncio.ensure_future(self._broken.wait())
                    done, pending = await asyncio.wait(
                        {waiter, breaker}, timeout=self.silent_s,
                        return_when=asyncio.FIRST_COMPLETED)
                    for f in pending:
                        f.cancel()
                    if not done:
                        self._port_problem(f"serial port {self.port}: silent for "
                                           f"{self.silent_s:g}s")
                        self._ask()  # a detector that speaks only when asked answers this
            finally:
                self._close()
            self.reconnects += 1
            self._port_problem(f"serial port {self.port}: disconnected")
            delay = self.backoff_initial_s
            await asyncio.sleep(delay)

    def _readable(self) -> None:
        if self._serial is None:
            return
        try:
            data = self._serial.read(4096)
        except (serial.SerialException, OSError):
            self._broken.set()
            return
        if not data:
            self._broken.set()  # readable with no data: the other end went away
            return
        readings = self.parser.feed(data)
        if not readings:
            return  # nothing, or garbage only: proves nothing
        self._data.set()
        after_problem = self.state.port_fault is not None
        for r in readings:
            self._report(self.state.reading(r))
            if isinstance(r, LoopLevel):
                listener = self.listeners.get(r.channel)
                if listener is not None:
                    listener(r.occupied)
        if after_problem and not self.state.known >= set(self.listeners):
            self._ask()  # heard again after a problem: ask for the levels still unknown


class SerialLoop:
    """One loop on a ``SerialLoopPort`` channel, with the same face as a GPIO loop."""

    def __init__(self, name: str, port: SerialLoopPort, channel: int, *,
                 fail_occupied: bool = False) -> None:
        if channel in port.listeners:
            raise DeviceError(f"{name} loop: channel {channel} of {port.port} is already used")
        self.name = name
        self.port = port
        self.channel = channel
        self.fail_occupied = fail_occupied  # a safety loop we cannot trust reads occupied
        port.listeners[channel] = lambda occupied: None

    @property
    def known(self) -> bool:
        """The channel's level is known and the port is connected."""
        return self.port.known(self.channel)

    @property
    def fault(self) -> str | None:
        """Why the channel's level is unknown, once reported."""
        return self.port.state.channel_faults.get(self.channel)

    @property
    def occupied(self) -> bool:
        if self.fail_occupied and not self.known:
            return True
        return self.port.levels.get(self.channel, False)

    def start(self, on_change: Callable[[str, bool], None]) -> None:
        self.port.listeners[self.channel] = lambda occupied: on_change(self.name, occupied)

    def close(self) -> None:
        self.port.listeners.pop(self.channel, None)
