"""What a SIGHUP may change while the gate runs, and what needs a restart. Pure: two
settings in, the changed keys sorted into the two kinds and the settings to run with out.

Reloaded in place: the policies (who may enter or leave when nothing answers), the saga's
and the services' timings and retries, the breakers' thresholds, the cache, the permit
list's sync, the log, and each lane's timings and tailgate response (read afresh at each
transition of the lane). Everything else (devices, addresses, the database, zones, lanes
themselves) is wired at start: a change there is reported as needing a restart and the
running value is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.settings import Settings

WHOLE_SECTIONS = ("policy", "saga", "cache", "permits", "logging")
CENTRAL_FIELDS = ("deadline_s", "retry_count", "backoff_initial_s", "backoff_max_s",
                  "failure_threshold", "failure_rate", "failure_window_s",
                  "min_calls_in_window", "reset_timeout_s", "half_open_probes",
                  "decision_deadline_s", "hedge_after_s")
BACKUP_FIELDS = ("deadline_s",)
LANE_FIELDS = ("timings", "tailgate_response")
# read once when the part is built: the debouncers, the arm's model, the permit sync's task
BUILT_AT_START = ("permits.sync", "timings.debounce_s", "timings.arm_travel_s")
RUNTIME_FIELDS = ("mqtt_password", "admin_token", "notify_socket", "watchdog_s",
                  "test_unguarded_safety", "source")  # from the environment, not the file


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    applied: list[str]  # keys changed and taken
    needs_restart: list[str]  # keys changed and not taken (the running value is kept)
    settings: Settings  # what to run with from now on


def _flat(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(v, f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flat(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = value


def _changed(old: Any, new: Any, prefix: str) -> list[str]:
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flat(msgspec.to_builtins(old), prefix, a)
    _flat(msgspec.to_builtins(new), prefix, b)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def plan(running: Settings, wanted: Settings) -> ReloadPlan:
    """``running``: the settings as configured at start (before anything the daemon set
    itself, such as a private broker's port); ``wanted``: the file as it reads now."""
    applied: list[str] = []
    restart: list[str] = []
    changes: dict[str, Any] = {}
    for field in Settings.__struct_fields__:
        if field in RUNTIME_FIELDS:
            continue
        old, new = getattr(running, field), getattr(wanted, field)
        keys = _changed(old, new, field)
        if not keys:
            continue
        if field in WHOLE_SECTIONS:
            built = [k for k in keys if k in BUILT_AT_START]
            applied += [k for k in keys if k not in built]
            restart += built
            changes[field] = msgspec.structs.replace(
                new, **{k.split(".")[1]: getattr(old, k.split(".")[1]) for k in built})
        elif field in ("central", "backup"):
            fields = CENTRAL_FIELDS if field == "central" else BACKUP_FIELDS
            taken = {f: getattr(new, f) for f in fields if getattr(old, f) != getattr(new, f)}
            changes[field] = msgspec.structs.replace(old, **taken)
            for key in keys:
                (applied if key.split(".")[1] in taken else restart).append(key)
        elif field == "lanes" and [x.id for x in old] == [x.id for x in new]:
            lanes = []
            for i, (o, n) in enumerate(zip(old, new, strict=True)):
                kept = {k: getattr(o.timings, k) for k in ("debounce_s", "arm_travel_s")}
                lanes.append(msgspec.structs.replace(
                    o, tailgate_response=n.tailgate_response,
                    timings=msgspec.structs.replace(n.timings, **kept)))
                for key in _changed(o, n, f"lanes[{i}]"):
                    name = key.split(".", 1)[1]
                    ok = name.split(".")[0] in LANE_FIELDS and name not in BUILT_AT_START
                    (applied if ok else restart).append(key)
            changes[field] = lanes
        else:
            restart += keys
    return ReloadPlan(sorted(applied), sorted(restart),
                      msgspec.structs.replace(running, **changes))
