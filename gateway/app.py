"""The composition root: builds, starts and stops everything, in order."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp import web

from gateway import __version__
from gateway.clock import Clock, SystemClock, iso
from gateway.core.errors import DeviceError, GatewayError
from gateway.core.fault_fixes import fix_for
from gateway.core.service_words import describe, outbox_words, queue_advice
from gateway.notify import reloading, sd_notify
from gateway.ops.daily import publish_daily_summaries
from gateway.ops.vehicle_log import VehicleLog
from gateway.os_threads import named_pool
from gateway.plates.reader import PlateReader
from gateway.reloading import reload, set_log_level, status_after
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.permit_sync import PermitSync
from gateway.sagas.runner import SagaRunner
from gateway.sagas.sync import OfflineSync
from gateway.services.backup import BackupClient
from gateway.services.central import CentralPool
from gateway.services.lane import GateService, LaneController
from gateway.settings import Settings
from gateway.sim.backup import SimBackup
from gateway.sim.central import SimCentralState
from gateway.sim.central import make_app as make_sim_central
from gateway.sim.daemon_faults import DaemonFaults, OffsetClock
from gateway.sim.faults import Faults, SimServer
from gateway.sim.planted import activate as activate_planted_faults
from gateway.sim.private_broker import PrivateBroker
from gateway.sim.traffic import SimLaneWorld
from gateway.sim.world import SimWorld
from gateway.store import (
    events,
    offline_queue,
    permits,
    plate_cache,
    retention,
    saga_log,
    spaces,
)
from gateway.store.images import ImageWriter, open_images
from gateway.store.store import Store
from gateway.store.vehicles import decision_source
from gateway.supervisor import Supervisor
from gateway.telemetry import storage
from gateway.telemetry.commands import RemoteCommands
from gateway.telemetry.discovery import discovery_messages
from gateway.telemetry.metrics import board, summary
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from gateway.telemetry.publisher import TelemetryPublisher, availability_topic
from gateway.web.app import make_app
from hardware.build import LaneDevices, build_lane_devices
from hardware.serial_loop import SerialLoopPort
from hardware.sim import board_path, sim_factory

log = logging.getLogger("gateway")
# How long a stop waits for records being written to services to be answered (a decision
# deadline and some): the whole stop stays well within the unit's TimeoutStopSec (20 s).
STOP_DRAIN_S = 3.0
# A request still being handled when the web server stops gets this long, then it is
# cancelled: aiohttp's default (60 s) let one keep-alive connection hold a SIGTERM for as long
# (seen in tests/integration/test_web_stream.py: the stop waited on one connection's task
# that was waiting for a request which never came, past systemd's stop timeout).
WEB_SHUTDOWN_S = 0.5
HOUSEKEEPING_INTERVAL_S = 3600.0


def _libc(name: str) -> Callable[..., int] | None:
    """A glibc allocator call (None elsewhere: musl, macOS)."""
    try:
        call: Callable[..., int] = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    return call


_malloc_trim = _libc("malloc_trim")
M_ARENA_MAX = -8  # mallopt's parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 128 * 1024


def tune_allocator() -> None:
    """At most two malloc arenas (before any thread starts). glibc gives each thread that
    allocates an arena of its own, up to 8 per core; every one keeps what its thread freed.
    With the cameras' grabbers, the capture and reader workers and onnxruntime's pool, the
    daemon held ~40 MB more under traffic than with two (bench/footprint.py).

    And a fixed mmap threshold (128 KiB, glibc's starting value): left to itself glibc
    raises it to the largest block freed, so after the first frame (2.7 MB) every frame,
    tensor and image temporary comes from the heap and stays there when freed; with the
    threshold fixed, each is its own mapping, given back when freed (under traffic with the
    plate reader: 198 → 178 MB resident, peak 223 → 196 MB). The camera decodes into reused
    buffers (hardware/camera_source.py), so frames do not pay a mapping each."""
    mallopt = _libc("mallopt")
    if mallopt is not None:
        mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


class Gateway:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.configured = settings  # as the file says (SIGHUP compares against this)
        # simulation: a wall clock the campaign can shift (gateway/sim/daemon_faults.py)
        sim_clock = OffsetClock() if settings.simulation.enabled and clock is None else None
        self.clock = clock or sim_clock or SystemClock()
        self.sim_daemon_faults = DaemonFaults(sim_clock) if sim_clock is not None else None
        self.started_at = self.clock.monotonic()
        self.stopping = asyncio.Event()
        self.lanes: dict[str, LaneController] = {}
        self.lane_errors: dict[str, str] = {}
        self.devices: dict[str, LaneDevices] = {}
        self.serial_ports: dict[str, SerialLoopPort] = {}
        self.sim: SimWorld | None = None
        self.sim_central: SimServer | None = None
        self.sim_faults = Faults()
        self.sim_central_state: SimCentralState | None = None
        self.private_broker: PrivateBroker | None = None  # the demo's mosquitto
        self.sim_backup: SimBackup | None = None
        self.sim_backup_mqtt: MqttConnection | None = None
        self.store: Store
        self.runner: SagaRunner
        self.sync: OfflineSync
        self.session: aiohttp.ClientSession | None = None
        self.mqtt: MqttConnection | None = None
        self.publisher: TelemetryPublisher | None = None
        self.reader: PlateReader | None = None
        self.images: ImageWriter | None = None  # the decisions' camera images ([images])
        self.web: web.AppRunner | None = None
        # the saga view's images: set where images are kept (gateway/web/image_routes.py)
        self.image_lister: Callable[[str], list[dict[str, Any]]] | None = None
        self.web_port: int | None = None
        # the commit counter of the event stream: a waiter remembers the count it saw and
        # waits until it moves, so a commit between its read and its wait is never lost
        self.commits = 0
        self.lane_changes = 0  # moves of the lanes' state (no commit of their own)
        self.streams_dropped = 0  # event-stream clients dropped for not reading
        self._status_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._storage_cache: tuple[float, dict[str, Any]] | None = None
        self._commit = asyncio.Event()  # replaced (not cleared) at each commit
        self._tasks: list[asyncio.Task[Any]] = []
        # every long-running background task: restarted when it fails, reported if it
        # keeps failing (/healthz, /api/status, the systemd watchdog)
        self.supervisor = Supervisor(self.clock)
        self._lot_full: bool | None = None
        self.dead_letters = 0
        # the per-vehicle journal line; a reload sets vehicle_log.mask_plates
        self.vehicle_log = VehicleLog(settings.logging.mask_plates)

    # -- start and stop ----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        activate_planted_faults(s.simulation.planted_faults)  # none outside a campaign
        self.store = await Store.open(s.database_path, s.zone_specs(),
                                      synchronous=s.store.synchronous,
                                      busy_timeout_ms=s.store.busy_timeout_ms)
        self.store.on_commit.append(self.notify_commit)
        if s.simulation.enabled and s.simulation.start_central:
            await self._start_sim_central()
        if s.simulation.enabled and s.simulation.private_broker:
            s = await self._start_private_broker()
        if s.simulation.enabled and s.simulation.start_backup:
            self._start_sim_backup()
        self.session = central_session(s)
        gate = GateService()
        backup = None
        if s.backup.enabled or s.telemetry.enabled:
            self.mqtt = MqttConnection(MqttOptions(
                s.mqtt.host, s.mqtt.port, client_id=f"parking-gateway-{s.gate.id}",
                username=s.mqtt.username, password=s.mqtt_password.reveal(), tls=s.mqtt.tls,
                ca_file=s.mqtt.ca_file, keepalive_s=s.mqtt.keepalive_s,
                reconnect_max_s=s.mqtt.reconnect_max_s,
                will=(availability_topic(s.mqtt.topic_prefix, s.gate.id), b"offline", True),
                will_reason="connection_lost"))
        if s.backup.enabled and self.mqtt is not None:
            backup = BackupClient(self.mqtt, s.mqtt.topic_prefix, s.gate.id)
        if s.telemetry.enabled and self.mqtt is not None:
            t = s.telemetry
            self.publisher = TelemetryPublisher(
                self.mqtt, self.store, prefix=s.mqtt.topic_prefix, gate_id=s.gate.id,
                state=self.status, metrics=self.metrics, inflight=t.inflight,
                state_min_interval_s=t.state_min_interval_s,
                metrics_interval_s=t.metrics_interval_s,
                discovery=discovery_messages(
                    discovery_prefix=t.discovery_prefix, prefix=s.mqtt.topic_prefix,
                    gate_id=s.gate.id, lanes=[(lane.id, lane.direction) for lane in s.lanes],
                ) if t.home_assistant else None,
                discovery_prefix=t.discovery_prefix, clock=self.clock)
            self.store.on_commit.append(self.publisher.changed)
            self.publisher.start(self.supervisor.spawn)
        if self.mqtt is not None:
            self.mqtt.start()
        registry = build_registry(s, self.session, self.clock, gate, backup)
        self.runner = build_runner(s, self.store, registry, self.clock)
        # before any lane can start a saga: no decision for a lane or plate whose saga a
        # stop left in flight until recovery has finished that one
        await self.runner.fence_unfinished()
        # the lanes record barrier_opened as they energise the relay: a saga stopped in its
        # open_barrier with no such event never opened the barrier
        self.runner.device_evidence = lambda conn, saga_id: events.recent_for_saga(
            conn, "barrier_opened", saga_id)
        self.sync = OfflineSync(self.store, registry.remote["license_plate_service"],
                                self.clock, gate_id=s.gate.id, deadline_s=s.central.deadline_s)
        self.store.on_commit.append(self.sync.wake)
        self._tasks.append(self.supervisor.spawn("offline sync", self.sync.run))
        # a whole permit list may take longer than a decision's call: its own deadline
        self.permit_sync = PermitSync(
            self.store, registry.remote["license_plate_service"], self.clock,
            gate_id=s.gate.id, deadline_s=max(5.0, 10 * s.central.deadline_s),
            interval_s=s.permits.sync_interval_s, retry_s=s.permits.retry_s)
        if s.permits.sync:
            self._tasks.append(self.supervisor.spawn("permit sync", self.permit_sync.run))
        self._tasks.append(self.supervisor.spawn("recovery", self._recover, once=True))
        if s.simulation.enabled:
            self.sim = SimWorld(s.simulation)
        # one reader for all lanes (one worker thread): its model loads in the background,
        # and until it is ready (or if it fails) the lanes go on without local readings
        cameras = any(lane.camera.kind != "none" for lane in s.lanes)
        self.reader = PlateReader(s.plates, cache_dir=s.data_dir / "models") if (
            s.plates.enabled and cameras) else None
        if self.reader is not None:
            self._tasks.append(self.supervisor.spawn("plate reader", self._load_reader,
                                                     once=True))
        self.images = open_images(s, self.clock)  # its own thread; None when off
        for lane in s.lanes:
            # each simulated lane has a mock board of its own, its outputs kept in a file
            # the way a Pi keeps them driven (relays-off reads it)
            factory = sim_factory(board_path(s.data_dir, lane.id)) \
                if s.simulation.enabled else None
            try:
                devices = build_lane_devices(lane, factory, self.serial_ports,
                                             unguarded=s.test_unguarded_safety)
            except DeviceError as exc:
                # one broken lane must not stop the others; it is reported, not hidden
                self.lane_errors[lane.id] = str(exc)
                log.error("%s", exc)
                await self._event("hardware_fault", {"device": "lane", "reason": str(exc)},
                                  lane.id)
                continue
            self.devices[lane.id] = devices
            controller = LaneController(lane, devices, self.runner, self.store, self.clock,
                                        s.gate.id, after_saga=self._after_saga,
                                        policy=s.policy, reader=self.reader,
                                        compare_anpr=s.plates.compare_anpr,
                                        images=self.images)
            self.lanes[lane.id] = controller
            gate.lanes[lane.id] = controller
            if self.sim is not None and devices.simulated:
                self.sim.add_lane(SimLaneWorld(lane.id, factory, devices.sim_camera,
                                               s.simulation), lane.direction)
        if s.telemetry.commands and self.mqtt is not None:
            commands = RemoteCommands(self.lanes, s.admin_token.reveal(), self._record,
                                      store=self.store, clock=self.clock,
                                      max_age_s=s.telemetry.command_max_age_s)
            self.mqtt.subscribe(f"{s.mqtt.topic_prefix}/gates/{s.gate.id}/cmd/+",
                                commands.handle)
        for port in self.serial_ports.values():
            port.on_fault = self._serial_fault(port)
            port.start()
        for controller in self.lanes.values():
            controller.on_change = self._lane_changed  # the status snapshot, the telemetry
            controller.vehicle_log = self.vehicle_log
            await controller.start()
        if self.sim is not None:
            self.sim.start(self._parked_plates)
        await self.check_occupancy()
        self._tasks.append(self.supervisor.spawn("housekeeping", self._housekeeping))
        if self.publisher is not None and self.mqtt is not None:  # daily, after 00:05 there
            self._tasks.append(self.supervisor.spawn("daily summary", partial(
                publish_daily_summaries, self.store, self.mqtt, self.clock,
                gate_id=s.gate.id, prefix=s.mqtt.topic_prefix, timezone=s.gate.timezone)))
        await self._start_web()
        log.info("gateway %s started: %d lane(s), web on http://%s:%s", s.gate.id,
                 len(self.lanes), s.web.host, self.web_port)

    async def stop(self) -> None:
        # No new vehicle from now on; a record being written to a service gets its answer
        # (bounded), then every saga stops where a crash would leave it (recovery finishes
        # it at the next start), well within systemd's TimeoutStopSec.
        runner = getattr(self, "runner", None)  # None: the start failed before it was built
        unanswered = await runner.drain(STOP_DRAIN_S) if runner is not None else 0
        if unanswered:
            log.warning("stopping with %d record(s) unanswered: their outcome is settled at "
                        "the next start", unanswered)
        self.stopping.set()
        self.notify_commit()
        if self.web is not None:
            await self.web.cleanup()
        if self.sim is not None:
            await self.sim.stop()
        for controller in self.lanes.values():
            await controller.stop()
        if self.images is not None:
            await self.images.close()  # what the lanes queued, within a few seconds
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.publisher is not None:  # its snapshots read the lanes' pins: before release
            await self.publisher.stop()
        for port in self.serial_ports.values():
            await port.stop()
        for devices in self.devices.values():
            devices.release()  # relays de-energised on every exit
        if self.reader is not None:
            self.reader.close()
        if self.session is not None:
            await self.session.close()
        if self.mqtt is not None:
            await self.mqtt.stop(last_words=self.publisher.clean_stop_message()
                                 if self.publisher is not None else None)
        if self.sim_backup_mqtt is not None:
            await self.sim_backup_mqtt.stop()
        if self.private_broker is not None:  # after every MQTT client has said goodbye
            await self.private_broker.stop()
        if self.sim_central is not None:
            await self.sim_central.stop()
        store: Store | None = getattr(self, "store", None)  # absent if start failed early
        if store is not None:
            await store.close()

    async def _start_sim_central(self) -> None:
        url = urlsplit(self.settings.central.base_urls[0])
        state = SimCentralState(blocked={"66BAD66"}, permits={"06PRM001"})
        self.sim_central_state = state
        self.sim_central = SimServer(make_sim_central(state, self.sim_faults), self.sim_faults,
                                     url.hostname or "127.0.0.1", url.port or 80)
        await self.sim_central.start()

    async def _start_private_broker(self) -> Settings:
        """The demo's mosquitto; the settings with mqtt.host/port pointing at it (at its
        port even when it could not start: the link then shows the fault)."""
        self.private_broker = PrivateBroker(self.settings.data_dir / "mosquitto")
        await self.private_broker.start()
        self.settings = msgspec.structs.replace(self.settings, mqtt=msgspec.structs.replace(
            self.settings.mqtt, host=self.private_broker.host, port=self.private_broker.port))
        return self.settings

    def _start_sim_backup(self) -> None:
        """The sim backup service on the gate's broker, its own client; another way to
        the sim central's records, so it shares their state (as the campaign wires it)."""
        m = self.settings.mqtt
        self.sim_backup_mqtt = MqttConnection(MqttOptions(
            m.host, m.port, client_id=f"sim-backup-{self.settings.gate.id}",
            reconnect_max_s=m.reconnect_max_s))
        self.sim_backup = SimBackup(self.sim_backup_mqtt, m.topic_prefix,
                                    state=self.sim_central_state)
        self.sim_backup_mqtt.start()

    async def _start_web(self) -> None:
        self.web = web.AppRunner(make_app(self), access_log=None, handle_signals=False,
                                 shutdown_timeout=WEB_SHUTDOWN_S)
        await self.web.setup()
        w = self.settings.web
        site = web.TCPSite(self.web, w.host, w.port)
        try:
            await site.start()
        except OSError as exc:
            # aiohttp's clean-up after a site that never started can wait on a server
            # that never ran: bound it, and do not run it again in stop()
            runner, self.web = self.web, None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.cleanup(), 2.0)
            raise GatewayError(f"web.host/web.port: cannot listen on {w.host}:{w.port} "
                               f"({exc.strerror or exc}); is another gateway running?") from None
        addresses = self.web.addresses
        self.web_port = addresses[0][1] if addresses else self.settings.web.port

    async def _load_reader(self) -> None:
        assert self.reader is not None
        await self.reader.start()
        await self._trim_memory()  # what building the model's graph used and freed
        if self.reader.fault:
            log.error("%s; lanes go on without local readings", self.reader.fault)
        else:
            model = self.reader.model
            log.log(logging.INFO if model is None or model.slim else logging.WARNING,
                    "plate reader ready (model loaded in %.2f s; %s)", self.reader.load_s,
                    model.note if model else "model given by the caller")

    async def _recover(self) -> None:
        outcomes = await self.runner.recover()
        if outcomes:
            log.info("recovered %d saga(s): %s", len(outcomes),
                     ", ".join(f"{o.saga_id} {o.status}" for o in outcomes))
            await self.check_occupancy()

    def _serial_fault(self, port: SerialLoopPort) -> Any:
        """The port's fault reports, per channel, to the lane whose loop uses the channel.
        A port-level report (channel None) is only logged: the port reports every channel
        it made unknown on its own, and only a channel's level clears that channel."""
        def on_fault(channel: int | None, reason: str, recovered: bool) -> None:
            if channel is None:
                (log.info if recovered else log.warning)("%s", reason)
                return
            for lane_id, devices in self.devices.items():
                for loop in (devices.arming, devices.safety):
                    if (getattr(loop, "port", None) is port
                            and getattr(loop, "channel", None) == channel):
                        self.lanes[lane_id].loop_fault(loop.name, reason, recovered)
        return on_fault

    async def _housekeeping(self) -> None:
        st = self.settings.store
        while True:
            wall = self.clock.wall()
            # events are cut by age only against a synchronised clock: one that is not
            # (a Pi before NTP, an RTC set wrong) says nothing about how old they are
            oldest = (iso(wall - st.events_max_age_days * 86400)
                      if self.clock.wall_synced() else None)
            await self.store.write(partial(events.prune, max_rows=st.events_max_rows,
                                           oldest_ts_kept=oldest))
            await self.store.write(partial(plate_cache.prune, now=wall,
                                           max_stale_s=self.runner.cache_max_stale_s,
                                           max_rows=st.plate_cache_max_rows))
            if self.clock.wall_synced():
                # terminal rows past their age (by age only against a synchronised clock),
                # in transactions of at most retention_batch_rows rows, each its own turn
                # on the database thread (other work runs in between)
                for prune, days in (
                        (retention.prune_sagas, st.sagas_max_age_days),
                        (retention.prune_sessions, st.sessions_max_age_days),
                        (retention.prune_offline_queue, st.offline_queue_max_age_days)):
                    job = partial(prune, older_than=iso(wall - days * 86400),
                                  batch=st.retention_batch_rows)
                    while True:
                        if await self.store.write(job) < st.retention_batch_rows:
                            break
                        await asyncio.sleep(0)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    # -- shared helpers ----------------------------------------------------------------
    def notify_commit(self) -> None:
        """A transaction committed (or the daemon is stopping): count it and wake everyone
        waiting on the count before it. The event is swapped, never cleared, so no waiter
        can clear away another's wake-up."""
        self.commits += 1
        woken, self._commit = self._commit, asyncio.Event()
        woken.set()

    async def wait_for_commit(self, seen: int, within_s: float) -> int:
        """Wait until the commit count is past ``seen`` (read it *before* reading the
        database), or ``within_s``; return the count now."""
        if self.commits == seen:
            moved = self._commit
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):  # not wait_for: see gateway/sagas/sync.py
                    await moved.wait()
        return self.commits

    async def record(self, type_: str, data: dict[str, Any]) -> None:
        await self._event(type_, data)

    async def _event(self, type_: str, data: dict[str, Any], lane_id: str | None = None) -> None:
        await self.store.record_event(self.clock, self.settings.gate.id, type_, data, lane_id)

    def _record(self, type_: str, data: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._event(type_, data))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _parked_plates(self) -> list[str]:
        rows = await self.store.read(lambda c: c.execute(
            "SELECT plate FROM vehicle_sessions WHERE status='inside' LIMIT 200").fetchall())
        return [r[0] for r in rows]

    async def _after_saga(self) -> None:
        await self.check_occupancy()
        await self._trim_memory()  # what the vehicle's frames, encodes and reading freed

    async def _trim_memory(self) -> None:
        """Freed memory back to the system. glibc keeps what a thread freed in that thread's
        arena for its next allocation: without this the daemon's resident size grew by
        100-200 MB over its first vehicles and stayed there. In a worker thread (a trim
        walks every arena: a millisecond or so)."""
        if _malloc_trim is not None:
            await asyncio.get_running_loop().run_in_executor(None, _malloc_trim, 0)

    async def check_occupancy(self) -> None:
        occ = await self.store.occupancy()
        full = occ["free"] == 0
        if full != self._lot_full:
            if self._lot_full is not None:
                await self._event("lot_full" if full else "lot_available", occ)
            self._lot_full = full
            for controller in self.lanes.values():
                controller.set_full_sign(full)

    async def set_space_state(self, space_id: str, state: str, who: str = "",
                              why: str = "") -> None:
        now = iso(self.clock.wall())
        await self.store.write(lambda c: spaces.set_state(c, space_id, state, now))
        await self._event("space_state_changed", {"space_id": space_id, "state": state,
                                                  "who": who, "why": why})
        await self.check_occupancy()

    def saga_images(self, saga_id: str) -> list[dict[str, Any]]:
        """The images kept of a saga's vehicle (crop, frames), for the saga view."""
        return self.image_lister(saga_id) if self.image_lister is not None else []

    # -- status ------------------------------------------------------------------------
    def central_circuit(self) -> str:
        service = self.runner.registry.remote.get("license_plate_service")
        return service.circuit() if isinstance(service, CentralPool) else "unknown"

    def backup_circuit(self) -> str:
        if not self.settings.backup.enabled:
            return "disabled"
        breaker = self.runner.chain.breakers.get("alternative_license_plate_service")
        return breaker.current_state(self.clock.monotonic()).value if breaker else "closed"

    def _service(self, which: str) -> dict[str, Any]:
        """The central or backup service: the breaker's state and the same in plain words."""
        now = self.clock.monotonic()
        if which == "central":
            name, deadline = "license_plate_service", self.settings.central.deadline_s
            circuit, enabled = self.central_circuit(), True
            pool = self.runner.registry.remote.get(name)
            retry = pool.circuit_wait_s() if isinstance(pool, CentralPool) else 0.0
        else:
            name, deadline = "alternative_license_plate_service", self.settings.backup.deadline_s
            circuit, enabled = self.backup_circuit(), self.settings.backup.enabled
            breaker = self.runner.chain.breakers.get(name)
            retry = breaker.wait_s(now) if breaker is not None else 0.0
        pool = self.runner.registry.remote.get(name)
        # central: the pool sees every call (the sync's too); the backup: the sagas' calls
        stats = pool.stats if isinstance(pool, CentralPool) else self.runner.chain.stats.get(name)
        words = describe(circuit, retry_in_s=retry, deadline_s=deadline, stats=stats,
                         opened_after=stats.failures_in_a_row if stats else 0, enabled=enabled,
                         now=now)
        return {"circuit": circuit, "state": words.state, "summary": words.summary,
                "failures": stats.failures_in_a_row if stats else 0,
                "retry_in_s": round(retry, 1) if circuit == "open" else None,
                "last_error": (stats.last_error or None) if stats else None}

    def _mqtt_view(self) -> dict[str, Any]:
        link = self.mqtt
        view: dict[str, Any] = {"connected": bool(link and link.connected)}
        if link is not None and link.last_error:
            view["error"] = link.last_error
        if link is None:
            view.update(state="disabled", summary="telemetry is off")
        elif link.connected:
            view.update(state="online", summary="connected to the broker")
        else:
            view.update(state="offline", summary="not connected to the broker"
                        + (f" ({link.last_error})" if link.last_error else "")
                        + "; events wait in the outbox")
        return view

    def _lane_status(self, controller: LaneController) -> dict[str, Any]:
        lane = controller.status()
        lane["fault_fixes"] = {d: fix_for(d, why) for d, why in lane["faults"].items()}
        lane["vehicle"] = ({"license_plate": controller.lane.plate,
                            "saga_id": controller.lane.saga_id}
                           if controller.lane.saga_id else None)
        last = lane.get("last") or {}
        if last:  # the stages of the last open (a denied vehicle has none)
            lane["last"] = {**last, "source": decision_source(last.get("sources") or {}),
                            "stages_ms": {k: v for k, v in controller.latencies[-1].items()
                                          if k != "at"}
                            if controller.latencies and last.get("status") == "completed"
                            else None}
        return lane

    def health_problems(self) -> list[str]:
        problems = list(self.lane_errors.values())
        if self.images is not None and self.images.problem():
            problems.append(self.images.problem())
        if self.private_broker is not None and self.private_broker.fault:
            problems.append(self.private_broker.fault)
        if self.dead_letters:
            problems.append(f"{self.dead_letters} record(s) refused by the central service "
                            "(see offline_queue.dead_letters)")
        for controller in self.lanes.values():
            for device, why in controller.status()["faults"].items():
                problems.append(f"lane {controller.id}: {device}: {why}")
        if self.central_circuit() == "open":
            problems.append("central service paused after repeated failures: vehicles are "
                            "decided by the backup, the cache, the permit list or the policy")
        problems += self.supervisor.problems()
        if self.reader is not None and self.reader.fault:
            problems.append(f"plate reader: {self.reader.fault}")
        if self.mqtt is not None and self.mqtt.refusing:  # events stay in the outbox
            problems.append("telemetry: the broker refuses publishes: " + ", ".join(
                f"{topic}: {reason}" for topic, reason in sorted(self.mqtt.refusing.items())))
        store: Store | None = getattr(self, "store", None)
        if store is not None and (store.disk_full or store.last_write_error):
            problems.append(f"store: {'disk full, ' if store.disk_full else ''}writes "
                            f"failing ({store.write_failures} so far): "
                            f"{store.last_write_error}")
        return problems

    def health_warnings(self) -> list[str]:
        """What the operator must hear of while the gate still works: on the page and in
        /api/status's problems, not a failing /healthz (a restart or a rolled-back upgrade
        would not fix it), like the storage report's low free space."""
        if self.clock.wall_synced():
            return []
        return ["clock: the time is not synchronised, so the times on records and events "
                "may be wrong (vehicles are still let in and out): check the time service "
                "(timedatectl status should say 'System clock synchronized: yes'; "
                "systemd-timesyncd or chrony running), the network to the NTP server, and "
                "the RTC and its battery if the board has one"]

    async def metrics(self) -> dict[str, Any]:
        counts = await self.store.read(saga_log.status_counts)  # kept counters, no count(*)
        stages: dict[str, dict[str, float]] = {}
        for controller in self.lanes.values():
            for stage in ("frame", "plate", "decision", "relay", "total"):
                # a refused vehicle's stages up to its decision count too (it has no relay)
                rows = [*controller.latencies, *controller.refusals] if stage in (
                    "frame", "plate", "decision") else controller.latencies
                stages[f"{controller.id}.{stage}"] = summary(x.get(stage, 0.0) for x in rows)
        central = self.runner.registry.remote.get("license_plate_service")
        return {
            "gate_id": self.settings.gate.id, "time": iso(self.clock.wall()),
            "sagas": counts, "latency_ms": stages,
            "breakers": {"central": self.central_circuit(), "backup": self.backup_circuit()},
            "central_replies_refused": sum(
                (i.rejected for i in central.instances), Counter()) if isinstance(
                    central, CentralPool) else {},
            "outbox_pending": await self.store.read(events.outbox_pending),
            "events_published": self.publisher.published if self.publisher else 0,
            "publishes_refused": dict(self.publisher.publishes_refused)
            if self.publisher else {},
            "outbox_dropped": await self.store.read(
                partial(events.read_counter, name="outbox_dropped")),
            "offline_queue": await self.store.read(offline_queue.counts),
            "offline_sync": {"synced": self.sync.synced, "lost_races": self.sync.lost},
            "saga_log_write_retries": self.runner.write_retries,
            "sagas_being_recovered": len(self.runner.fences.sagas),
            "mqtt": {"connects": self.mqtt.connects, "disconnects": self.mqtt.disconnects,
                     "reconnects": self.mqtt.reconnects, "refused": dict(self.mqtt.refused)}
            if self.mqtt is not None else None,
            "task_restarts": {name: t["restarts"]
                              for name, t in self.supervisor.as_json().items()},
            "board": board(self.settings.data_dir),
        }

    async def status(self) -> dict[str, Any]:
        """The gate's snapshot (the page, /metrics, the MQTT state topic). The same snapshot
        is given again until something is committed or a lane moves, for at most 0.25 s
        (its clocks): a page, a scrape and the telemetry asking at once cost one."""
        key = (self.commits, self.lane_changes, int(self.clock.monotonic() * 4))
        if self._status_cache is not None and self._status_cache[0] == key:
            return self._status_cache[1]
        snapshot = await self._status()
        self._status_cache = (key, snapshot)
        return snapshot

    def changed(self) -> None:
        """Something the status shows moved without a commit (a lane, a simulated fault)."""
        self.lane_changes += 1

    def _lane_changed(self) -> None:
        self.changed()
        if self.publisher is not None:
            self.publisher.changed()

    def _storage_report(self) -> dict[str, Any]:
        """File sizes and the disk's free space, looked at every 5 s at most."""
        now = self.clock.monotonic()
        if self._storage_cache is None or now - self._storage_cache[0] >= 5.0:
            self._storage_cache = (now, storage.report(
                self.settings, self.images.store.usage()["bytes"] if self.images else None))
        return self._storage_cache[1]

    async def _status(self) -> dict[str, Any]:
        def read(conn: Any) -> dict[str, Any]:  # one trip to the database thread
            queue = offline_queue.counts(conn)
            return {"occupancy": spaces.occupancy(conn), "zones": spaces.zones(conn),
                    "pending": events.outbox_pending(conn), "queue": queue,
                    "dead": offline_queue.dead_letters(conn, limit=10) if queue["dead"]
                    else [], "dropped": events.read_counter(conn, name="outbox_dropped"),
                    "permits": permits.counts(conn), "permits_as_of": permits.as_of(conn)}

        db = await self.store.read(read)
        occ, pending, queue, dead = db["occupancy"], db["pending"], db["queue"], db["dead"]
        self.dead_letters = queue["dead"]
        lanes = [self._lane_status(c) for c in self.lanes.values()]
        lanes += [{"id": lane, "direction": "", "state": "fault", "barrier": "unknown",
                   "loops": {}, "faults": {"lane": why}, "last": {},
                   "fault_fixes": {"lane": fix_for("lane", why)}, "vehicle": None}
                  for lane, why in self.lane_errors.items()]
        storage_report = self._storage_report()
        problems = self.health_problems() + self.health_warnings()
        if storage_report["problem"]:
            problems.append(storage_report["problem"])
        return {
            "gate_id": self.settings.gate.id, "version": __version__,
            "uptime_s": round(self.clock.monotonic() - self.started_at, 1),
            "time": iso(self.clock.wall()), "wall_synced": self.clock.wall_synced(),
            "occupancy": {**occ, "zones": db["zones"]},
            "lanes": lanes,
            "services": {"central": self._service("central"),
                         "backup": self._service("backup"),
                         "mqtt": self._mqtt_view()},
            "outbox": {"pending": pending, "dropped": db["dropped"],
                "summary": outbox_words(pending, self.mqtt is not None,
                                        bool(self.mqtt and self.mqtt.connected))},
            "offline_queue": {"pending": queue["pending"], "dead": queue["dead"],
                              "dead_letters": dead,
                              "advice": queue_advice(queue["pending"], queue["dead"])},
            "plate_reader": None if self.reader is None else {
                "ready": self.reader.ready, "fault": self.reader.fault or None,
                "load_s": round(self.reader.load_s, 2),
                "model": None if (m := self.reader.model) is None else {
                    "slim": m.slim, "note": m.note}},
            "permits": {**db["permits"], "as_of": db["permits_as_of"],
                        "last_error": self.permit_sync.last_error or None},
            "images": self.images.usage() if self.images is not None else None,
            "storage": storage_report,
            "clock": {"synced": self.clock.wall_synced(),
                      "summary": "synchronised" if self.clock.wall_synced() else
                      "NOT synchronised: times on records may be wrong; check the time "
                      "service (timedatectl status) and the network to the NTP server"},
            "store": {"disk_full": self.store.disk_full,
                      "write_failures": self.store.write_failures,
                      "last_write_error": self.store.last_write_error},
            "healthy": not problems, "problems": problems,
            "tasks": self.supervisor.as_json(),
            "simulation": {"collisions": self.sim.collisions} if self.sim is not None
            else None,
            "sim_central": self.sim_faults.as_json() if self.sim_central else None,
            "sim_backup": {"mode": self.sim_backup.mode, "requests": self.sim_backup.requests}
            if self.sim_backup is not None else None,
        }


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    # asyncio.to_thread's workers (the capture, image encodes) named in the OS too; the
    # size is asyncio's own default
    loop.set_default_executor(named_pool(min(32, (os.cpu_count() or 1) + 4), "asyncio"))
    gateway = Gateway(settings)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[Any]] = set()
    started = False

    def on_hup() -> None:  # one reload at a time, each to its end
        if not started:
            log.warning("reload: ignored, the gateway is still starting")
        elif not reloads:
            # systemd shows the unit "reloading" until the READY=1 of _reload_done
            sd_notify(settings.notify_socket, reloading())
            task = asyncio.ensure_future(reload(gateway))
            reloads.add(task)
            task.add_done_callback(_reload_done)

    def _reload_done(task: asyncio.Task[Any]) -> None:
        reloads.discard(task)
        if task.cancelled():  # the daemon is stopping: no READY=1 after its STOPPING=1
            return
        if task.exception() is not None:
            log.error("reload failed", exc_info=task.exception())
        data = None if task.exception() is not None else task.result()
        sd_notify(settings.notify_socket,
                  "READY=1\nSTATUS=" + status_after(len(gateway.lanes), data))

    loop.add_signal_handler(signal.SIGHUP, on_hup)  # not the default: SIGHUP would kill

    watchdog: asyncio.Task[None] | None = None
    try:
        await gateway.start()
        started = True
        # What start-up made (modules, settings, the app) lives as long as the daemon:
        # kept out of the collector's full passes, which took up to 150 ms under traffic
        # (bench/lane_latency.py's tails) scanning it again and again.
        gc.freeze()
        sd_notify(settings.notify_socket, f"READY=1\nSTATUS=serving {len(gateway.lanes)} lane(s)")
        if settings.watchdog_s > 0:
            watchdog = asyncio.create_task(_watchdog(gateway, settings.watchdog_s / 2))
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping")
    finally:
        sd_notify(settings.notify_socket, "STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
        stop_began = time.monotonic()
        await gateway.stop()
        log.info("stopped in %.2fs", time.monotonic() - stop_began)


async def _watchdog(gateway: Gateway, every_s: float) -> None:
    """Tell systemd we are alive only while the loop runs, the database answers and no
    background task keeps failing: a hung database thread, or a task that fails again after
    each restart, then gets the daemon restarted."""
    withheld = False
    while True:
        await asyncio.wait_for(gateway.store.read(lambda c: c.execute("SELECT 1").fetchone()),
                               every_s)
        failing = gateway.supervisor.watchdog_problems()
        if failing and not withheld:
            log.error("watchdog: no longer fed while %s", "; ".join(failing))
            sd_notify(gateway.settings.notify_socket, "STATUS=" + "; ".join(failing))
        elif withheld and not failing:
            log.warning("watchdog: fed again, no task is failing")
            sd_notify(gateway.settings.notify_socket,
                      f"STATUS=serving {len(gateway.lanes)} lane(s)")
        withheld = bool(failing)
        if not failing:
            sd_notify(gateway.settings.notify_socket, "WATCHDOG=1")
        await asyncio.sleep(every_s)


def run_daemon(settings: Settings) -> int:
    tune_allocator()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_log_level(settings)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(serve(settings))
    return 0
