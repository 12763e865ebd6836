"""The status page: one static document; the data comes from /api/status and the event
stream. Every text from outside (plates, reasons) is set with textContent, never as HTML."""

from aiohttp import web

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Parking gate</title>
<style>
 body{font-family:system-ui,sans-serif;margin:1rem;background:#f4f5f7;color:#222}
 h1{font-size:1.3rem;margin:0 0 .5rem} h2{font-size:1rem;margin:.2rem 0 .5rem}
 .row{display:flex;flex-wrap:wrap;gap:1rem}
 .card{background:#fff;border-radius:8px;padding:.8rem 1rem;box-shadow:0 1px 3px #0002;
       min-width:15rem}
 .big{font-size:2rem;font-weight:600} .muted{color:#777;font-size:.85rem}
 .state{font-weight:600;text-transform:uppercase}
 .ok{color:#17803d} .bad{color:#b42318} .warn{color:#b54708}
 table{border-collapse:collapse;width:100%;font-size:.85rem}
 td,th{text-align:left;padding:.15rem .4rem;border-bottom:1px solid #eee}
 .loop{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;background:#ccc;
       vertical-align:middle} .loop.on{background:#e8a317}
 button{margin:.1rem}
</style></head><body>
<h1>Parking gate <span id="gate"></span> <span id="health" class="muted"></span></h1>
<div class="row">
 <div class="card"><h2>Spaces</h2><div class="big" id="free">–</div>
  <div class="muted" id="occ"></div></div>
 <div class="card"><h2>Services</h2><table id="services"></table>
  <div class="muted" id="queue"></div>
  <div id="fault" hidden><label>simulated central:
   <select id="fault-mode"><option>ok</option><option>refuse</option><option>blackhole</option>
   <option>error500</option><option>garbage</option><option>oversized</option>
   <option>slow</option><option>commit_no_reply</option></select></label></div>
  <div id="backup-fault" hidden><label>simulated backup:
   <select id="backup-mode"><option>ok</option><option>blackhole</option><option>error</option>
   <option>garbage</option><option>slow</option><option>forge_plate</option></select></label>
  </div></div>
</div>
<h2 style="margin-top:1rem">Lanes <span id="collisions" class="muted"></span></h2><div class="row" id="lanes"></div>
<h2 style="margin-top:1rem">Events</h2>
<div class="card"><table><thead><tr><th>seq</th><th>time</th><th>lane</th><th>event</th>
<th>details</th></tr></thead><tbody id="events"></tbody></table></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; }
function laneCard(l, sim) {
  const c = el("div", undefined, "card"); c.id = "lane-" + l.id;
  c.append(el("h2", l.id + " (" + l.direction + ")"));
  const s = el("div"); s.append(el("span", l.state, "state"),
    el("span", "  barrier " + l.barrier + (l.arm ? (l.arm.assumed ? " (position assumed)" : " (arm " + l.arm.position + ")") : ""), "muted")); c.append(s);
  const loops = el("div", undefined, "muted");
  for (const [name, on] of Object.entries(l.loops || {})) {
    loops.append(el("span", "", "loop" + (on ? " on" : "")), el("span", " " + name + "  ")); }
  c.append(loops);
  for (const [dev, why] of Object.entries(l.faults || {})) c.append(el("div", "fault: " + dev + ": " + why, "bad"));
  if (l.reading && l.reading.license_plate !== undefined) {
    const r = el("div", "read at the gate: " + (l.reading.license_plate || "unreadable") +
      (l.reading.license_plate ? " (" + Math.round(100 * l.reading.confidence) + "%, " +
       l.reading.latency_ms + " ms)" : (l.reading.error ? " (" + l.reading.error + ")" : "")),
      "muted");
    if (l.reading.license_plate) { const img = el("img"); img.alt = "plate crop"; img.height = 28;
      img.src = "/api/lanes/" + encodeURIComponent(l.id) + "/plate.jpg?t=" + Date.now();
      img.style.marginLeft = "0.5rem"; img.style.verticalAlign = "middle"; r.append(img); }
    c.append(r); }
  if (l.last && l.last.license_plate !== undefined) {
    c.append(el("div", "last: " + (l.last.license_plate || "?") + " " + l.last.status +
      (l.last.reason ? " (" + l.last.reason + ")" : ""), "muted")); }
  if (sim) {
    const b = el("div"); for (const beh of ["pass", "back_out", "tailgate", "bumper", "reverse", "trailer", "motorbike", "stall_under_arm"]) {
      const btn = el("button", beh); btn.onclick = () => sendVehicle(l.id, beh); b.append(btn); }
    c.append(b); }
  return c;
}
async function sendVehicle(lane, behaviour) {
  const letters = "ABCDEFGHJKLMNPRSTUVYZ";
  let plate = String(10 + Math.floor(Math.random() * 70));
  for (let i = 0; i < 3; i++) plate += letters[Math.floor(Math.random() * letters.length)];
  plate += String(100 + Math.floor(Math.random() * 900));
  await fetch("/api/sim/lanes/" + encodeURIComponent(lane) + "/vehicles", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({plate, behaviour})});
}
async function refresh() {
  try {
    const s = await (await fetch("/api/status")).json();
    $("gate").textContent = s.gate_id;
    $("free").textContent = s.occupancy.free + " free";
    $("occ").textContent = s.occupancy.allocated + " allocated, " + s.occupancy.out_of_service +
      " out of service, " + s.occupancy.total + " in all";
    const sv = $("services"); sv.replaceChildren();
    for (const [name, info] of Object.entries(s.services)) {
      const tr = el("tr"); tr.append(el("td", name));
      const v = info.circuit !== undefined ? info.circuit : (info.connected ? "connected" : "disconnected");
      tr.append(el("td", v, v === "closed" || v === "connected" ? "ok" : "warn")); sv.append(tr); }
    const q = s.offline_queue; $("queue").textContent = "offline queue: " + q.pending +
      " waiting" + (q.dead ? ", " + q.dead + " refused" : "");
    if (s.sim_central) { $("fault").hidden = false;
      if (document.activeElement !== $("fault-mode")) $("fault-mode").value = s.sim_central.mode; }
    if (s.sim_backup) { $("backup-fault").hidden = false;
      if (document.activeElement !== $("backup-mode")) $("backup-mode").value = s.sim_backup.mode; }
    const lanes = $("lanes"); lanes.replaceChildren(...s.lanes.map((l) => laneCard(l, s.simulation)));
    if (s.simulation) { $("collisions").textContent = "simulated: " + s.simulation.collisions + " collision(s)";
      $("collisions").className = s.simulation.collisions ? "bad" : "muted"; }
    $("health").textContent = s.healthy ? "" : "needs attention";
    $("health").className = s.healthy ? "muted" : "bad";
  } catch (e) { $("health").textContent = "not reachable"; $("health").className = "bad"; }
}
function addEvent(ev) {
  const tr = el("tr"); tr.append(el("td", ev.seq), el("td", (ev.ts || "").slice(11, 23)),
    el("td", ev.lane_id || ""), el("td", ev.type));
  const d = Object.entries(ev.data || {}).filter(([k]) => k !== "lane_id")
    .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" ");
  tr.append(el("td", d.slice(0, 200), "muted"));
  const body = $("events"); body.prepend(tr);
  while (body.children.length > 60) body.lastChild.remove();
  refresh();
}
$("fault-mode").onchange = async (e) => { await fetch("/api/sim/central/fault", {method: "POST",
  headers: {"Content-Type": "application/json"}, body: JSON.stringify({mode: e.target.value})});
  refresh(); };
$("backup-mode").onchange = async (e) => { await fetch("/api/sim/backup/fault", {method: "POST",
  headers: {"Content-Type": "application/json"}, body: JSON.stringify({mode: e.target.value})});
  refresh(); };
const source = new EventSource("/api/events/stream");
source.onmessage = (m) => addEvent(JSON.parse(m.data));
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
