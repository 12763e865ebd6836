"""The offline queue against the faults that broke it (issue 9, defects 2-5), with real
components: the sim central on 127.0.0.1 (including a central that commits a write and then
does not answer), the SQLite store in ``tmp_path``, the real runner and ``OfflineSync``.

After each scenario the central service must hold each entry and exit at most once per
idempotency key, a live one for every completed saga, and no live record for a compensated
saga."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.clock import SystemClock
from gateway.core.steps import ENTRY, EXIT
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.policy import SagaOutcome
from gateway.sagas.runner import SagaRunner
from gateway.sagas.sync import OfflineSync
from gateway.services.base import HasCircuit, ServiceRegistry
from gateway.settings import Settings, parse_settings
from gateway.sim.central import SimCentralState, make_app
from gateway.sim.faults import FaultRequest, Faults, SimServer
from gateway.sim.gate import InstantGate
from gateway.sim.inprocess import InProcessPlateService
from gateway.store import Store, offline_queue

Json = dict[str, Any]


class HeldGate(InstantGate):
    """The simulated lane, but the vehicle can be held on the loop: ``confirm_passage``
    waits for ``go`` while ``hold`` is set (the driver hesitates, then backs out)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.hold_at = "confirm_passage"  # or "open_barrier": the arm has not moved yet
        self.at_passage = asyncio.Event()
        self.go = asyncio.Event()

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        if operation == self.hold_at and self.hold and not payload.get("recovering"):
            self.at_passage.set()
            await self.go.wait()
        return await super().call(operation, payload, idempotency_key=idempotency_key,
                                  deadline_s=deadline_s)


@dataclass
class World:
    runner: SagaRunner
    store: Store
    central: SimCentralState
    faults: Faults
    sync: OfflineSync
    gate: HeldGate
    backup: InProcessPlateService | None
    outcomes: list[SagaOutcome]
    settings: Settings
    registry: ServiceRegistry

    def restarted(self) -> SagaRunner:
        """A runner as a restarted daemon builds it, on the same database and services."""
        self.runner = build_runner(self.settings, self.store, self.registry, SystemClock())
        return self.runner

    async def fault(self, mode: str, delay_s: float = 1.0) -> None:
        await self.faults.set(FaultRequest(mode=mode, delay_s=delay_s))

    async def entry(self, plate: str, behaviour: str = "pass") -> SagaOutcome:
        out = await self.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": plate,
                                            "behaviour": behaviour})
        self.outcomes.append(out)
        return out

    async def exit(self, plate: str) -> SagaOutcome:
        out = await self.runner.run(EXIT, {"lane_id": "exit-1", "license_plate": plate})
        self.outcomes.append(out)
        return out

    async def visit(self, plate: str) -> None:
        """A visit while the central service is fine: the plate's answer is cached."""
        assert (await self.entry(plate)).succeeded
        assert (await self.exit(plate)).succeeded

    async def counts(self) -> dict[str, int]:
        return await self.store.read(offline_queue.counts)

    async def rows(self) -> list[Json]:
        return await self.store.read(
            lambda c: [dict(r) for r in c.execute("SELECT * FROM offline_queue ORDER BY id")])

    async def drain_all(self) -> int:
        """Central answers again: make every waiting row due, send, until none waits."""
        sent = 0
        for _ in range(40):
            await self.store.write(
                lambda c: c.execute("UPDATE offline_queue SET next_attempt_at=0 "
                                    "WHERE state='pending'"))
            sent += await self.sync.drain()
            counts = await self.counts()
            if counts["pending"] == 0 and counts.get("sending", 0) == 0:
                return sent
            await asyncio.sleep(0.02)
        raise AssertionError(f"the queue did not drain: {await self.rows()}")

    def check_central(self) -> None:
        """Each record once per key; live for completed sagas, never for compensated."""
        for o in self.outcomes:
            for kind, records in (("entry", self.central.entries),
                                  ("exit", self.central.exits)):
                key = f"{o.saga_id}:create_{kind}_record"
                mine = [r for r in records.values() if r["idempotency_key"] == key]
                assert len(mine) <= 1, (key, mine)
                if o.status == "completed" and o.kind == kind:
                    assert [r["status"] for r in mine] == ["active"], (o, mine)
                if o.status == "compensated":
                    assert all(r["status"] == "cancelled" for r in mine), (o, mine)


