"""Loop detectors that report over a serial line (RS-232/RS-485).

Line protocol (ASCII, one message per line, ``\\n`` or ``\\r\\n``):
    L<channel>=<0|1>     loop <channel> clear (0) or occupied (1), e.g. ``L1=1``
    HB                   heartbeat: the detector is alive
    F<channel>=<code>    the detector reports a fault on <channel>, e.g. ``F2=OPEN``
Anything else, or a line over 64 bytes, is garbage: counted and skipped.

``LoopLineParser`` does no I/O (``feed(bytes) -> readings``); ``SerialLoopPort`` reads the
port from the event loop (``add_reader`` on its file descriptor), reconnects with backoff
after the port disappears, and reports a port that stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import serial

from gateway.core.errors import DeviceError

MAX_LINE = 64
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
            line, self._buf = self._buf[:nl].rstrip(b"\r").strip(), self._buf[nl + 1:]
            if self._discarding:
                self._discarding = False
                continue
            if not line:
                continue
            m = _LINE.match(line) if len(line) <= MAX_LINE else None
            if m is None:
                self.garbage += 1
            elif m.group(1):
                out.append(LoopLevel(int(m.group(1)), m.group(2) == b"1"))
            elif m.group(3):
                out.append(ChannelFault(int(m.group(3)), m.group(4).decode()))
            else:
                out.append(Heartbeat())


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
        self.levels: dict[int, bool] = {}
        self.listeners: dict[int, Callable[[bool], None]] = {}
        self.on_fault: Callable[[str, bool], None] = lambda reason, recovered: None
        self.reconnects = 0
        self.connected = False
        self._serial: serial.Serial | None = None
        self._task: asyncio.Task[None] | None = None
        self._data = asyncio.Event()
        self._faulty = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"serial {self.port}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._close()

    @property
    def faulty(self) -> bool:
        return self._faulty

    def _fault(self, reason: str) -> None:
        if not self._faulty:
            self._faulty = True
            self.on_fault(reason, False)

    def _recovered(self) -> None:
        if self._faulty:
            self._faulty = False
            self.on_fault("", True)

    def _close(self) -> None:
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
            except (serial.SerialException, OSError) as exc:
                self._fault(f"serial port {self.port}: {exc}")
                await asyncio.sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            self.connected = True
            broken = asyncio.Event()
            loop.add_reader(self._serial.fileno(), self._readable, broken)
            try:
                while not broken.is_set():
                    self._data.clear()
                    waiter = asyncio.ensure_future(self._data.wait())
                    breaker = asyncio.ensure_future(broken.wait())
                    done, pending = await asyncio.wait(
                        {waiter, breaker}, timeout=self.silent_s,
                        return_when=asyncio.FIRST_COMPLETED)
                    for f in pending:
                        f.cancel()
                    if not done:
                        self._fault(f"serial port {self.port}: silent for {self.silent_s:g}s")
            finally:
                self._close()
            self.reconnects += 1
            self._fault(f"serial port {self.port}: disconnected")
            delay = self.backoff_initial_s
            await asyncio.sleep(delay)

    def _readable(self, broken: asyncio.Event) -> None:
        assert self._serial is not None
        try:
            data = self._serial.read(4096)
        except (serial.SerialException, OSError):
            broken.set()
            return
        if not data:
            broken.set()  # readable with no data: the other end went away
            return
        readings = self.parser.feed(data)
        if readings:
            self._data.set()
            self._recovered()
        for r in readings:
            if isinstance(r, LoopLevel):
                self.levels[r.channel] = r.occupied
                listener = self.listeners.get(r.channel)
                if listener is not None:
                    listener(r.occupied)
            elif isinstance(r, ChannelFault):
                self._fault(f"detector fault on channel {r.channel}: {r.code}")


class SerialLoop:
    """One loop on a ``SerialLoopPort`` channel, with the same face as ``GpioLoop``."""

    def __init__(self, name: str, port: SerialLoopPort, channel: int, *,
                 fail_occupied: bool = False) -> None:
        if channel in port.listeners:
            raise DeviceError(f"{name} loop: channel {channel} of {port.port} is already used")
        self.name = name
        self.port = port
        self.channel = channel
        self.fail_occupied = fail_occupied  # a safety loop we cannot hear reads occupied
        port.listeners[channel] = lambda occupied: None

    @property
    def occupied(self) -> bool:
        if self.fail_occupied and (not self.port.connected or self.port.faulty):
            return True
        return self.port.levels.get(self.channel, False)

    def start(self, on_change: Callable[[str, bool], None]) -> None:
        self.port.listeners[self.channel] = lambda occupied: on_change(self.name, occupied)

    def close(self) -> None:
        self.port.listeners.pop(self.channel, None)
