"""SIGHUP: read the configuration file again and apply what can change while the gate runs
(gateway/core/reload.py decides which); the rest is logged and recorded as needing a
restart. A file that does not parse changes nothing (the reasons are logged and recorded)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.core.errors import ConfigError
from gateway.core.reload import plan
from gateway.sagas.factory import apply_runner_settings
from gateway.services.lane import lane_config
from gateway.settings import Settings, embedded_default_text, load_settings, parse_settings

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)


def set_log_level(settings: Settings) -> None:
    logging.getLogger().setLevel(settings.logging.level.upper())


def read_again(source: str) -> Settings:
    """The configuration as its source reads now (the embedded demo when the daemon was
    started without a file)."""
    if source.startswith("<"):  # "<embedded demo.toml>"
        return parse_settings(embedded_default_text(), source, os.environ)
    return load_settings(source, os.environ)


async def reload(gw: Gateway) -> dict[str, Any]:
    source = gw.configured.source
    try:
        wanted = read_again(source)
    except ConfigError as exc:
        log.error("reload: %s unchanged, the configuration has problems: %s", source,
                  "; ".join(exc.problems))
        data: dict[str, Any] = {"source": source, "problems": exc.problems[:20]}
        await gw.record("config_reload_failed", data)
        return data
    p = plan(gw.configured, wanted)
    s = p.settings
    set_log_level(s)
    apply_runner_settings(gw.runner, s)
    gw.permit_sync.interval_s, gw.permit_sync.retry_s = s.permits.sync_interval_s, \
        s.permits.retry_s
    gw.permit_sync.wake()  # a changed list is fetched now, not at the next interval
    for lane_settings in s.lanes:
        controller = gw.lanes.get(lane_settings.id)
        if controller is not None:
            controller.settings = lane_settings
            controller.lane.c = lane_config(lane_settings, s.policy)
    gw.vehicle_log.mask_plates = s.logging.mask_plates
    gw.configured = s
    # the daemon's own settings keep what it set itself at start (a private broker's port)
    gw.settings = msgspec.structs.replace(s, mqtt=gw.settings.mqtt)
    if p.needs_restart:
        log.warning("reload: applied %s; needs a restart to take effect: %s",
                    ", ".join(p.applied) or "nothing", ", ".join(p.needs_restart))
    else:
        log.info("reload: applied %s", ", ".join(p.applied) or "nothing (no change)")
    data = {"source": source, "applied": p.applied, "needs_restart": p.needs_restart}
    await gw.record("config_reloaded", data)
    return data


def status_after(lanes: int, data: dict[str, Any] | None) -> str:
    """The unit's status line (``systemctl status``) after a reload that gave ``data``
    (``None``: it failed)."""
    status = f"serving {lanes} lane(s)"
    if data is None:
        return status + "; the last reload failed (see the journal)"
    if data.get("problems"):
        return status + "; the last reload changed nothing, the configuration has problems"
    if data.get("needs_restart"):
        return status + "; reloaded, a restart is needed for " + ", ".join(
            data["needs_restart"])
    return status
