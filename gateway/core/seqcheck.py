"""Following a gate's event ``seq``: gaps (events never seen), repeats (a QoS 1 redelivery
has the same ``event_id``; a different one is a conflict) and restarts of the counter."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SeqTracker:
    last: int = 0
    seen: dict[int, str] = field(default_factory=dict)  # recent seq -> event_id
    gaps: int = 0
    repeats: int = 0
    conflicts: int = 0
    keep: int = 1000

    def observe(self, seq: int, event_id: str) -> list[str]:
        """Findings for this event (empty when it is simply the next one)."""
        out: list[str] = []
        if seq in self.seen:
            if self.seen[seq] == event_id:
                self.repeats += 1
                out.append(f"repeat of seq {seq} (a redelivery)")
            else:
                self.conflicts += 1
                out.append(f"seq {seq} again with another event_id: two writers or a reset")
            return out
        if self.last and seq > self.last + 1:
            self.gaps += 1
            missing = f"{self.last + 1}" if seq == self.last + 2 else \
                f"{self.last + 1}-{seq - 1}"
            out.append(f"gap: seq {missing} missing")
        elif self.last and seq < self.last:
            out.append(f"seq {seq} after {self.last}: out of order")
        self.seen[seq] = event_id
        if len(self.seen) > self.keep:
            for old in sorted(self.seen)[: len(self.seen) - self.keep]:
                del self.seen[old]
        self.last = max(self.last, seq)
        return out
