/* The operator's page: live over /api/events/stream, with a throttled refresh of
   /api/status (at most one a second on bursts of events, one every 10 s otherwise).
   Every text from outside is set with textContent, never as HTML. The admin token is kept
   in sessionStorage (this tab only) and sent as an Authorization header, never in a URL.
   Vanilla ES2020, no build step. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "gateway.admin-token";
  const WHO_KEY = "gateway.who";
  const SLOW_REFRESH_MS = 10000;
  const MIN_REFRESH_MS = 1000;
  const URGENT_GAP_MS = 250;
  const FETCH_TIMEOUT_MS = 8000; // a request that hangs must not stop the refreshes

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function field(root, name) { return root.querySelector(`[data-f="${name}"]`); }
  function store(key, value) {
    try {
      if (value === undefined) return sessionStorage.getItem(key) || "";
      if (value) sessionStorage.setItem(key, value); else sessionStorage.removeItem(key);
    } catch (e) { /* storage refused: the token lives for this page only */ }
    return "";
  }
  function clock(ts) {
    if (!ts) return "";
    const d = new Date(ts);
    return isNaN(d) ? String(ts).slice(11, 19) : d.toLocaleTimeString([], {hour12: false});
  }
  const ms = (v) => (v >= 1000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms");

  // -- words ------------------------------------------------------------------------------
  const STATES = {
    idle: ["Waiting for a vehicle", "idle"],
    present: ["Vehicle on the loop: reading the plate", "busy"],
    deciding: ["Deciding", "busy"],
    denied: ["Refused: waiting for the vehicle to leave", "bad"],
    opening: ["Opening for the vehicle", "go"],
    passing: ["Vehicle passing", "go"],
    closing: ["Closing", "warn"],
    holding: ["Holding open until the loops are clear", "go"],
    held_open: ["Held open", "warn"],
    fault: ["Fault: no vehicle is decided until it recovers", "bad"],
  };
  const SOURCES = {
    central: "central service", backup: "backup service", cache: "cached result",
    local: "read at the gate", permits: "permit list", policy: "policy", manual: "manual",
    queue: "queued for central", gate_service: "the gate",
  };
  const sourceWords = (s) => SOURCES[s] || (s ? String(s).replace(/_/g, " ") : "");
  const STEPS = {
    verify_license_plate: "check the plate", allocate_parking_space: "give a space",
    release_parking_space: "free the space", create_entry_record: "record the entry",
    cancel_entry_record: "cancel the entry record", create_exit_record: "record the exit",
    cancel_exit_record: "cancel the exit record", open_barrier: "open the arm",
    confirm_passage: "wait for the vehicle to pass", reoccupy_parking_space: "take the space back",
  };
  const stepWords = (n) => STEPS[n] || String(n || "").replace(/_/g, " ");
  const FIXES = {
    camera: "Check the camera's power, cable and network; the lane decides on images again once frames arrive.",
    arming: "Check the arming loop's detector and its wiring.",
    safety: "Check the safety loop's detector; the arm stays up while it is in doubt.",
    barrier: "Check the arm: motor power, limit switches, nothing in its way.",
    lane: "Check the lane's devices in the log (journalctl -u parking-gateway).",
  };

  function decisionOf(last) {
    if (!last) return "";
    if (last.source) return last.source;
    const s = last.sources || {};
    return s.verify_license_plate || "";
  }
  function outcomeWords(kind, status, reason) {
    const way = kind === "exit" ? "let out" : "let in";
    if (status === "completed") return way;
    if (status === "compensated") return "turned away";
    if (status === "failed") return "refused";
    if (status === "running" || status === "compensating") return "in progress";
    return status ? String(status).replace(/_/g, " ") : (reason || "");
  }
  function outcomeTone(status) {
    return status === "completed" ? "ok" : status === "compensated" ? "warn"
      : status === "failed" ? "bad" : "";
  }

  // -- the link to the daemon --------------------------------------------------------------
  const link = {lost: false, since: null, backTimer: null};
  function linkLost(why) {
    if (!link.lost) { link.lost = true; link.since = new Date(); }
    const b = $("lost");
    clearTimeout(link.backTimer);
    b.classList.remove("back");
    b.textContent = `Lost the connection to the gateway at ${link.since.toLocaleTimeString([], {hour12: false})} (${why}). Retrying; what you see may be out of date.`;
    b.hidden = false;
    $("link").dataset.link = "lost";
    $("link").textContent = "Connection lost";
    document.body.classList.add("stale");
  }
  function linkBack() {
    $("link").dataset.link = "live";
    $("link").textContent = "Live";
    document.body.classList.remove("stale");
    if (!link.lost) return;
    link.lost = false;
    const b = $("lost");
    b.classList.add("back");
    b.textContent = "Connected to the gateway again.";
    link.backTimer = setTimeout(() => { b.hidden = true; }, 6000);
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(method, url, body, admin) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (admin) {
      const t = store(TOKEN_KEY);
      if (t) headers.Authorization = "Bearer " + t;
    }
    let resp;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    try {
      resp = await fetch(url, {method, headers, cache: "no-store", signal: abort.signal,
        body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (e) {
      linkLost("the gateway does not answer");
      throw e;
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      throw new HttpError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`);
    }
    return data;
  }

  // -- lanes ------------------------------------------------------------------------------
  const laneStages = {}; // lane id -> stages_ms of its last barrier_opened event
  const laneVehicle = {}; // lane id -> the plate being handled (from the event stream)
  // lane id -> the decision of the vehicle in the lane, from its *_granted or *_denied event:
  // shown at once, not when its saga ends (after the vehicle has driven through)
  const laneDecision = {};
  const ON_LANE = new Set(["arriving", "waiting", "passing"]);
  function armAngle(l, world) {
    const w = world && world.arm && world.arm[l.id];
    if (w && typeof w.position === "number") return [w.position, w.moving];
    const p = l.arm ? l.arm.position : l.barrier;
    if (p === "open") return [1, null];
    if (p === "closed") return [0, null];
    return [0.5, l.barrier === "open" ? "up" : "down"];
  }
  function armWords(l, pos, moving) {
    const assumed = l.arm && l.arm.assumed;
    let w = moving === "up" ? "Arm going up" : moving === "down" ? "Arm coming down"
      : pos >= 0.95 ? "Arm up" : pos <= 0.05 ? "Arm down" : "Arm part way";
    if (assumed) w += " (position assumed: no limit switch confirms it)";
    const loops = l.loops || {};
    const on = ["arming", "safety"].filter((k) => loops[k]);
    return w + (on.length ? ` · ${on.join(" and ")} loop occupied` : " · loops clear");
  }
  function renderStageBar(box, stages) {
    if (!stages || !stages.total) { box.hidden = true; return; }
    box.hidden = false;
    const bar = box.querySelector("svg");
    bar.replaceChildren();
    const parts = ["frame", "plate", "decision", "relay"];
    const sum = parts.reduce((a, k) => a + (stages[k] || 0), 0) || 1;
    let x = 0;
    for (const k of parts) {
      const w = 300 * (stages[k] || 0) / sum;
      if (w > 0) {
        const r = svg("rect", {x, y: 0, width: Math.max(w, 1), height: 14, class: "s-" + k});
        r.append(svg("title")); r.firstChild.textContent = `${k}: ${ms(stages[k])}`;
        bar.append(r);
      }
      x += w;
    }
    box.querySelector(".stage-words").textContent =
      `camera ${ms(stages.frame || 0)} · plate ${ms(stages.plate || 0)} · decision ${ms(stages.decision || 0)} · relay ${ms(stages.relay || 0)} · total ${ms(stages.total)}`;
  }
  // The tile's crop: its last decision's stored crop, else the gate reader's last (the
  // status's lane.crop says which, its URL and whether it needs the token, fetched then
  // with the token in a header into a blob: an <img src> cannot send one).
  const cropBlobs = {};
  function renderCrop(tile, l, plate) {
    const img = field(tile, "crop"), note = field(tile, "crop-note");
    const c = l.crop !== undefined ? l.crop : (l.reading && l.reading.license_plate
      ? {url: `/api/lanes/${encodeURIComponent(l.id)}/plate.jpg`, public: true,
        key: `${l.reading.latency_ms}:${(l.last || {}).saga_id || ""}`} : null);
    const token = store(TOKEN_KEY);
    const key = c ? `${plate}:${c.key}:${c.public || token ? "shown" : "locked"}` : "";
    if (img.dataset.key === key) return;
    img.dataset.key = key;
    if (cropBlobs[l.id]) { URL.revokeObjectURL(cropBlobs[l.id]); delete cropBlobs[l.id]; }
    note.hidden = !(c && !c.public && !token);
    note.textContent = "Crop shown with the admin token (Operator actions).";
    if (!c || (!c.public && !token)) { img.hidden = true; img.removeAttribute("src"); return; }
    img.alt = `camera crop of ${plate || "the last vehicle"}`;
    img.hidden = false;
    const url = c.of === "decision" ? c.url : `${c.url}?r=${encodeURIComponent(c.key)}`;
    if (c.public) { img.src = url; return; }
    fetch(url, {headers: {Authorization: "Bearer " + token}}).then((r) => {
      if (!r.ok) throw new HttpError(r.status, String(r.status));
      return r.blob();
    }).then((b) => {
      if (img.dataset.key !== key) return; // a newer crop came meanwhile
      cropBlobs[l.id] = URL.createObjectURL(b);
      img.src = cropBlobs[l.id];
    }).catch(() => { img.hidden = true; note.hidden = false; note.textContent = "Crop not shown: the admin token was refused."; });
  }
  function renderLane(l, world) {
    const tile = document.querySelector(`.lane[data-lane="${CSS.escape(l.id)}"]`);
    if (!tile) return;
    const [words, tone] = STATES[l.state] || [String(l.state), "warn"];
    const faults = Object.entries(l.faults || {});
    tile.dataset.state = l.state;
    tile.dataset.tone = faults.length ? "bad" : tone;
    field(tile, "state").textContent = words;
    field(tile, "mode").hidden = l.mode !== "closed";
    field(tile, "mode").textContent = "Lane closed: no new vehicles";
    const [pos, moving] = armAngle(l, world);
    const arm = tile.querySelector("[data-arm]");
    arm.setAttribute("transform", `rotate(${tile.dataset.direction === "exit" ? -pos * 70 : pos * 70} 118 32)`);
    arm.classList.toggle("up", pos >= 0.95 && !moving);
    arm.classList.toggle("moving", Boolean(moving) || (pos > 0.05 && pos < 0.95));
    arm.classList.toggle("assumed", Boolean(l.arm && l.arm.assumed));
    field(tile, "arm").textContent = armWords(l, pos, moving);
    const loops = l.loops || {};
    for (const r of tile.querySelectorAll("[data-loop]")) r.classList.toggle("on", Boolean(loops[r.dataset.loop]));
    const simCars = world && world.vehicles ? world.vehicles.filter((v) => v.lane_id === l.id && ON_LANE.has(v.status)) : [];
    const car = tile.querySelector("[data-car]");
    car.classList.toggle("on", Boolean(loops.arming || loops.safety || simCars.length));
    const onSafety = loops.safety || simCars.some((v) => v.status === "passing");
    const shift = onSafety ? (tile.dataset.direction === "exit" ? -78 : 78) : 0;
    car.setAttribute("transform", `translate(${shift} 0)`);
    const fl = field(tile, "faults");
    fl.replaceChildren(...faults.map(([dev, why]) => {
      const li = el("li", "", `${dev}: ${why}`);
      li.append(el("small", "", "What to do: " + ((l.fault_fixes || {})[dev] || FIXES[dev] || "check the device and its wiring.")));
      return li;
    }));
    const last = l.last || {};
    // l.vehicle: {license_plate, saga_id} while the lane handles one (null: none); an older
    // daemon gives none, and the event stream's plate stands in
    const inLane = l.vehicle !== undefined ? (l.vehicle && l.vehicle.license_plate)
      : (["idle", "fault"].includes(l.state) ? null : laneVehicle[l.id]);
    field(tile, "vehicle").textContent = inLane || (l.vehicle || loops.arming || loops.safety ? "a vehicle (plate not read yet)" : "none");
    const reading = l.reading || {};
    // the vehicle in the lane once decided, before its saga ends; else the last one
    const pend = laneDecision[l.id];
    const cur = pend && l.vehicle && l.vehicle.saga_id === pend.saga_id && pend.saga_id !== last.saga_id ? pend : null;
    const plate = cur ? cur.license_plate || "" : last.license_plate || reading.license_plate || "";
    field(tile, "plate").textContent = plate || (cur || last.saga_id ? "not read" : "—");
    renderCrop(tile, l, plate);
    const out = field(tile, "outcome");
    if (cur) {
      out.textContent = cur.granted ? outcomeWords(l.direction, "completed") : "refused";
      if (!cur.granted && cur.reason) out.append(el("small", "", cur.reason));
    } else {
      out.textContent = last.status ? outcomeWords(l.direction, last.status) : "—";
      if (last.reason && last.status !== "completed") out.append(el("small", "", last.reason));
    }
    const src = cur ? cur.source : decisionOf(last);
    field(tile, "source").textContent = src ? sourceWords(src) : "—";
    // the gateway's own stages of this vehicle (null: it never reached the arm), else those
    // of the last barrier_opened event seen on the stream
    renderStageBar(field(tile, "stages"), last.stages_ms !== undefined ? last.stages_ms : laneStages[l.id]);
  }

  // -- spaces and services ----------------------------------------------------------------
  function renderSpaces(o) {
    $("free").textContent = o.free === 0 ? "FULL" : String(o.free);
    $("occ").textContent = `${o.allocated} taken, ${o.out_of_service} out of service, ${o.total} in all`;
    const zones = o.zones || [];
    $("zones").replaceChildren(...zones.map((z) => {
      const full = z.full || z.free === 0;
      const li = el("li", full ? "full" : "");
      const name = el("span", "", `Zone ${z.zone}`);
      name.append(el("small", "", `${z.allocated} taken · ${z.out_of_service} out of service · ${z.total} in all`));
      li.append(name, full ? el("span", "fullword", "FULL") : zfree(z.free));
      return li;
    }));
  }
  function zfree(n) {
    const e = el("span", "zfree", n);
    e.append(el("small", "", " free"));
    return e;
  }
  function svcItem(name, tone, word, detail, todo) {
    const li = el("li", tone);
    li.append(el("span", "dot"));
    const p = el("p");
    p.append(el("span", "name", name + ": "), el("span", "word", word));
    if (detail) p.append(el("small", "", detail));
    li.append(p);
    if (todo) li.append(el("span", "todo", todo));
    return li;
  }
  const TONE = {online: "ok", slow: "warn", offline: "bad", paused: "warn", disabled: "", half_open: "warn"};
  function breakerItem(name, info) {
    if (!info) return null;
    if (info.state) {
      const detail = info.last_error && info.state !== "online" ? `last error: ${info.last_error}` : "";
      return svcItem(name, TONE[info.state] || "", info.summary || info.state, detail);
    }
    const c = info.circuit;
    if (c === "closed") return svcItem(name, "ok", "online");
    if (c === "open") return svcItem(name, "warn", "paused after repeated failures; retrying soon");
    if (c === "half_open") return svcItem(name, "warn", "trying again");
    return svcItem(name, "", c ? String(c) : "not configured");
  }
  function renderServices(s) {
    const sv = s.services || {};
    const items = [breakerItem("Central service", sv.central), breakerItem("Backup service", sv.backup)];
    const m = sv.mqtt;
    if (m) {
      const st = m.state || (m.connected ? "online" : "offline");
      items.push(svcItem("Message broker", TONE[st] || "", m.summary || (m.connected ? "connected" : "not connected"),
        "", st === "offline" ? "Events wait on disk and are sent when the broker is back." : ""));
    }
    const q = s.offline_queue || {};
    const qword = q.pending ? `${q.pending} record(s) waiting for the central service` : "nothing waiting";
    const dead = q.dead ? `${q.dead} record(s) refused by the central service` : "";
    const advice = q.advice !== undefined ? q.advice
      : q.dead ? "Refused records are not retried: check them (list below) and enter them in the central system by hand."
        : q.pending ? "Nothing to do: they are sent on their own once the central service answers." : "";
    const qi = svcItem("Offline queue", q.dead ? "bad" : q.pending ? "warn" : "ok", qword, dead, advice);
    for (const d of (q.dead_letters || []).slice(0, 5)) {
      qi.append(el("span", "todo", `Refused: ${stepWords(d.operation || "record")}${d.attempts ? ` after ${d.attempts} attempt(s)` : ""}${d.updated_at ? " at " + clock(d.updated_at) : ""}: ${d.last_error || d.outcome || "no reason given"} (saga ${String(d.saga_id || "").slice(0, 8)})`));
    }
    items.push(qi);
    const ob = s.outbox || {};
    items.push(svcItem("Events to the broker", ob.pending ? "warn" : "ok",
      ob.summary || (ob.pending ? `${ob.pending} waiting` : "all sent"),
      ob.dropped ? `${ob.dropped} dropped (the outbox was full)` : ""));
    const pr = s.plate_reader;
    if (pr) items.push(svcItem("Plate reader", pr.fault ? "bad" : pr.ready ? "ok" : "warn",
      pr.fault ? "not working" : pr.ready ? "ready" : "loading",
      pr.fault || (pr.model && !pr.model.slim ? `${pr.model.note} (uses more memory)` : ""),
      pr.fault ? "The gate sends images to the services instead; check the log." : ""));
    const pm = s.permits;
    if (pm) items.push(svcItem("Permit list", pm.last_error ? "warn" : "ok",
      `${pm.central} from central, ${pm.local} entered here`,
      pm.last_error ? `last sync failed: ${pm.last_error}` : (pm.as_of ? `as of ${clock(pm.as_of)}` : "")));
    const st = s.store || {}, sg = s.storage;
    const used = sg ? `Using ${sg.summary}.` : "";
    items.push(st.disk_full
      ? svcItem("Storage", "bad", "disk full", [used, st.last_write_error].filter(Boolean).join(" "),
        "Free space on the data disk (journalctl --vacuum-size, old exports); the gate retries its writes and goes on once there is room.")
      : svcItem("Storage", sg && sg.problem ? "warn" : "ok", sg && sg.problem ? "nearly full" : "writing normally",
        [used, st.write_failures ? `${st.write_failures} failed write(s) since the start; last: ${st.last_write_error || "?"}` : ""].filter(Boolean).join(" "),
        sg && sg.problem ? `What to do: ${sg.problem}.` : ""));
    const ck = s.clock || (s.wall_synced !== undefined ? {synced: s.wall_synced} : null);
    if (ck) items.push(ck.synced ? svcItem("Clock", "ok", "synchronised")
      : svcItem("Clock", "bad", "not synchronised: the times shown and recorded may be wrong",
        "Vehicles are still let in and out.",
        "Check the time service (timedatectl status should say “System clock synchronized: yes”; systemd-timesyncd or chrony running), the network to the NTP server, and the board's RTC battery if it has one."));
    for (const [name, t] of Object.entries(s.tasks || {})) {
      if (t.failing) items.push(svcItem(name, "warn", t.retry_in_s ? `failing, retrying in ${Math.round(t.retry_in_s)} s` : "failing", t.last_error || ""));
    }
    $("services").replaceChildren(...items.filter(Boolean));
  }
  function renderHealth(s) {
    const h = $("health");
    h.textContent = s.healthy ? "All good" : "Needs attention";
    h.classList.toggle("bad", !s.healthy);
    $("problems").replaceChildren(...(s.problems || []).map((p) => el("li", "", p)));
  }

  // -- simulation -------------------------------------------------------------------------
  let world = null;
  function renderSim(s) {
    if (!$("sim")) return;
    for (const [id, info] of [["sim-central", s.sim_central], ["sim-backup", s.sim_backup]]) {
      const sel = $(id);
      sel.disabled = !info;
      if (info && document.activeElement !== sel) sel.value = info.mode;
    }
    const coll = (s.simulation || {}).collisions || 0;
    const w = $("sim-world");
    const parts = [`Simulated world: ${coll} collision(s) of the arm with a vehicle`];
    if (world && world.arm) {
      for (const [lane, a] of Object.entries(world.arm)) {
        parts.push(`${lane}: arm ${Math.round(100 * a.position)} % up${a.moving ? ", moving " + a.moving : ""}`);
      }
      const n = (world.vehicles || []).filter((v) => v.status !== "gone" && v.status !== "done").length;
      parts.push(`${n} vehicle(s) on the lanes`);
    }
    w.textContent = parts.join(" · ");
    w.classList.toggle("bad", coll > 0);
  }
  function randomPlate() {
    const letters = "ABCDEFGHJKLMNPRSTUVYZ"; // no O or I: the reader may take them for 0 and 1
    const pick = (n) => Array.from({length: n}, () => letters[Math.floor(Math.random() * letters.length)]).join("");
    return String(10 + Math.floor(Math.random() * 80)) + pick(3) + String(100 + Math.floor(Math.random() * 900));
  }
  async function sendVehicle(behaviour) {
    const lane = $("sim-lane").value;
    const plate = ($("sim-plate").value || "").toUpperCase().replace(/[^A-Z0-9]/g, "") || randomPlate();
    const r = $("sim-result");
    try {
      await api("POST", `/api/sim/lanes/${encodeURIComponent(lane)}/vehicles`, {plate, behaviour});
      r.className = "result ok";
      r.textContent = `Sent ${plate} (${behaviour.replace(/_/g, " ")}) to ${lane}.`;
    } catch (e) {
      r.className = "result bad";
      r.textContent = `Not sent: ${e.message}`;
    }
  }
  async function setFault(which, mode) {
    const r = $("sim-result");
    try {
      await api("POST", `/api/sim/${which}/fault`, {mode});
      r.className = "result ok";
      r.textContent = `Simulated ${which} service: ${mode}.`;
    } catch (e) {
      r.className = "result bad";
      r.textContent = `Not switched: ${e.message}`;
    }
    want.status = true; schedule(0, true);
  }

  // -- vehicles and the saga view ---------------------------------------------------------
  let vehiclesApi = true;
  async function loadVehicles() {
    let rows;
    if (vehiclesApi) {
      try { rows = (await api("GET", "/api/vehicles?limit=30")).vehicles; } catch (e) {
        if (e.status !== 404) throw e;
        vehiclesApi = false;
      }
    }
    if (!rows) {
      rows = (await api("GET", "/api/sagas?limit=30")).map((g) => ({
        saga_id: g.saga_id, kind: g.kind, lane_id: g.lane_id, license_plate: g.plate,
        status: g.status, reason: g.reason, created_at: g.created_at, source: "",
        compensated: g.status === "compensated"}));
    }
    const list = $("vehicles");
    if (!rows.length) { list.replaceChildren(el("li", "hint", "No vehicle yet.")); return; }
    list.replaceChildren(...rows.map((v) => {
      const li = el("li");
      const b = el("button", "vehicle " + outcomeTone(v.status));
      b.type = "button";
      b.dataset.saga = v.saga_id;
      b.append(el("span", "plate", v.license_plate || "not read"), el("span", "when", clock(v.created_at)));
      const out = v.outcome || outcomeWords(v.kind, v.status, v.reason);
      b.append(el("span", "outcome", `${out} · ${v.lane_id || ""}`));
      b.append(el("span", "when", v.kind || ""));
      const bits = [];
      if (v.source) bits.push("decided by " + sourceWords(v.source));
      if (v.reason && v.status !== "completed" && !v.outcome) bits.push(v.reason);
      if (v.compensated) bits.push("undone");
      if (v.duration_ms) bits.push(ms(v.duration_ms));
      b.append(el("span", "src", bits.join(" · ") || " "));
      b.setAttribute("aria-label", `${v.license_plate || "plate not read"}, ${out}, ${v.lane_id || ""}, ${clock(v.created_at)}: open the details`);
      li.append(b);
      return li;
    }));
  }
  const blobUrls = [];
  async function showImage(box, img) {
    const im = el("img");
    im.alt = `${img.kind || "image"} ${img.name || ""}`;
    box.append(im);
    const t = store(TOKEN_KEY);
    if (img.public === false && !t) {
      im.replaceWith(el("p", "hint", `${img.kind || "image"}: shown with the admin token (Operator actions)`));
      return;
    }
    try {
      const resp = await fetch(img.url, {headers: t ? {Authorization: "Bearer " + t} : {}});
      if (!resp.ok) throw new HttpError(resp.status, resp.status === 401 ? "needs the admin token" : `${resp.status}`);
      const url = URL.createObjectURL(await resp.blob());
      blobUrls.push(url);
      im.src = url;
    } catch (e) {
      im.replaceWith(el("p", "hint", `${img.kind || "image"}: ${e.message}`));
    }
  }
  let sagaOpener = null;
  async function openSaga(id, opener) {
    sagaOpener = opener || document.activeElement;
    const body = $("saga-body");
    body.replaceChildren(el("p", "hint", "Loading…"));
    $("saga-h").textContent = "Vehicle";
    const d = $("saga");
    if (!d.open) d.showModal();
    let g;
    try { g = await api("GET", `/api/sagas/${encodeURIComponent(id)}`); } catch (e) {
      body.replaceChildren(el("p", "result bad", `Could not load it: ${e.message}`));
      return;
    }
    $("saga-h").textContent = `${g.plate || "Plate not read"} · ${g.kind} at ${g.lane_id}`;
    const head = el("p", "step-head " + outcomeTone(g.status),
      `${outcomeWords(g.kind, g.status)}${g.reason ? " — " + g.reason : ""}`);
    const when = el("p", "hint", `Started ${clock(g.created_at)}, ${g.duration_ms ? "took " + ms(g.duration_ms) : "still running"}`);
    const steps = el("ol", "steps");
    const ordered = [...(g.steps || [])].sort((a, b) => String(a.started_at || "~").localeCompare(String(b.started_at || "~")) || a.step_index - b.step_index);
    for (const s of ordered) {
      const comp = s.phase === "compensation";
      const li = el("li", (comp ? "compensation " : "") + (s.status === "failed" ? "failed" : ""));
      li.append(el("p", "step-head", `${comp ? "Undo: " : ""}${stepWords(s.name)} — ${s.status}`));
      const facts = [];
      if (s.source) facts.push(["local", "gate_service"].includes(s.source) && s.name !== "verify_license_plate" ? "done at the gate" : "answered by " + sourceWords(s.source));
      if (s.source && ["backup", "cache", "permits", "policy", "queue"].includes(s.source)) facts.push("a fallback");
      facts.push(`${s.attempts || 0} attempt(s)`);
      if (s.duration_ms !== null && s.duration_ms !== undefined) facts.push(ms(s.duration_ms));
      if (s.outcome_unknown) facts.push("outcome unknown: asked again");
      li.append(el("p", "hint", facts.join(" · ")));
      if (s.error) li.append(el("p", "result bad", s.error));
      const r = s.result || {};
      const said = [r.reason, r.space_id && "space " + r.space_id, r.entry_id && "record " + r.entry_id, r.exit_id && "record " + r.exit_id, r.status].filter(Boolean);
      if (said.length) li.append(el("p", "", said.join(" · ")));
      const tries = el("ul", "attempts");
      for (const a of s.attempt_log || []) {
        tries.append(el("li", "", `${a.service}: ${a.outcome}${a.duration_ms !== undefined ? ", " + ms(a.duration_ms) : ""}${a.error ? " — " + a.error : ""}`));
      }
      if (tries.children.length) li.append(tries);
      steps.append(li);
    }
    const parts = [head, when, el("h3", "", "Steps"), steps];
    if (g.events && g.events.length) {
      const ev = el("ul", "event-list");
      for (const e of g.events) ev.append(eventItem(e));
      parts.push(el("h3", "", "What happened"), ev);
    }
    const images = el("div", "saga-images");
    parts.push(el("h3", "", "Images"), images);
    body.replaceChildren(...parts);
    if (g.images && g.images.length) for (const img of g.images) showImage(images, img);
    else images.append(el("p", "hint", "No image kept for this vehicle."));
  }
  function closeDialogs() {
    while (blobUrls.length) URL.revokeObjectURL(blobUrls.pop());
  }

  // -- today: the daily summary (GET /api/summary/daily) ----------------------------------
  function counts(obj, words, top) {
    return Object.entries(obj || {}).sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([k, n]) => `${words(k)} ${n}`).join(", ");
  }
  async function loadToday() {
    const d = await api("GET", "/api/summary/daily");
    const rows = [
      ["Vehicles", `in ${d.vehicles.in}, out ${d.vehicles.out}`],
      ["Decided by", counts(d.decisions.by_source, sourceWords, 6) || "none yet"],
      ["Turned away", counts(d.denials.by_reason, (r) => r, 4) || "none"],
      ["Faults", d.faults.total ? counts(d.faults.by_device, (x) => x, 4) : "none"],
    ];
    $("today").replaceChildren(...rows.map(([name, text]) => {
      const li = el("li");
      li.append(el("span", "n", name + ": "), el("span", "", text));
      return li;
    }));
  }

  // -- latency chart ----------------------------------------------------------------------
  let latencyApi = true;
  const localLatency = [];
  async function loadLatency() {
    let rows = null;
    if (latencyApi) {
      try { rows = (await api("GET", "/api/latency?limit=100")).vehicles; } catch (e) {
        if (e.status !== 404) throw e;
        latencyApi = false;
      }
    }
    renderLatency(rows || localLatency);
  }
  function renderLatency(rows) {
    const c = $("latency");
    c.replaceChildren();
    const parts = ["frame", "plate", "decision", "relay"];
    // drawn at the size it is shown, so that its text stays small on a wide screen
    const W = Math.max(300, Math.round(c.getBoundingClientRect().width) || 400), H = 170, L = 44, B = 18, T = 8;
    c.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const totals = rows.map((r) => parts.reduce((a, k) => a + (r[k] || 0), 0));
    const top = Math.max(100, ...totals);
    c.append(svg("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"}),
      svg("line", {x1: L, y1: H - B, x2: W, y2: H - B, class: "axis"}));
    const lab = (x, y, t, anchor) => { const e = svg("text", {x, y, "text-anchor": anchor || "end"}); e.textContent = t; c.append(e); };
    lab(L - 4, T + 8, ms(top)); lab(L - 4, H - B, "0");
    lab(L, H - 3, rows.length ? "older" : "no vehicle yet", "start"); lab(W, H - 3, "newest");
    const step = (W - L) / 100;
    const shown = rows.slice(-100);
    const first = 100 - shown.length; // the newest at the right-hand end
    shown.forEach((r, j) => {
      const i = first + j;
      let y = H - B;
      for (const k of parts) {
        const h = (H - B - T) * (r[k] || 0) / top;
        if (h > 0) {
          y -= h;
          const rect = svg("rect", {x: L + 1 + i * step, y, width: Math.max(step - 0.8, 0.8), height: h, class: "s-" + k});
          const t = svg("title"); t.textContent = `${r.lane_id || ""} ${k}: ${ms(r[k])}`;
          rect.append(t); c.append(rect);
        }
      }
    });
    const sorted = [...totals].sort((a, b) => a - b);
    const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    $("latency-words").textContent = rows.length
      ? `The last ${Math.min(rows.length, 100)} vehicle(s), from the camera to the arm (to the decision for those refused): median ${ms(pct(0.5))}, slowest ${ms(sorted[sorted.length - 1])}.`
      : "The last 100 vehicles, from the camera to the arm: none yet.";
  }

  // -- events -----------------------------------------------------------------------------
  function describe(e) {
    const d = e.data || {};
    const plate = d.license_plate ? ` ${d.license_plate}` : "";
    const by = d.who ? ` by ${d.who}` : "";
    const why = d.why ? `: “${d.why}”` : "";
    switch (e.type) {
      case "vehicle_detected": return ["", "vehicle on the arming loop"];
      case "local_reading": return ["", `plate read at the gate:${plate || " unreadable"}${d.confidence ? ` (${Math.round(100 * d.confidence)} %)` : ""}`];
      case "plate_read": return ["", `plate${plate}`];
      case "entry_granted": case "exit_granted": return ["", `${plate.trim()} may ${e.type === "exit_granted" ? "leave" : "enter"} (${d.reason || ""}, ${sourceWords(d.source)})`];
      case "entry_denied": case "exit_denied": return ["bad", `${plate.trim()} refused: ${d.reason || ""}`];
      case "barrier_opened": return ["", d.manual ? "arm opened by hand" : "arm opened"];
      case "barrier_closed": return ["", `arm down${d.position === "assumed" ? " (position assumed)" : ""}`];
      case "vehicle_entered": return ["", `${plate.trim()} entered${d.space_id ? ", space " + d.space_id : ""}`];
      case "vehicle_exited": return ["", `${plate.trim()} left`];
      case "vehicle_backed_out": return ["warn", "the vehicle backed out"];
      case "saga_completed": return ["", `done in ${ms(d.duration_ms || 0)}`];
      case "saga_compensated": return ["warn", `undone: ${d.reason || ""}`];
      case "saga_failed": return ["bad", `failed: ${d.reason || ""}`];
      case "fallback_used": return ["warn", `${stepWords(d.step)}: ${sourceWords(d.source)} used instead (${d.after || ""})`];
      case "circuit_state_changed": return ["warn", `${d.service}: ${d.to === "open" ? "paused after failures" : d.to === "closed" ? "back online" : "trying again"}`];
      case "manual_open": return ["warn", `opened by hand${by}${why}`];
      case "lane_mode_changed": return ["warn", `lane set to ${d.mode}${by}${why}`];
      case "space_state_changed": return ["warn", `space ${d.space_id} ${d.state === "out_of_service" ? "taken out of service" : "back in service"}${by}${why}`];
      case "permit_changed": return ["warn", `permit ${d.action === "deleted" ? "deleted" : "set"} for${plate}${by}${why}`];
      case "hardware_fault": return ["bad", `fault: ${d.device}: ${d.reason}`];
      case "hardware_recovered": return ["", `${d.device} recovered`];
      default: {
        const bits = ["reason", "why", "who"].filter((k) => d[k]).map((k) => String(d[k]));
        return [/fault|error|timeout|refused/.test(e.type) ? "bad" : "", String(e.type).replace(/_/g, " ") + plate + (bits.length ? ": " + bits.join(", ") : "")];
      }
    }
  }
  function eventItem(e) {
    const [tone, words] = describe(e);
    const li = el("li");
    const t = el("time", "", clock(e.ts));
    if (e.ts) t.dateTime = e.ts;
    li.append(t, el("span", tone, (e.lane_id ? e.lane_id + ": " : "") + words));
    li.dataset.type = e.type;
    return li;
  }
  const FINISH = new Set(["saga_completed", "saga_compensated", "saga_failed", "entry_denied", "exit_denied"]);
  function onEvent(e) {
    const list = $("events");
    list.prepend(eventItem(e));
    while (list.children.length > 50) list.lastChild.remove();
    const d = e.data || {};
    if (e.type === "barrier_opened" && d.stages_ms && e.lane_id) {
      laneStages[e.lane_id] = d.stages_ms;
      localLatency.push({lane_id: e.lane_id, ...d.stages_ms});
      if (localLatency.length > 100) localLatency.shift();
      want.latency = true;
    }
    if (e.lane_id && d.license_plate && ["plate_read", "local_reading"].includes(e.type)) laneVehicle[e.lane_id] = d.license_plate;
    const decided = /^(entry|exit)_(granted|denied)$/.test(e.type) && e.lane_id && d.saga_id;
    if (decided) laneDecision[e.lane_id] = {saga_id: d.saga_id, license_plate: d.license_plate, source: d.source, granted: e.type.endsWith("_granted"), reason: d.reason};
    if (FINISH.has(e.type) || e.type === "plate_read") want.vehicles = true;
    if (FINISH.has(e.type) || e.type === "hardware_fault") want.today = true;
    if (e.type === "permit_changed") want.permits = true;
    want.status = true;
    const now = FINISH.has(e.type) || decided;
    schedule(now ? 0 : 150, now);
  }

  // a daemon restarted on a new release serves a new page: say so, offer to load it
  let firstVersion = null;
  function noteVersion(v) {
    if (!v) return;
    if (firstVersion === null) { firstVersion = v; return; }
    if (v === firstVersion || $("reload")) return;
    const b = el("button", "", `Version ${v} is running: load its page`);
    b.id = "reload";
    b.type = "button";
    b.addEventListener("click", () => location.reload());
    $("lost").after(b);
  }

  // -- refresh (throttled) ----------------------------------------------------------------
  const want = {status: true, vehicles: true, latency: true, permits: true, spaces: true,
    today: true};
  // At most one refresh a second on bursts of events; a vehicle's end (its saga finished)
  // may come 250 ms after the last refresh, so that its tile shows it within a second.
  let timer = null, due = 0, running = false, lastRun = 0, urgentNext = false;
  function schedule(delay, urgent) {
    if (running) { urgentNext = urgentNext || Boolean(urgent); return; }
    const at = Math.max(Date.now() + delay, lastRun + (urgent ? URGENT_GAP_MS : MIN_REFRESH_MS));
    if (timer !== null) {
      if (at >= due) return;
      clearTimeout(timer);
    }
    due = at;
    timer = setTimeout(() => { timer = null; refresh(); }, Math.max(0, at - Date.now()));
  }
  async function refresh() {
    running = true;
    lastRun = Date.now();
    const w = {...want};
    for (const k of Object.keys(want)) want[k] = false;
    try {
      if (w.status) {
        const [s, wd] = await Promise.all([api("GET", "/api/status"),
          $("sim") ? api("GET", "/api/sim/world").catch(() => null) : null]);
        world = wd;
        $("gate").textContent = s.gate_id;
        noteVersion(s.version);
        for (const l of s.lanes || []) renderLane(l, world);
        renderSpaces(s.occupancy || {});
        renderServices(s);
        renderHealth(s);
        renderSim(s);
        if (!source || source.readyState === EventSource.OPEN) linkBack();
        // a lane still moving: look again soon, so the arm is drawn as it goes
        if ((s.lanes || []).some((l) => !["idle", "fault"].includes(l.state))) want.status = true;
      }
      if (w.vehicles) await loadVehicles();
      if (w.latency) await loadLatency();
      if (w.today) await loadToday();
      if (w.permits) await loadPermits();
      if (w.spaces) await loadSpaces();
    } catch (e) {
      for (const k of Object.keys(w)) if (w[k]) want[k] = true;
      if (!(e instanceof HttpError)) linkLost("the gateway does not answer");
    } finally {
      running = false;
      const urgent = urgentNext;
      urgentNext = false;
      if (Object.values(want).some(Boolean)) schedule(link.lost ? 3000 : 0, urgent && !link.lost);
    }
  }
  setInterval(() => { want.status = true; want.vehicles = true; schedule(0); }, SLOW_REFRESH_MS);

  let source = null;
  function connect() {
    source = new EventSource("/api/events/stream");
    source.onopen = () => { linkBack(); for (const k of Object.keys(want)) want[k] = true; schedule(0); };
    source.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* not an event */ } };
    source.onerror = () => {
      linkLost("the event stream stopped");
      if (source.readyState === EventSource.CLOSED) { source.close(); setTimeout(connect, 3000); }
    };
  }

  // -- admin ------------------------------------------------------------------------------
  function adminResult(ok, text) {
    const r = $("admin-result");
    r.className = "result " + (ok ? "ok" : "bad");
    r.textContent = text;
  }
  function tokenState(text, ok) {
    const t = $("token-state");
    t.textContent = text;
    t.className = ok === undefined ? "hint" : "result " + (ok ? "ok" : "bad");
  }
  async function checkToken() {
    if (!store(TOKEN_KEY)) { tokenState("No token: actions will be refused. The token is kept for this tab only."); return; }
    try {
      await api("GET", "/api/admin/check", undefined, true);
      tokenState("Token accepted for this tab.", true);
    } catch (e) {
      if (e.status === 404) tokenState("Token kept for this tab (this gateway cannot check it in advance).");
      else tokenState(e.status === 401 ? "Token refused: actions will be refused." : `Could not check the token: ${e.message}`, false);
    }
  }
  let askResolve = null;
  function ask(what) {
    const d = $("ask");
    $("ask-h").textContent = "Confirm";
    $("ask-what").textContent = what;
    $("ask-who").value = store(WHO_KEY);
    $("ask-why").value = "";
    const opener = document.activeElement;
    d.showModal();
    (store(WHO_KEY) ? $("ask-why") : $("ask-who")).focus();
    return new Promise((resolve) => {
      askResolve = (v) => { askResolve = null; if (d.open) d.close(); if (opener && opener.focus) opener.focus(); resolve(v); };
    });
  }
  async function adminAction(what, method, url, body) {
    const answer = await ask(what);
    if (!answer) return;
    store(WHO_KEY, answer.who);
    try {
      const r = await api(method, url, {...body, who: answer.who, why: answer.why}, true);
      const refused = r && (r.opened === false || r.changed === false);
      adminResult(!refused, refused ? `Not done: ${what}${r.reason ? " — " + r.reason : ""}` : `Done: ${what}.`);
    } catch (e) {
      adminResult(false, e.status === 401 ? `Refused: ${what} needs a valid admin token (${e.message}).` : `Refused: ${what} — ${e.message}`);
    }
    for (const k of Object.keys(want)) want[k] = true;
    schedule(0, true);
  }
  async function loadSpaces() {
    const sel = $("space");
    if (!sel) return;
    const rows = await api("GET", "/api/spaces");
    const keep = sel.value;
    sel.replaceChildren(...rows.map((sp) => {
      const o = el("option", "", `${sp.space_id} (${sp.state.replace(/_/g, " ")}${sp.plate ? ", " + sp.plate : ""})`);
      o.value = sp.space_id;
      return o;
    }));
    if (keep) sel.value = keep;
  }
  async function loadPermits() {
    const data = await api("GET", "/api/permits");
    const list = $("permits");
    const rows = (data.permits || []).filter((p) => !p.deleted);
    if (!rows.length) { list.replaceChildren(el("li", "hint", "No permit.")); return; }
    list.replaceChildren(...rows.map((p) => {
      const li = el("li");
      li.append(el("span", "plate", p.plate), el("span", "", `${p.kind}, ${p.source === "local" ? "entered here" : "from central"}${p.valid_until ? ", until " + p.valid_until.slice(0, 10) : ""}`));
      li.append(el("span", "note", p.note || ""));
      if (p.source === "local") {
        const b = el("button", "secondary", "Delete");
        b.type = "button";
        b.setAttribute("aria-label", `Delete the permit of ${p.plate}`);
        b.addEventListener("click", () => adminAction(`delete the permit of ${p.plate}`, "DELETE", `/api/permits/${encodeURIComponent(p.plate)}`, {}));
        li.append(b);
      }
      return li;
    }));
  }

  // -- wiring -----------------------------------------------------------------------------
  function wire() {
    for (const b of document.querySelectorAll("button.behaviour")) b.addEventListener("click", () => sendVehicle(b.dataset.behaviour));
    if ($("sim-central")) {
      $("sim-central").addEventListener("change", (e) => setFault("central", e.target.value));
      $("sim-backup").addEventListener("change", (e) => setFault("backup", e.target.value));
    }
    $("vehicles").addEventListener("click", (e) => {
      const b = e.target.closest("button.vehicle");
      if (b) openSaga(b.dataset.saga, b);
    });
    for (const d of [$("saga"), $("ask")]) {
      d.addEventListener("click", (e) => {
        if (e.target.closest("[data-close]") || e.target === d) {
          if (d.id === "ask" && askResolve) askResolve(null); else d.close();
        }
      });
    }
    $("ask").addEventListener("cancel", () => { if (askResolve) askResolve(null); });
    $("ask").addEventListener("close", () => { if (askResolve) askResolve(null); });
    $("saga").addEventListener("close", () => {
      closeDialogs();
      if (sagaOpener && sagaOpener.isConnected && sagaOpener.focus) sagaOpener.focus();
    });
    $("ask-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const who = $("ask-who").value.trim(), why = $("ask-why").value.trim();
      if (askResolve && who && why) askResolve({who, why});
    });
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      store(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      checkToken();
    });
    $("token-forget").addEventListener("click", () => { store(TOKEN_KEY, ""); checkToken(); });
    for (const row of document.querySelectorAll(".lane-admin")) {
      const lane = row.dataset.lane;
      for (const b of row.querySelectorAll("button")) {
        b.addEventListener("click", () => {
          if (b.dataset.act === "open") adminAction(`open ${lane}`, "POST", `/api/lanes/${encodeURIComponent(lane)}/open`, {});
          else adminAction(`${b.dataset.mode === "closed" ? "close" : "reopen"} ${lane}`, "POST", `/api/lanes/${encodeURIComponent(lane)}/mode`, {mode: b.dataset.mode});
        });
      }
    }
    $("space-off").addEventListener("click", () => { const sp = $("space").value; if (sp) adminAction(`take space ${sp} out of service`, "POST", `/api/spaces/${encodeURIComponent(sp)}/state`, {state: "out_of_service"}); });
    $("space-on").addEventListener("click", () => { const sp = $("space").value; if (sp) adminAction(`put space ${sp} back in service`, "POST", `/api/spaces/${encodeURIComponent(sp)}/state`, {state: "free"}); });
    $("permit-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const plate = $("permit-plate").value.toUpperCase().replace(/[\s-]/g, "");
      if (!plate) return;
      adminAction(`add a permit for ${plate}`, "PUT", `/api/permits/${encodeURIComponent(plate)}`, {kind: $("permit-kind").value, note: $("permit-note").value});
    });
  }

  wire();
  checkToken();
  connect();
  schedule(0);
})();
