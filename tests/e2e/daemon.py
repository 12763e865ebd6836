"""Running the daemon as a separate process for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.plates.engine import REC_MODEL, packaged_model_dir
from gateway.plates.slim_model import prepare
from gateway.settings import embedded_default_text
from tests.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-secret-token"


def e2e_config(data_dir: Path, central_url: str, extra: str = "", spaces: int = 10, *,
               camera: str = "anpr", plates: bool = False) -> str:
    """``camera = "plain"``: the sim cameras give only frames (960x540, for the gate's own
    reader); ``plates``: the gate's reader on (off by default: its model costs every
    daemon start a second or two)."""
    # The simulated world runs 4x faster than real time; the lane's timings are the
    # world's divided by 4 (the arm travels 1 s of world time: 0.25 s).
    lane = """
[lanes.timings]
debounce_s = 0.01
arm_travel_s = 0.25
capture_timeout_s = 1.0
passage_timeout_s = 1.0
decision_timeout_s = 3.0
dropout_hold_s = 0.05
gap_hold_s = 0.3
duplicate_window_s = 0.5
[lanes.camera]
burst = 1
{camera_lines}
[lanes.indicators]
kind = "sim"
[lanes.arm_open_limit]
kind = "sim"
[lanes.arm_closed_limit]
kind = "sim"
"""
    camera_lines = 'mode = "plain"\nwidth = 960\nheight = 540' if camera == "plain" \
        else "width = 320\nheight = 240"
    lane = lane.replace("{camera_lines}", camera_lines)
    return f"""
[plates]
enabled = {"true" if plates else "false"}
[gate]
id = "e2e-gate"
data_dir = "{data_dir}"
[central]
base_urls = ["{central_url}"]
deadline_s = 0.5
reset_timeout_s = 1.0
[backup]
enabled = false
[web]
host = "127.0.0.1"
port = 0
[simulation]
enabled = true
time_scale = 4.0
reaction_s = 0.2
arm_travel_s = 1.0
patience_s = 4.8
stall_s = 4.0
[[zones]]
name = "A"
spaces = {spaces}
[[lanes]]
id = "entry-1"
direction = "entry"
{lane}
[[lanes]]
id = "exit-1"
direction = "exit"
{lane}
{extra}
"""


def seed_cut_model(config: Path) -> None:
    """The daemon's data directory as after its first start: the recogniser cut to plate
    characters in ``models/`` (a hard link to one cut made per machine, in the system's
    temporary directory), so that a test's reader does not spend seconds cutting it again
    in the background while the test drives cars (the demo test checks the first start)."""
    data = Path(tomllib.loads(config.read_text()).get("gate", {}).get(
        "data_dir", "/var/lib/parking-gateway"))
    shared = Path(tempfile.gettempdir()) / f"gateway-tests-models-{os.getuid()}"
    made = prepare(packaged_model_dir() / REC_MODEL, shared)
    assert made.slim, made.note
    target = data / "models" / made.path.name
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(made.path, target)
    except OSError:  # another file system
        shutil.copy2(made.path, target)


class Daemon:
    def __init__(self, config: Path, env: dict[str, str] | None = None, *,
                 cut_model: bool = True) -> None:
        self.config = config
        self.cut_model = cut_model  # False: the daemon's first start cuts it itself
        # PYTHONFAULTHANDLER: a daemon that does not stop is sent SIGABRT by stop(), and
        # prints every thread's stack for the failure's message
        self.env = {**os.environ, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONFAULTHANDLER": "1",
                    **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, within_s: float = 30.0) -> None:
        if self.cut_model:
            await asyncio.to_thread(seed_cut_model, self.config)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--config", str(self.config), cwd=ROOT,
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        found: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(found))
        self.url = await asyncio.wait_for(found, within_s)

    async def _read(self, found: asyncio.Future[str]) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            m = re.search(r"web on (http://\S+)", line)
            if m and not found.done():
                found.set_result(m.group(1))
        if not found.done():
            found.set_exception(RuntimeError("daemon exited:\n" + "\n".join(self.log[-30:])))

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.send_signal(signal.SIGABRT)
            await asyncio.wait_for(self.proc.wait(), 10)
            if self._reader is not None:
                await asyncio.wait_for(self._reader, 5)
            raise AssertionError("the daemon did not exit within 20 s of the signal; its "
                                 "last lines and stacks:\n" + "\n".join(self.log[-120:])) from None
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


async def until(check: Callable[[], Any], within_s: float = 10.0, what: str = "",
                every_s: float = 0.02) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; the daemon (or
    the broker, or another peer) is another process, so its state is the thing to wait on.
    ``what`` names the condition in the error."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {within_s}s")
        await asyncio.sleep(every_s)


async def get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        return await resp.json()


def demo_text(data_dir: Path, text: str | None = None) -> str:
    """The embedded demo configuration (or ``text``, a copy of it) with its data under
    ``data_dir`` and free ports: a demo that runs beside anything else."""
    text = embedded_default_text() if text is None else text
    for old, new in (('data_dir = "./data/demo"', f'data_dir = "{data_dir}"'),
                     ("port = 8080", "port = 0"),
                     ("http://127.0.0.1:9000", f"http://127.0.0.1:{free_port()}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def long_pulse_config(data_dir: Path, central_url: str) -> str:
    """``e2e_config`` with an open pulse far longer than a test: the open relay is still
    energised when the test stops or kills the daemon."""
    return e2e_config(data_dir, central_url).replace(
        "[lanes.camera]", "[lanes.barrier]\nkind = \"sim\"\npulse_s = 60.0\n[lanes.camera]")


def demo_config(tmp: Path, text: str | None = None) -> Path:
    """``demo_text`` written to ``tmp/demo.toml``, its data in ``tmp/data``."""
    config = tmp / "demo.toml"
    config.write_text(demo_text(tmp / "data", text))
    return config
