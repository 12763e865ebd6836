"""``parking-gateway relays-off --config PATH``: every relay of every lane driven to its
de-energised level, then the program ends.

A Raspberry Pi's kernel keeps a GPIO output driven after the process that set it dies, so
a daemon killed by SIGKILL, the OOM killer or a crash would leave an OPEN or CLOSE relay
energised. systemd runs this after *any* exit of the daemon (``ExecStopPost=`` in the
unit), so no relay stays energised longer than the restart takes. It touches no input and
opens no camera; a relay that cannot be driven is reported and the others still are.
"""

from __future__ import annotations

from typing import TextIO

from gateway.core.errors import DeviceError
from gateway.settings import Settings
from gateway.sim.planted import activate, planted
from hardware.build import lane_relays
from hardware.sim import board_path, sim_factory


def relays_off(settings: Settings, out: TextIO) -> int:
    failures: list[str] = []
    activate(settings.simulation.planted_faults)
    if planted("relays_off_noop"):  # campaign switch (tests/reliability): drives nothing
        return 0
    for lane in settings.lanes:
        factory = sim_factory(board_path(settings.data_dir, lane.id)) \
            if settings.simulation.enabled else None

        def failed(name: str, exc: DeviceError, lane_id: str = lane.id) -> None:
            failures.append(name)
            print(f"lane {lane_id}: FAULT {name} relay: {exc}", file=out)

        for name, relay in lane_relays(lane, factory, failed=failed).items():
            relay.set(False)
            print(f"lane {lane.id}: {name} relay de-energised", file=out)
    return 1 if failures else 0
