"""JSON for the columns that hold documents: compact, and fast (msgspec)."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def dumps(value: Any) -> str:
    return _encoder.encode(value).decode()