@asynccontextmanager
async def make_world(tmp_path, *, backup: bool = False, failure_threshold: int = 1000,
                     ) -> AsyncIterator[World]:
    state, faults = SimCentralState(), Faults()
    server = SimServer(make_app(state, faults), faults, "127.0.0.1", 0)
    await server.start()
    settings = parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path}"
[central]
base_urls = ["{server.url}"]
deadline_s = 0.5
retry_count = 0
decision_deadline_s = 1.2
failure_threshold = {failure_threshold}
reset_timeout_s = 0.2
[backup]
enabled = {"true" if backup else "false"}
deadline_s = 0.3
[simulation]
enabled = true
[[zones]]
name = "A"
spaces = 20
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
""", "t.toml")
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    clock = SystemClock()
    gate = HeldGate()
    alt = InProcessPlateService("alternative_license_plate_service") if backup else None
    registry = build_registry(settings, session, clock, gate, alt)
    runner = build_runner(settings, store, registry, clock)
    sync = OfflineSync(store, registry.remote["license_plate_service"], clock, gate_id="g1",
                       deadline_s=1.5)
    try:
        yield World(runner, store, state, faults, sync, gate, alt, [], settings, registry)
    finally:
        await session.close()
        await store.close()
        await server.stop()


def live(records: dict[str, Json], key: str) -> list[Json]:
    return [r for r in records.values()
            if r["idempotency_key"] == key and r["status"] == "active"]


# -- defect 2: a create sent and not answered is "outcome unknown" ----------------------
async def test_a_timed_out_create_whose_vehicle_backs_out_is_replayed_then_cancelled(
        tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("commit_no_reply")  # central commits the entry, the answer is lost
        out = await w.entry("34ABC123", behaviour="back_out")
        assert out.status == "compensated", out.reason
        assert out.sources["create_entry_record"] == "queue"
        key = f"{out.saga_id}:create_entry_record"
        assert len(live(w.central.entries, key)) == 1  # the write landed
        await w.fault("ok")
        await w.drain_all()
        assert live(w.central.entries, key) == []  # learned its id, then cancelled it
        w.check_central()


async def test_a_create_never_sent_whose_vehicle_backs_out_is_dropped_unsent(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("refuse")  # no connection: nothing can have reached central
        out = await w.entry("34ABC123", behaviour="back_out")
        assert out.status == "compensated", out.reason
        counts = await w.counts()
        assert counts["dropped"] == 1 and counts["pending"] == 0
        await w.fault("ok")
        assert await w.drain_all() == 0
        assert f"{out.saga_id}:create_entry_record" not in w.central.key_hits
        w.check_central()


# -- defect 3: every transition of a queue row is compare-and-set -----------------------
async def test_a_back_out_while_the_sync_sends_the_create_cannot_orphan_it(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("refuse")
        w.gate.hold = True
        saga = asyncio.create_task(w.entry("34ABC123", behaviour="back_out"))
        await asyncio.wait_for(w.gate.at_passage.wait(), 5)
        (row,) = [r for r in await w.rows() if r["state"] == "pending"]
        assert row["operation"] == "create_entry_record"
        # central answers again, slowly: the sync's create is in flight when the car backs out
        await w.fault("slow", delay_s=0.25)
        injected = w.faults.injected
        sending = asyncio.create_task(w.sync.drain())
        for _ in range(200):
            if w.faults.injected > injected:
                break
            await asyncio.sleep(0.005)
        assert w.faults.injected > injected, "the sync never sent"
        w.gate.go.set()
        out = await asyncio.wait_for(saga, 5)
        assert out.status == "compensated", out.reason
        await asyncio.wait_for(sending, 5)
        await w.fault("ok")
        await w.drain_all()
        key = f"{out.saga_id}:create_entry_record"
        assert key in w.central.key_hits  # the create did reach central
        assert live(w.central.entries, key) == []
        states = {r["operation"]: r["state"] for r in await w.rows()}
        assert states == {"create_entry_record": "sent", "cancel_entry_record": "sent"}
        w.check_central()


# -- defect 4: no spinning, no blocking -------------------------------------------------
async def test_a_row_waiting_for_its_peer_backs_off_with_it(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("refuse")
        entry = await w.entry("34ABC123")
        exit_ = await w.exit("34ABC123")  # refers to the entry's local id
        assert entry.sources["create_entry_record"] == "queue"
        assert exit_.sources["create_exit_record"] == "queue"
        await w.fault("error500")  # the entry is refused for now: it backs off
        reads = 0
        real_read = w.store.read

        async def counting(fn: Callable[..., Any]) -> Any:
            nonlocal reads
            reads += 1
            return await real_read(fn)

        w.store.read = counting  # type: ignore[method-assign]
        w.store.on_commit.append(w.sync.wake)  # as the daemon wires it
        task = asyncio.create_task(w.sync.run())
        await asyncio.sleep(1.0)  # a fixed window: with the sync's 1 s backoff, ~2 passes
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        w.store.read = real_read  # type: ignore[method-assign]
        assert reads <= 40, f"{reads} store reads in 1 s: the sync spins"
        # the exit waited for its entry: never sent while the entry backed off
        assert f"{exit_.saga_id}:create_exit_record" not in w.central.key_hits
        await w.fault("ok")
        await w.drain_all()
        (central_entry_id,) = [i for i, r in w.central.entries.items()
                               if r["idempotency_key"] == f"{entry.saga_id}:create_entry_record"]
        (record,) = [r for r in w.central.exits.values()
                     if r["idempotency_key"] == f"{exit_.saga_id}:create_exit_record"]
        assert record["entry_id"] == central_entry_id
        w.check_central()


async def test_a_dead_letter_takes_its_dependents_and_blocks_no_one_else(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("BAD1")
        await w.visit("GOOD1")
        await w.fault("refuse")
        bad_in = await w.entry("BAD1")
        bad_out = await w.exit("BAD1")  # depends on bad_in's record
        good = await w.entry("GOOD1")  # another saga, queued after both
        assert {o.sources["create_entry_record" if o.kind == "entry" else "create_exit_record"]
                for o in (bad_in, bad_out, good)} == {"queue"}
        w.central.reject_plates.add("BAD1")  # central refuses BAD1's entry for good
        await w.fault("ok")
        await w.drain_all()
        by_op = {(r["saga_id"], r["operation"]): r for r in await w.rows()}
        assert by_op[(bad_in.saga_id, "create_entry_record")]["state"] == "dead"
        dependent = by_op[(bad_out.saga_id, "create_exit_record")]
        assert dependent["state"] == "dead" and "BAD1" not in w.central.key_hits
        assert f"{bad_out.saga_id}:create_exit_record" not in w.central.key_hits
        assert by_op[(good.saga_id, "create_entry_record")]["state"] == "sent"
        assert len(live(w.central.entries, f"{good.saga_id}:create_entry_record")) == 1
        counts = await w.counts()
        assert counts["dead"] == 2 and counts["pending"] == 0


async def until_the_breaker_admits(w: World) -> None:
    pool = w.sync.central
    assert isinstance(pool, HasCircuit)
    # the breaker's own reset timeout is time, not an event; wait_s is exact (then 0)
    await asyncio.sleep(pool.circuit_wait_s())
    assert pool.circuit_wait_s() == 0


async def test_a_refusal_by_the_open_breaker_is_not_an_attempt(tmp_path):
    """While every breaker is open the sync touches no row: nothing claimed, no attempt
    counted, no backoff grown; when one would admit a call the rows go."""
    async with make_world(tmp_path, failure_threshold=1) as w:
        for plate in ("A1", "A2", "A3"):
            await w.visit(plate)
        await w.fault("refuse")
        outs = [await w.entry(p) for p in ("A1", "A2", "A3")]
        assert {o.sources["create_entry_record"] for o in outs} == {"queue"}
        before = await w.rows()
        pool = w.sync.central
        assert isinstance(pool, HasCircuit) and pool.circuit_wait_s() > 0
        for _ in range(5):
            assert await w.sync.drain() == 0
        after = await w.rows()
        assert [(r["state"], r["attempts"], r["outcome"], r["version"]) for r in after] == \
            [(r["state"], r["attempts"], r["outcome"], r["version"]) for r in before]
        await w.fault("ok")
        await until_the_breaker_admits(w)
        assert await w.sync.drain() == 3
        w.check_central()


async def test_rows_backing_off_through_an_outage_go_with_the_first_success(tmp_path):
    """Their backoff measured the outage, not the rows: once the central service takes a
    record again, the others are due at once (not 100 records over a minute)."""
    async with make_world(tmp_path, failure_threshold=2) as w:
        plates = [f"B{i}" for i in range(6)]
        for plate in plates:
            await w.visit(plate)
        await w.fault("refuse")
        outs = [await w.entry(p) for p in plates]
        assert {o.sources["create_entry_record"] for o in outs} == {"queue"}
        await until_the_breaker_admits(w)
        await w.sync.drain()  # a probe that fails: the outage goes on
        # a long outage: every row but the first far into its backoff
        await w.store.write(lambda c: c.execute(
            "UPDATE offline_queue SET next_attempt_at = CASE WHEN id = "
            "(SELECT min(id) FROM offline_queue) THEN 0 ELSE ? END, attempts = 6",
            (w.sync.clock.wall() + 300,)))
        await w.fault("ok")
        await until_the_breaker_admits(w)
        assert await w.sync.drain() == len(plates)
        assert (await w.counts())["pending"] == 0
        w.check_central()


# -- defect 5: order per saga and per dependency ----------------------------------------
async def test_a_queued_cancel_never_overtakes_the_create_it_cancels(tmp_path):
    async with make_world(tmp_path, backup=True) as w:
        await w.fault("refuse")  # the backup service makes the entry
        out = await w.entry("34ABC123", behaviour="back_out")
        assert out.status == "compensated", out.reason
        assert out.sources["create_entry_record"] == "backup"
        assert [r["operation"] for r in await w.rows()] == ["create_entry_record",
                                                           "cancel_entry_record"]
        await w.fault("error500")
        await w.sync.drain()  # the confirmation is refused for now and backs off
        await w.fault("ok")
        await w.sync.drain()  # the cancel must not go ahead of it (404 = "done")
        await w.drain_all()
        key = f"{out.saga_id}:create_entry_record"
        assert key in w.central.key_hits
        assert live(w.central.entries, key) == []
        w.check_central()


async def test_an_exit_waits_for_the_confirmation_of_the_entry_the_backup_made(tmp_path):
    async with make_world(tmp_path, backup=True) as w:
        await w.fault("refuse")
        entry = await w.entry("34ABC123")
        assert entry.sources["create_entry_record"] == "backup"
        backup_id = entry.results["create_entry_record"]["entry_id"]
        assert w.backup is not None
        w.backup.down = True  # now both are gone: the exit is queued with the backup's id
        exit_ = await w.exit("34ABC123")
        assert exit_.sources["create_exit_record"] == "queue", exit_.sources
        await w.fault("error500")
        await w.sync.drain()  # the entry's confirmation backs off
        await w.fault("ok")
        await w.sync.drain()  # the exit must wait for it: the backup's id means nothing here
        await w.drain_all()
        (central_entry_id,) = [i for i, r in w.central.entries.items()
                               if r["idempotency_key"] == f"{entry.saga_id}:create_entry_record"]
        (record,) = w.central.exits.values()
        assert record["entry_id"] == central_entry_id != backup_id
        w.check_central()


async def test_a_row_in_flight_when_the_sync_stops_is_sent_again_with_its_key(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("refuse")
        entry = await w.entry("34ABC123")
        await w.fault("commit_no_reply")  # central takes the record; the daemon then stops
        sending = asyncio.create_task(w.sync.drain())
        for _ in range(200):
            if [r for r in await w.rows() if r["state"] == "sending"]:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        (row,) = await w.rows()
        assert (row["state"], row["outcome"]) == ("sending", "unknown")
        await w.fault("ok")
        w.sync = OfflineSync(w.store, w.sync.central, SystemClock(), gate_id="g1",
                             deadline_s=1.5)  # the next start
        assert await w.drain_all() == 1
        key = f"{entry.saga_id}:create_entry_record"
        assert len(live(w.central.entries, key)) == 1 and w.central.key_hits[key] == 2
        w.check_central()


async def test_a_stop_that_comes_as_the_sync_is_woken_still_stops_it(tmp_path):
    """At shutdown a commit wakes the sync in the same moment its task is cancelled. On
    Python 3.11 asyncio.wait_for then swallowed the cancellation and the daemon hung."""
    async with make_world(tmp_path) as w:
        stopped = 0
        for _ in range(20):
            task = asyncio.create_task(w.sync.run())
            for _ in range(50):  # until it waits for work (its reads done)
                await asyncio.sleep(0)
            w.sync.wake()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            stopped += task.cancelled()
        assert stopped == 20
