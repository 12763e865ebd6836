"""Event ids: valid UUIDs (RFC 9562 version 8), unique, in the order they are made within
a process (so the event_id index grows at its right edge), and a forked child draws its own
prefix (two processes never make the same id)."""

from __future__ import annotations

import os
import uuid

from gateway.store.events import new_event_id


def test_ids_are_uuids_unique_and_in_order():
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    parsed = uuid.UUID(ids[0])
    assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)
    assert str(parsed) == ids[0]


def test_a_forked_child_makes_other_ids():
    read, write = os.pipe()
    before = new_event_id()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child[:18] != before[:18]  # another prefix, not the parent's next number
    assert child != new_event_id()
