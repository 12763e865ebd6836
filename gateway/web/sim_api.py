"""The simulation routes (contracts/web-api.md): 404 unless the daemon simulates."""

from __future__ import annotations

from aiohttp import web

from gateway.web import schemas as s
from gateway.web.http import GATEWAY, error, read_body, reply, require_admin


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/api/sim/lanes/{lane_id}/vehicles", sim_vehicle)
    r.add_get("/api/sim/world", sim_world)
    r.add_get("/api/sim/vehicles/{vehicle_id}", sim_vehicle_status)
    r.add_post("/api/sim/central/fault", sim_central_fault)
    r.add_post("/api/sim/backup/fault", sim_backup_fault)
    r.add_post("/api/sim/faults", sim_daemon_faults)


async def sim_vehicle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None:
        return error(404, "simulation is not enabled")
    lane_id = request.match_info["lane_id"]
    if lane_id not in gw.sim.worlds:
        return error(404, f"no simulated lane {lane_id!r}")
    body = await read_body(request, s.SimVehicleRequest)
    vehicle = gw.sim.add_vehicle(lane_id, body.plate, body.behaviour)
    return reply({"vehicle_id": vehicle.vehicle_id}, s.SimVehicleAccepted, 202)


async def sim_central_fault(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None or gw.sim_central is None:
        return error(404, "the simulated central service does not run in this daemon")
    body = await read_body(request, s.FaultRequest)
    await gw.sim_faults.set(body)
    return reply(gw.sim_faults.as_json(), s.SimCentralFaults)


async def sim_backup_fault(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim_backup is None:
        return error(404, "the simulated backup service does not run in this daemon")
    body = await read_body(request, s.BackupFaultRequest)
    backup = gw.sim_backup
    backup.mode, backup.fail_fraction, backup.delay_s = body.mode, body.fail_fraction, body.delay_s
    return reply({"mode": backup.mode, "fail_fraction": backup.fail_fraction,
                  "delay_s": backup.delay_s, "requests": backup.requests}, s.SimBackupFaults)


async def sim_daemon_faults(request: web.Request) -> web.Response:
    require_admin(request)
    gw = request.app[GATEWAY]
    if gw.sim_daemon_faults is None:
        return error(404, "simulation is not enabled")
    body = await read_body(request, s.DaemonFaultRequest)
    return reply(await gw.sim_daemon_faults.set(body, gw.store), s.DaemonFaults)


async def sim_world(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None:
        return error(404, "simulation is not enabled")
    return reply(gw.sim.as_json(), s.SimWorld)


async def sim_vehicle_status(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None:
        return error(404, "simulation is not enabled")
    vehicle = gw.sim.vehicles.get(request.match_info["vehicle_id"])
    return reply(vehicle.as_json(), s.SimVehicle) if vehicle else error(404, "no such vehicle")
