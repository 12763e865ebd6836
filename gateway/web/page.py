"""The operator's page: a first paint rendered here (the gate, its lanes with their drawings,
the simulation's switches), then ``static/page.js`` keeps it live over the event stream.

Every text from outside (the gate and lane ids come from the configuration) is escaped
with ``html.escape``; the script sets texts with ``textContent`` only. There is no inline
script, no ``<style>`` and no ``style=""``: the Content-Security-Policy allows files
from 'self' only. The static files are read once from ``static/`` and served by name from
that table (a name that is not a file there is a 404, so no path can leave the folder);
the page links them as ``/static/page.js?v=<content hash>``, cached for a year with that
version and revalidated by ETag without it, so a new release is fetched at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.sim.backup import BACKUP_MODES
from gateway.sim.faults import MODES as CENTRAL_MODES
from gateway.sim.physics import BEHAVIOURS
from gateway.web.http import GATEWAY

if TYPE_CHECKING:
    from gateway.app import Gateway

STATIC_DIR = Path(__file__).with_name("static")
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon"}
YEAR = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # the first 12 hex digits of the content's SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def load_assets(folder: Path = STATIC_DIR) -> dict[str, Asset]:
    """The files directly in ``folder`` whose type the page serves, by name."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in TYPES:
            body = path.read_bytes()
            assets[path.name] = Asset(body, TYPES[path.suffix],
                                      hashlib.sha256(body).hexdigest()[:12])
    return assets


ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("page_assets", dict)

# what each simulated fault does, in a few words for the switches
CENTRAL_WORDS = {"ok": "answers", "refuse": "refuses connections",
                 "blackhole": "never answers", "error500": "answers 500",
                 "garbage": "answers garbage", "oversized": "answers far too much",
                 "slow": "answers late", "commit_no_reply": "does it, never answers",
                 "flapping": "comes and goes"}
BACKUP_WORDS = {"ok": "answers", "blackhole": "never answers", "error": "answers an error",
                "garbage": "answers garbage", "oversized": "answers far too much",
                "slow": "answers late", "duplicate": "answers twice",
                "forge_correlation": "answers another request",
                "forge_plate": "answers about another plate"}
BEHAVIOUR_WORDS = {"pass": "drives through", "back_out": "backs out",
                   "stall": "stops on the loop", "tailgate": "a second car follows",
                   "trailer": "with a trailer", "motorbike": "motorbike",
                   "reverse": "reverses from the arm", "bumper": "bumper to bumper",
                   "stall_under_arm": "stops under the arm"}

# the arm turns about (118, 32) up to 70 degrees, so the drawing reaches up to y = -62
ARM_SVG = """<svg class="drawing" viewBox="0 -62 240 172" role="img" aria-label="{label}">
<rect class="road" x="0" y="72" width="240" height="30" rx="3"/>
<rect class="loop loop-arming" data-loop="arming" x="{ax}" y="77" width="64" height="20" rx="4"/>
<rect class="loop loop-safety" data-loop="safety" x="{sx}" y="77" width="64" height="20" rx="4"/>
<text class="loop-label" x="{alx}" y="91">arming</text>
<text class="loop-label" x="{slx}" y="91">safety</text>
<g class="car" data-car=""><rect x="{cx}" y="56" width="46" height="16" rx="5"/>
<circle cx="{w1}" cy="73" r="5"/><circle cx="{w2}" cy="73" r="5"/></g>
<rect class="post" x="112" y="26" width="12" height="48" rx="2"/>
<g class="arm" data-arm="" transform="rotate(0 118 32)">
<rect class="arm-bar" x="{armx}" y="28" width="96" height="8" rx="4"/></g>
<circle class="pivot" cx="118" cy="32" r="5"/>
</svg>"""


def _lane_svg(lane_id: str, direction: str) -> str:
    # vehicles come from the left at an entry, from the right at an exit; the arming loop
    # is in front of the arm, the safety loop under and past it
    entry = direction != "exit"
    ax, sx = (20, 98) if entry else (156, 78)
    cx = 6 if entry else 188
    return ARM_SVG.format(
        label=escape(f"{lane_id}: arm and loops"), ax=ax, sx=sx, alx=ax + 10, slx=sx + 12,
        cx=cx, w1=cx + 10, w2=cx + 36, armx=22 if entry else 118)


def _options(modes: tuple[str, ...], words: dict[str, str]) -> str:
    return "".join(f'<option value="{escape(m)}">{escape(m)}'
                   f'{" — " + escape(words[m]) if m in words else ""}</option>'
                   for m in modes)


