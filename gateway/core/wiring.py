"""What an input's electrical level means, decided in software from what the installer
declares, never from a library's idea of "active".

An input is described by three facts an installer can check with a meter:
- ``pull``: which way the pin rests when nothing drives it (the Pi's internal pull-up or
  pull-down, an external resistor, or ``none`` for an output that drives both levels);
- ``active_level``: the level while the detector's output is on (its contact closed);
- ``active_means``: what the detector's output being on says (``occupied`` or ``clear``
  for a loop; ``on`` or ``off`` for a button, a limit switch or a hold-open input).

A cut wire leaves the pin at its resting level, so what a cut wire reads follows from the
same facts. A fail-safe loop (the detector's relay held closed while the loop is clear)
reads *occupied* when the wire is cut or the detector loses power.
"""

from __future__ import annotations

from dataclasses import dataclass

PULL_LEVEL = {"up": "high", "external_up": "high", "down": "low", "external_down": "low"}


@dataclass(frozen=True, slots=True)
class Wiring:
    pull: str  # up | down | external_up | external_down | none
    active_level: str  # low | high | auto (the opposite of the resting level)
    active_means: str  # occupied | clear | on | off

    @property
    def level_when_active(self) -> str:
        if self.active_level != "auto":
            return self.active_level
        rest = PULL_LEVEL.get(self.pull)
        return "high" if rest in (None, "low") else "low"

    def reads(self, level_high: bool) -> bool:
        """Whether the input says "occupied" (or "on") at this electrical level."""
        active = level_high == (self.level_when_active == "high")
        return active == (self.active_means in ("occupied", "on"))

    def broken_wire_reads(self) -> bool | None:
        """What a cut wire reads: ``None`` when the pin then floats (``pull = "none"``)."""
        rest = PULL_LEVEL.get(self.pull)
        return None if rest is None else self.reads(rest == "high")

    def fail_safe_problem(self) -> str:
        """Why this wiring is not fail-safe for a safety loop ("" when it is)."""
        if self.broken_wire_reads() is None:
            return ('with pull = "none" a cut wire leaves the pin floating; give the pin a '
                    'pull ("up", or "external_up" for your own resistor)')
        if self.active_level != "auto" and self.active_level == PULL_LEVEL[self.pull]:
            return (f'active_level = "{self.active_level}" is the level the pull already '
                    "gives: the detector's output could not be told from a cut wire")
        if self.broken_wire_reads() is not True:
            return ('a cut wire or a dead detector would read "clear" and the arm could come '
                    "down on a car: wire the detector's fail-safe contact (closed while the "
                    'loop is clear) and set active_means = "clear"')
        return ""
