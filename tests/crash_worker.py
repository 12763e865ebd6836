"""A process that runs a fixed scenario of sagas and can be killed at any boundary.

    python -m tests.crash_worker DB URL run KILL_AT   (KILL_AT < 0: never kill itself)
    python -m tests.crash_worker DB URL recover

``run`` SIGKILLs itself at the KILL_AT-th durability boundary (commits and remote calls,
counted from 0) and prints the number of boundaries it passed when it is not killed.
``recover`` runs start-up recovery and prints what it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from gateway.clock import SystemClock
from gateway.core.steps import ENTRY, EXIT
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.settings import Settings, parse_settings
from gateway.sim.gate import InstantGate
from gateway.store import Store

SCENARIO = [
    (ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"}),
    (ENTRY, {"lane_id": "entry-1", "license_plate": "06XYZ99", "behaviour": "back_out"}),
    (ENTRY, {"lane_id": "entry-1", "license_plate": "35KLM77"}),
    (EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"}),
    (EXIT, {"lane_id": "exit-1", "license_plate": "35KLM77", "behaviour": "back_out"}),
]


def settings(db: str, url: str) -> Settings:
    return parse_settings(f"""
[gate]
id = "crash"
data_dir = "{os.path.dirname(db)}"
[central]
base_urls = ["{url}"]
deadline_s = 0.5
decision_deadline_s = 2.0
reset_timeout_s = 0.1
[backup]
enabled = false
[simulation]
enabled = true
[saga]
compensation_backoff_initial_s = 0.01
compensation_backoff_max_s = 0.05
[[zones]]
name = "A"
spaces = 4
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
""", "crash.toml")


async def main(db: str, url: str, mode: str, kill_at: int) -> None:
    s = settings(db, url)
    store = await Store.open(s.database_path, s.zone_specs())
    session = central_session(s)
    clock = SystemClock()
    runner = build_runner(s, store, build_registry(s, session, clock, InstantGate()), clock)
    passed = 0

    def boundary(label: str) -> None:
        nonlocal passed
        if passed == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        passed += 1

    try:
        if mode == "recover":
            outcomes = await runner.recover()
            print(json.dumps([[o.saga_id, o.status] for o in outcomes]))
        else:
            # Recovery first, as the daemon does at start-up.
            await runner.recover()
            runner.on_boundary = boundary
            for definition, ctx in SCENARIO:
                await runner.run(definition, ctx)
            print(passed)
    finally:
        await session.close()
        await store.close()


if __name__ == "__main__":
    db, url, mode = sys.argv[1:4]
    asyncio.run(main(db, url, mode, int(sys.argv[4]) if len(sys.argv) > 4 else -1))