def _lane_tile(lane_id: str, direction: str) -> str:
    i, d = escape(lane_id), escape(direction)
    return f"""<article class="tile lane" id="lane-{i}" data-lane="{i}" data-direction="{d}"
 data-state="idle"
 aria-labelledby="lane-{i}-name">
<header class="lane-head"><h3 id="lane-{i}-name">{i}</h3><span class="dir">{d}</span>
<span class="mode" data-f="mode" hidden>closed</span></header>
<p class="state" data-f="state" aria-live="polite">Waiting for the first status…</p>
{_lane_svg(lane_id, direction)}
<p class="arm-words" data-f="arm"></p>
<ul class="faults" data-f="faults"></ul>
<dl class="facts">
<div><dt>In the lane</dt><dd data-f="vehicle">—</dd></div>
<div><dt>Last plate</dt><dd class="plate-line"><span class="plate" data-f="plate">—</span>
<img class="crop" data-f="crop" alt="camera crop of the last plate" hidden>
<small class="hint" data-f="crop-note" hidden></small></dd></div>
<div><dt>Outcome</dt><dd data-f="outcome">—</dd></div>
<div><dt>Decided by</dt><dd data-f="source">—</dd></div>
</dl>
<div class="stages" data-f="stages" hidden><svg class="stagebar" viewBox="0 0 300 14"
 preserveAspectRatio="none" aria-hidden="true"></svg><p class="stage-words"></p></div>
</article>"""


def _sim_panel(lanes: list[tuple[str, str]]) -> str:
    lane_opts = "".join(f'<option value="{escape(i)}">{escape(i)} ({escape(d)})</option>'
                        for i, d in lanes)
    buttons = "".join(f'<button type="button" class="behaviour" data-behaviour="{escape(b)}">'
                      f'{escape(b.replace("_", " "))}<small>{escape(BEHAVIOUR_WORDS.get(b, ""))}'
                      f'</small></button>' for b in BEHAVIOURS)
    return f"""<section class="panel sim" id="sim" aria-labelledby="sim-h">
<h2 id="sim-h">Simulation</h2>
<p class="hint">Nothing here drives real hardware: the lanes, loops, arm and camera are
simulated.</p>
<div class="fields"><label>Lane <select id="sim-lane">{lane_opts}</select></label>
<label>Plate <input id="sim-plate" autocomplete="off" placeholder="random"
 maxlength="12" pattern="[A-Za-z0-9]*"></label></div>
<p class="hint">Send a vehicle:</p><div class="behaviours">{buttons}</div>
<p class="result" id="sim-result" role="status"></p>
<div class="fields">
<label>Central service <select id="sim-central">{_options(CENTRAL_MODES, CENTRAL_WORDS)}</select>
</label>
<label>Backup service <select id="sim-backup">{_options(BACKUP_MODES, BACKUP_WORDS)}</select>
</label></div>
<p id="sim-world" class="world">Simulated world: …</p>
</section>"""


def render(gw: Gateway, assets: dict[str, Asset]) -> str:
    """The page's HTML: the gate, a tile per lane, the simulation's panel when simulating."""
    gate = escape(gw.settings.gate.id)
    lanes: list[tuple[str, str]] = [(lane.id, lane.direction) for lane in gw.lanes.values()]
    tiles = "".join(_lane_tile(i, d) for i, d in lanes)
    lane_admin = "".join(
        f'<div class="lane-admin" data-lane="{escape(i)}"><span>{escape(i)}</span>'
        f'<button type="button" data-act="open">Open {escape(i)}</button>'
        f'<button type="button" data-act="mode" data-mode="closed">Close {escape(i)}</button>'
        f'<button type="button" data-act="mode" data-mode="normal">Reopen {escape(i)}</button>'
        f'</div>' for i, _ in lanes)
    sim = _sim_panel(lanes) if gw.sim is not None else ""
    link = {name: f"/static/{name}?v={asset.version}" for name, asset in assets.items()}
    return PAGE.format(gate=gate, tiles=tiles, lane_admin=lane_admin, sim=sim,
                       js=link["page.js"], css=link["page.css"], icon=link["icon.svg"],
                       simulating="true" if gw.sim is not None else "false")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{gate} · parking gate</title>
