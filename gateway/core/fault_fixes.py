"""What a technician does about each hardware fault, in the words of the page. The fault's
reason says what the gateway saw; the fix says where to look first."""

from __future__ import annotations

LOOP_STUCK = ("Look for a vehicle or metal left on the loop; if it is clear, reset or retune "
              "the loop detector and check the loop's cable for damage.")
LOOP_SIGNAL = ("Check the loop detector's power and the cable to the gateway; with fail-safe "
               "wiring a broken wire reads as occupied, so the arm stays up until it is fixed.")
FIXES = {
    "barrier": ("Check the arm for an obstruction, the barrier's power and the relay wiring, "
                "and the limit switches where fitted; the arm's position is assumed meanwhile."),
    "camera": ("Check the camera's power, network cable and stream address; vehicles are "
               "decided without its image meanwhile (unreadable plates follow the policy)."),
    "relay": "Check the relay board's power and its wiring to the barrier controller.",
    "lane": ("The lane did not start: read the reason, fix the configuration or the wiring, "
             "then restart the gateway (systemctl restart parking-gateway)."),
}


def fix_for(device: str, reason: str) -> str:
    if device in ("arming", "safety"):
        return LOOP_STUCK if "stuck" in reason else LOOP_SIGNAL
    for name, fix in FIXES.items():
        if name in device:
            return fix
    return "Check the device's power and wiring; the log says more (journalctl -u parking-gateway)."
