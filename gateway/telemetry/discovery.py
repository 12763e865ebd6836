"""Home Assistant MQTT discovery (opt-in): one device per lane, its entities reading the
retained state topic; sent retained on every connect and again whenever Home Assistant
announces itself ``online`` on ``{discovery_prefix}/status``."""

from __future__ import annotations

from typing import Any

import msgspec

Json = dict[str, Any]


def _lane(lane_id: str, expr: str) -> str:
    """A Jinja template picking one lane's value out of the state snapshot."""
    return ("{% for l in value_json.lanes %}{% if l.id == '" + lane_id + "' %}" + expr +
            "{% endif %}{% endfor %}")


def discovery_messages(*, discovery_prefix: str, prefix: str, gate_id: str,
                       lanes: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """(topic, retained payload) for every entity of every lane."""
    base = f"{prefix}/gates/{gate_id}"
    state, availability = f"{base}/state", f"{base}/availability"
    out: list[tuple[str, bytes]] = []
    for lane_id, direction in lanes:
        node = f"parking_{gate_id}_{lane_id}".replace("-", "_").replace(".", "_")
        device = {"identifiers": [node], "name": f"{gate_id} {lane_id}",
                  "manufacturer": "parking-gateway", "model": f"{direction} lane"}
        entities: list[tuple[str, str, Json]] = [
            ("binary_sensor", "arming_loop", {
                "name": "Arming loop", "device_class": "occupancy",
                "value_template": _lane(lane_id, "{{ 'ON' if l.loops.arming else 'OFF' }}")}),
            ("binary_sensor", "safety_loop", {
                "name": "Safety loop", "device_class": "occupancy",
                "value_template": _lane(lane_id, "{{ 'ON' if l.loops.safety else 'OFF' }}")}),
            ("sensor", "barrier", {"name": "Barrier",
                                   "value_template": _lane(lane_id, "{{ l.barrier }}")}),
            ("sensor", "lane_state", {"name": "Lane state",
                                      "value_template": _lane(lane_id, "{{ l.state }}")}),
            ("sensor", "last_plate", {
                "name": "Last plate",
                "value_template": _lane(lane_id, "{{ l.last.license_plate | default('') }}")}),
            ("sensor", "free_spaces", {"name": "Free spaces", "unit_of_measurement": "spaces",
                                       "value_template": "{{ value_json.occupancy.free }}"}),
            ("binary_sensor", "full", {
                "name": "FULL",
                "value_template": "{{ 'ON' if value_json.occupancy.free == 0 else 'OFF' }}"}),
            ("binary_sensor", "central_service", {
                "name": "Central service", "device_class": "connectivity",
                "value_template": "{{ 'ON' if value_json.services.central.circuit == "
                                  "'closed' else 'OFF' }}"}),
            ("sensor", "central_breaker", {
                "name": "Central breaker",
                "value_template": "{{ value_json.services.central.circuit }}"}),
        ]
        for component, object_id, config in entities:
            payload = {**config, "unique_id": f"{node}_{object_id}", "state_topic": state,
                       "availability_topic": availability, "device": device}
            out.append((f"{discovery_prefix}/{component}/{node}/{object_id}/config",
                        msgspec.json.encode(payload)))
    return out
