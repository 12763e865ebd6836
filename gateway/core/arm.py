"""The barrier arm as the lane knows it: where it was told to go, where its limit switches
say it is, and whether it got there in time.

Without limit switches the position is the command, shown as *assumed*. With them, a
command that is not followed by its limit within the travel time (1.5 x ``arm_travel_s``
plus half a second of margin) is retried once, then the arm is reported stuck.
"""

from __future__ import annotations


class Arm:
    def __init__(self, travel_s: float, limits: frozenset[str]) -> None:
        self.travel_s = travel_s
        self.limits = limits
        self.commanded = "down"
        self.at: dict[str, bool] = {}  # limit -> the arm is there (as last reported)
        self.check_at: float | None = None
        self.retried = False

    @property
    def target(self) -> str:
        return "open" if self.commanded == "up" else "closed"

    def position(self) -> str:
        """open | closed | between (with limit switches) or the command (without)."""
        if self.at.get("open"):
            return "open"
        if self.at.get("closed"):
            return "closed"
        # at neither limit: on the way (or stuck) where a switch would say, else assumed
        return "between" if self.target in self.limits else self.target

    @property
    def assumed(self) -> bool:
        return self.target not in self.limits

    def command(self, direction: str, now: float) -> None:
        self.commanded = direction
        self.retried = False
        self.check_at = self._due(now)

    def _due(self, now: float) -> float | None:
        if self.target not in self.limits or self.at.get(self.target):
            return None
        return now + 1.5 * self.travel_s + 0.5

    def limit(self, name: str, on: bool) -> bool:
        """A limit switch changed; ``True`` when the commanded position is now reached."""
        self.at[name] = on
        if on and name == self.target:
            self.check_at = None
            return True
        return False

    def due(self, now: float) -> str | None:
        """``retry`` (command once more) or ``stuck`` when the check is due, else ``None``."""
        if self.check_at is None or now < self.check_at:
            return None
        if not self.retried:
            self.retried = True
            self.check_at = now + 1.5 * self.travel_s + 0.5
            return "retry"
        self.check_at = None
        return "stuck"
