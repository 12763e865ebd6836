"""Text that came from outside (plates, service replies, reasons), made safe to print.

A terminal obeys the control characters in what it prints: an escape sequence in a plate
or a central service's error could recolour, move the cursor or retitle the operator's
terminal, and a bidirectional override could show a line other than the one printed. Such
characters are removed; everything else is kept as it is."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional embedding/override/isolate marks
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(value: object, limit: int = 200) -> str:
    """``value`` as one printable line: control characters removed, at most ``limit``
    characters (an ellipsis says it was cut)."""
    text = _UNSAFE.sub("", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