<link rel="icon" href="{icon}" type="image/svg+xml">
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head><body data-simulating="{simulating}">
<a class="skip" href="#lanes">Skip to the lanes</a>
<header class="top">
<h1><span class="gate-label">Gate</span> <span id="gate">{gate}</span></h1>
<p id="link" class="link" role="status" data-link="starting">Connecting…</p>
<p id="health" class="health"></p>
</header>
<div id="lost" class="lost" role="alert" hidden></div>
<ul id="problems" class="problems"></ul>
<main class="layout">
<div class="col col-main">
<section class="panel lanes-panel" id="lanes" aria-labelledby="lanes-h" tabindex="-1">
<h2 id="lanes-h">Lanes</h2><div class="lane-grid">{tiles}</div></section>
<section class="panel vehicles" aria-labelledby="vehicles-h"><h2 id="vehicles-h">Vehicles</h2>
<p class="hint">Newest first. Tap or press Enter on one to see how it was decided.</p>
<ul id="vehicles" class="vehicle-list"></ul></section>
<section class="panel latency" aria-labelledby="latency-h">
<h2 id="latency-h">Time per vehicle</h2>
<p class="hint" id="latency-words">The last 100 vehicles, from the camera to the arm.</p>
<svg id="latency" class="latency-chart" viewBox="0 0 400 160" role="img"
 aria-label="stage timings of the last vehicles"></svg>
<ul class="legend"><li class="s-frame">camera</li><li class="s-plate">plate</li>
<li class="s-decision">decision</li><li class="s-relay">relay</li></ul></section>
<section class="panel events" aria-labelledby="events-h"><h2 id="events-h">What happened</h2>
<ul id="events" class="event-list"></ul></section>
</div>
<div class="col col-side">
<section class="panel spaces" aria-labelledby="spaces-h"><h2 id="spaces-h">Spaces</h2>
<p class="big"><span id="free">–</span> <span class="unit">free</span></p>
<p id="occ" class="hint"></p><ul id="zones" class="zones"></ul></section>
<section class="panel today" aria-labelledby="today-h"><h2 id="today-h">Today (UTC)</h2>
<ul id="today" class="today-list"><li>…</li></ul></section>
<section class="panel services" aria-labelledby="services-h">
<h2 id="services-h">Services</h2><ul id="services" class="service-list"></ul></section>
{sim}
<section class="panel admin" id="admin" aria-labelledby="admin-h">
<h2 id="admin-h">Operator actions</h2>
<form id="token-form" class="fields" autocomplete="off">
<label>Admin token <input id="token" type="password" autocomplete="off"></label>
<button type="submit">Use token</button>
<button type="button" id="token-forget">Forget</button></form>
<p id="token-state" class="hint">No token: actions will be refused. The token is kept for
this tab only.</p>
<div class="lane-actions">{lane_admin}</div>
<div class="fields"><label>Space <select id="space"></select></label>
<button type="button" id="space-off">Take out of service</button>
<button type="button" id="space-on">Back in service</button></div>
<h3>Permit list</h3>
<form id="permit-form" class="fields" autocomplete="off">
<label>Plate <input id="permit-plate" required maxlength="16"></label>
<label>Kind <select id="permit-kind"><option>resident</option><option>staff</option>
<option>delivery</option></select></label>
<label>Note <input id="permit-note" maxlength="200"></label>
<button type="submit">Add permit</button></form>
<ul id="permits" class="permit-list"></ul>
<p id="admin-result" class="result" role="status"></p>
</section>
</div>
</main>
<dialog id="saga" class="saga" aria-labelledby="saga-h">
<div class="dialog-head"><h2 id="saga-h">Vehicle</h2>
<button type="button" class="close" data-close="">Close</button></div>
<div id="saga-body"></div></dialog>
<dialog id="ask" class="ask" aria-labelledby="ask-h">
<form id="ask-form" autocomplete="off"><h2 id="ask-h">Confirm</h2>
<p id="ask-what"></p>
<label>Who is doing this <input id="ask-who" required maxlength="64"></label>
<label>Why <input id="ask-why" required maxlength="200"></label>
<div class="fields"><button type="submit" class="primary">Do it</button>
<button type="button" data-close="">Cancel</button></div></form></dialog>
</body></html>
"""

async def page(request: web.Request) -> web.Response:
    return web.Response(text=render(request.app[GATEWAY], request.app[ASSETS]),
                        content_type="text/html", headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.Response:
    asset = request.app[ASSETS].get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound(text='{"error": "no such file"}',
                               content_type="application/json")
    cache = YEAR if request.query.get("v") == asset.version else "no-cache"
    headers = {"Cache-Control": cache, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


REQUIRED = ("page.js", "page.css", "icon.svg")  # what the page links


def add_page_routes(app: web.Application, folder: Path = STATIC_DIR) -> None:
    """``GET /`` and ``GET /static/{name}``; a page file missing from the folder (a wheel
    built without its package data) is an error at start, not a 500 on the first visit."""
    assets = load_assets(folder)
    missing = [name for name in REQUIRED if name not in assets]
    if missing:
        raise RuntimeError(f"the status page's files are missing from {folder}: "
                           + ", ".join(missing))
    app[ASSETS] = assets
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
