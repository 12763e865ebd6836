"""The outbox's telemetry payloads, rendered by SQLite (``events.outbox_payloads``), are the
events' envelopes as the contract has them: the same JSON, byte for byte, as encoding the
envelope that ``outbox_batch`` reads, whatever the event holds."""

from __future__ import annotations

import json

import msgspec

from gateway.store import events
from gateway.store.db import Database

KEYS = ("seq", "event_id", "gate_id", "type", "ts", "lane_id", "data", "wall_synced")
DATA = [
    {},
    {"lane_id": "entry-1", "direction": "entry", "n": 0},
    {"plate": "ÄB-12 Ö", "confidence": 0.1, "tiny": 1e-07, "big": 12345678901234567890,
     "neg": -3.5, "none": None, "flag": False, "nested": {"list": [1, "two", [3.0]]}},
    {"text": 'quote " backslash \\ newline \n tab \t bell \x07 nul \x00 emoji 🚗 '
             "line-sep \u2028"},
]


def test_payloads_are_the_envelopes_as_msgspec_encodes_them(tmp_path):
    db = Database(tmp_path / "g.sqlite3")
    with db.conn:
        for i, data in enumerate(DATA):
            events.append(db.conn, gate_id="g1", type="vehicle_detected",
                          ts="2026-11-25T14:00:00.000+00:00", data=data,
                          lane_id=None if i % 2 else "entry-1", wall_synced=bool(i % 2))
        events.mark_published(db.conn, [1])
    envelopes = events.outbox_batch(db.conn, 0, 100)
    payloads = events.outbox_payloads(db.conn, 0, 100)
    assert [seq for seq, _ in payloads] == [e["seq"] for e in envelopes] == [2, 3, 4]
    for (_, payload), envelope in zip(payloads, envelopes, strict=True):
        assert json.loads(payload) == envelope
        assert payload == msgspec.json.encode({k: envelope[k] for k in KEYS})
    assert [s for s, _ in events.outbox_payloads(db.conn, 2, 1)] == [3]  # after, at most
    db.close()
