"""``parking-gateway status``: the operator's page in a terminal, from the local web API.

It asks the running daemon (``GET /api/status``, ``GET /api/vehicles?limit=10``) rather
than reading the database, so it shows what the daemon itself knows (breakers, links,
faults) and needs no access to the data directory. ``render`` is pure: the same two JSON
documents always print the same text, so the layout is tested without a daemon.

Exit codes: 0 healthy, 1 needs attention (the daemon answers and reports problems),
2 the daemon cannot be reached (or answers with something that is not its status).
Colour only on a terminal, and never with ``NO_COLOR`` set. Everything that came from
outside (plates, reasons, service errors) is printed through ``safe``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from gateway.ops.text import safe

EXIT_HEALTHY, EXIT_ATTENTION, EXIT_UNREACHABLE = 0, 1, 2
Json = dict[str, Any]


@dataclass(frozen=True)
class Style:
    colour: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def warn(self, text: str) -> str:
        return self._wrap("33", text)

    def bad(self, text: str) -> str:
        return self._wrap("1;31", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def _word(style: Style, state: str, text: str) -> str:
    """A service's words coloured by its state: online green, slow/paused yellow,
    offline red, disabled plain."""
    if state == "online":
        return style.good(text)
    if state in ("slow", "paused"):
        return style.warn(text)
    if state == "offline":
        return style.bad(text)
    return text


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s" if minutes else f"{s}s"


def _head(status: Json, style: Style) -> list[str]:
    synced = status.get("wall_synced")
    clock = "" if synced is None else (" (clock synchronised)" if synced
                                       else " " + style.warn("(clock NOT synchronised)"))
    said = (status.get("clock") or {}).get("summary")
    if said and not synced:  # the daemon's own words: what to check
        clock = " " + style.warn(f"(clock {safe(said, 200)})")
    lines = [f"gate {safe(status.get('gate_id', '?'))}  version "
             f"{safe(status.get('version', '?'))}  up "
             f"{_duration(float(status.get('uptime_s') or 0))}  "
             f"{safe(status.get('time', ''))}{clock}"]
    problems = status.get("problems") or []
    if status.get("healthy"):
        lines.append(style.good("HEALTHY"))
    else:
        lines.append(style.bad("NEEDS ATTENTION") + f" ({len(problems)} problem(s))")
        lines += [f"  - {safe(p, 300)}" for p in problems]
    return lines


def _services(status: Json, style: Style) -> list[str]:
    lines = ["", "Services"]
    services = status.get("services") or {}
    for name in ("central", "backup", "mqtt"):
        svc = services.get(name) or {}
        state = str(svc.get("state") or "")
        summary = svc.get("summary") or (f"circuit {svc['circuit']}" if "circuit" in svc
                                         else "connected" if svc.get("connected") else "?")
        line = f"  {name:<14}{_word(style, state, safe(summary))}"
        if svc.get("last_error") and state != "online":
            line += style.dim(f"  (last error: {safe(svc['last_error'], 120)})")
        lines.append(line)
    outbox = status.get("outbox") or {}
    lines.append(f"  {'outbox':<14}"
                 f"{safe(outbox.get('summary') or str(outbox.get('pending', 0)) + ' pending')}")
    storage = status.get("storage") or {}
    if storage.get("summary"):
        problem = storage.get("problem")
        lines.append(f"  {'storage':<14}{safe(storage['summary'])}"
                     + (f": {style.bad(safe(problem, 300))}" if problem else ""))
    queue = status.get("offline_queue") or {}
    words = f"{queue.get('pending', 0)} waiting, {queue.get('dead', 0)} refused"
    advice = queue.get("advice") or ""
    lines.append(f"  {'offline queue':<14}{words}"
                 + (f": {style.warn(safe(advice, 300))}" if advice else ""))
    return lines


def _occupancy(status: Json, style: Style) -> list[str]:
    occ = status.get("occupancy") or {}
    free, total = occ.get("free", 0), occ.get("total", 0)
    head = f"{free} free of {total}"
    lines = ["", f"Occupancy  {style.bad(head) if total and not free else head}  "
             f"({occ.get('allocated', 0)} taken, {occ.get('out_of_service', 0)} out of service)"]
    for zone in occ.get("zones") or []:
        full = "  " + style.bad("FULL") if zone.get("full") else ""
        lines.append(f"  zone {safe(zone.get('zone', '?')):<6}{zone.get('free', 0):>4} free of "
                     f"{zone.get('total', 0):<4}{full}")
    return lines


def _lane(lane: Json, style: Style) -> list[str]:
    state = str(lane.get("state", "?"))
    shown = style.bad(state) if state == "fault" else state
    mode = lane.get("mode") or "normal"
    line = (f"  {safe(lane.get('id', '?')):<10}{safe(lane.get('direction', '')):<7}{shown:<10}"
            f"barrier {safe(lane.get('barrier', '?'))}"
            + ("" if mode == "normal" else "  " + style.warn(f"mode {safe(mode)}")))
    vehicle = lane.get("vehicle")
    if vehicle:
        line += f"  now: {safe(vehicle.get('license_plate') or '(unread)')}"
    lines = [line]
    last = lane.get("last") or {}
    if last.get("saga_id"):
        stages = last.get("stages_ms") or {}
        took = f", {stages['total']:.0f} ms to open" if stages.get("total") else ""
        lines.append(f"{'':12}last: {safe(last.get('license_plate') or '(unread)')} "
                     f"{safe(last.get('status', ''))}"
                     + (f" ({safe(last['reason'], 120)})" if last.get("reason")
                        and last.get("status") != "completed" else "")
                     + (f", decided by {safe(last['source'])}" if last.get("source") else "")
                     + took)
    fixes = lane.get("fault_fixes") or {}
    for device, why in (lane.get("faults") or {}).items():
        lines.append(f"{'':12}{style.bad('fault')} {safe(device)}: {safe(why, 200)}")
        if fixes.get(device):
            lines.append(f"{'':14}fix: {safe(fixes[device], 300)}")
    return lines


def _clock(value: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%m-%d %H:%M:%S")
    except ValueError:
        return safe(value, 19)


def _vehicles(vehicles: list[Json], style: Style) -> list[str]:
    lines = ["", "Last vehicles" if vehicles else "Last vehicles: none yet"]
    for v in vehicles:
        outcome = safe(v.get("outcome") or v.get("status") or "", 60)
        if v.get("status") not in ("completed", "running", "compensating"):
            outcome = style.warn(outcome)
        ms = v.get("duration_ms")
        lines.append(f"  {_clock(str(v.get('created_at', '')))}  {safe(v.get('lane_id', '')):<10}"
                     f"{safe(v.get('license_plate') or '(unread)', 16):<12}"
                     f"{safe(v.get('source') or '-', 10):<9}"
                     f"{'' if ms is None else f'{ms:.0f} ms':>9}  {outcome}")
    return lines


def render(status: Json, vehicles: list[Json], colour: bool = False) -> str:
    """The operator's summary: health and problems, services in words, occupancy by zone,
    each lane (state, faults with their fixes, last vehicle), the last vehicles."""
    style = Style(colour)
    lines = _head(status, style) + _services(status, style) + _occupancy(status, style)
    lines += ["", "Lanes"]
    for lane in status.get("lanes") or []:
        lines += _lane(lane, style)
    return "\n".join(lines + _vehicles(vehicles, style)) + "\n"


def exit_code(status: Json) -> int:
    return EXIT_HEALTHY if status.get("healthy") is True else EXIT_ATTENTION


class Unreachable(Exception):
    """The daemon did not answer with its status."""


def _get(url: str, timeout_s: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read(8 * 1024 * 1024))
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{url}: {reason}") from None
    except ValueError as exc:  # not JSON
        raise Unreachable(f"{url}: not a JSON reply ({exc})") from None


def fetch(base_url: str, timeout_s: float = 5.0) -> tuple[Json, list[Json]]:
    base = base_url.rstrip("/")
    status = _get(f"{base}/api/status", timeout_s)
    if not isinstance(status, dict) or "lanes" not in status:
        raise Unreachable(f"{base}/api/status: not a gateway's status")
    try:
        listing = _get(f"{base}/api/vehicles?limit=10", timeout_s)
        vehicles = listing.get("vehicles", []) if isinstance(listing, dict) else []
    except Unreachable:
        vehicles = []  # an older daemon without the list: the status is what matters
    return status, [v for v in vehicles if isinstance(v, dict)]


def base_url(host: str, port: int) -> str:
    """The daemon's own address as the configuration gives it (a wildcard bind is asked
    on loopback)."""
    if host in ("", "0.0.0.0", "::"):  # a wildcard bind address
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(url: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         colour: bool | None = None) -> int:
    try:
        status, vehicles = fetch(url)
    except Unreachable as exc:
        print(f"the gateway daemon cannot be reached: {safe(exc, 300)}\n"
              "Is it running? (systemctl status parking-gateway; --url or --config to ask "
              "another address)", file=err)
        return EXIT_UNREACHABLE
    if colour is None:
        colour = out.isatty() and not os.environ.get("NO_COLOR")
    out.write(render(status, vehicles, colour))
    return exit_code(status)
