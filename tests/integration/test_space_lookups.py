"""The allocation's two lookups against real SQLite files: the skip-scan that finds the
lowest-numbered free space of each (kind, zone) answers exactly what a plain GROUP BY over
every free space answers, and "is this plate inside?" agrees with a walk of the tables;
both are index seeks, never a walk of the space table (checked on the query plan)."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.allocation import SpaceKind, ZoneSpec
from gateway.store import Database, spaces

# the lookup as it was before the skip-scan: the oracle
GROUP_BY_SQL = ("SELECT space_id, zone, min(number) AS number, kind FROM spaces "
                "WHERE state='free' AND retired=0 GROUP BY kind, zone")
INSIDE_SQL = ("SELECT 1 FROM vehicle_sessions WHERE plate=? AND status != 'exited' "
              "UNION ALL SELECT 1 FROM spaces WHERE plate=? AND state='allocated' "
              "AND saga_id != ? LIMIT 1")

zones = st.lists(st.tuples(st.integers(1, 12), st.integers(0, 3), st.integers(0, 3),
                           st.integers(0, 3)), min_size=1, max_size=4)


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return sorted(tuple(r) for r in conn.execute(sql))


@settings(deadline=None, max_examples=60)  # a database file per example
@given(zones=zones, seed=st.integers(0, 2**32 - 1))
def test_the_skip_scan_finds_what_the_group_by_finds(zones, seed):
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "g.sqlite3", synchronous="off")
        with db.transaction() as conn:
            spaces.sync_zones(conn, [ZoneSpec(f"Z{i}", n, r, a, e)
                                     for i, (n, r, a, e) in enumerate(zones)])
            for k, (sid,) in enumerate(conn.execute("SELECT space_id FROM spaces").fetchall()):
                state = rng.choice(["free", "free", "allocated", "out_of_service"])
                conn.execute("UPDATE spaces SET state=?, saga_id=?, plate=?, retired=? "
                             "WHERE space_id=?",
                             (state, f"s{k}" if state == "allocated" else None,
                              f"P{k}" if state == "allocated" else None,
                              int(rng.random() < 0.2), sid))
        assert _rows(db.conn, spaces.FIRST_FREE_OF_EACH_GROUP_SQL) == _rows(db.conn,
                                                                              GROUP_BY_SQL)
        db.close()


def test_inside_agrees_with_a_walk_of_the_tables(tmp_path):
    db = Database(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        spaces.sync_zones(conn, [ZoneSpec("A", 6)])
        conn.execute("UPDATE spaces SET state='allocated', plate='HELD', saga_id='s1' "
                     "WHERE space_id='A-001'")
        spaces.open_session(conn, "PARKED", None, "s0", None, "2026-01-01T00:00:00+00:00")
    conn = db.conn
    assert spaces.inside(conn, "HELD")
    assert not spaces.inside(conn, "HELD", exclude_saga="s1")  # its own saga's space
    assert spaces.inside(conn, "PARKED")
    assert not spaces.inside(conn, "NOBODY")
    with db.transaction() as conn:
        spaces.release_for_saga(conn, "s1", "2026-01-01T00:00:01+00:00")
    assert not spaces.inside(db.conn, "HELD")
    db.close()


def test_both_lookups_seek_and_never_walk_the_space_table(tmp_path):
    db = Database(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        spaces.sync_zones(conn, [ZoneSpec("A", 50, 2, 2, 2), ZoneSpec("B", 50)])
    def plan(sql: str, *args: str) -> str:
        return "\n".join(r[3] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))

    # each group is one seek (the next zone of a kind, else the next kind), never a walk
    # of the free spaces; the plate is a seek on the allocated spaces' plates
    free = plan(spaces.FIRST_FREE_OF_EACH_GROUP_SQL)
    assert "spaces_by_state (state=? AND kind=? AND zone>?)" in free, free
    assert "spaces_by_state (state=? AND kind>?)" in free, free
    assert "SCAN spaces" not in free, free
    inside = plan(INSIDE_SQL, "P", "P", "s")
    assert "spaces_allocated_by_plate (plate=?)" in inside, inside
    assert "sessions_by_plate (plate=?)" in inside, inside
    assert {r[3] for r in db.conn.execute(spaces.FIRST_FREE_OF_EACH_GROUP_SQL)} == {
        SpaceKind.STANDARD, SpaceKind.RESERVED, SpaceKind.ACCESSIBLE, SpaceKind.EV}
    db.close()
