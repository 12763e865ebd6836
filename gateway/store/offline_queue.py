"""Records waiting for the central service, sent with their original idempotency keys.

States: ``pending`` (to send), ``sending`` (claimed by the sync and in flight), ``sent``
(the central service answered with its id), ``dead`` (refused for good, or its peer was:
shown in status for an operator), ``dropped`` (a queued create undone before it was ever
sent: nothing to send). ``outcome`` says what the central service may hold: ``unsent``
(nothing can have reached it), ``unknown`` (sent, not answered: the write may have landed),
``done`` (answered with its id), ``refused`` (answered no: nothing was made).

Every transition is compare-and-set on the row's state (and, for the sync, its
``version``): a transition that lost a race changes nothing and returns ``False``. The
sync claims a row (``pending`` → ``sending``, committed) before it sends it, so a saga can
never drop a row that is in flight; only a row whose outcome is ``unsent`` may be dropped.

Order: a row waits while an earlier row of its saga, or the row it depends on
(``depends_on``: the create a cancel undoes, the entry an exit refers to, found by the id
the payload carries), is ``pending`` or ``sending``; it is not due meanwhile (it backs off
with its peer), and when that peer is dead-lettered its dependents are too. A row's
references are rewritten to the central service's id when its peer is sent."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.sim.planted import planted
from gateway.store.codec import dumps

ID_FIELDS = ("entry_id", "exit_id")
LOCAL_PREFIX = "local-"
WAITING = ("pending", "sending")
# rows that hold back a later row of their saga, or the row that depends on them
_BLOCKED = """EXISTS (SELECT 1 FROM offline_queue p
                       WHERE p.saga_id = q.saga_id AND p.id < q.id
                         AND p.state IN ('pending','sending'))
           OR EXISTS (SELECT 1 FROM offline_queue p
                       WHERE p.id = q.depends_on AND p.state IN ('pending','sending'))"""


def enqueue(conn: sqlite3.Connection, *, saga_id: str, operation: str, key: str,
            payload: dict[str, Any], reason: str, now: str, local_id: str | None = None,
            remote_id: str | None = None, outcome: str = "unknown") -> None:
    """Queue a record (a second one under the same key is ignored). ``outcome`` is
    ``unsent`` only when the saga's own calls cannot have reached the central service.
    A reference to another queued record makes this row depend on it: resolved now if
    that one was sent, dead at once if it was refused or dropped."""
    body = dict(payload)
    depends_on: int | None = None
    dead_because = ""
    for field in ID_FIELDS:
        value = str(body.get(field) or "")
        if not value or (local_id is not None and value == local_id):
            continue
        peer = _peer_by_local_id(conn, value)
        if peer is None:
            if value.startswith(LOCAL_PREFIX):
                dead_because = f"{field} {value} is known nowhere"
            continue  # the central service's own id
        depends_on = int(peer["id"])
        if peer["state"] == "sent" and peer["remote_id"]:
            body[field] = peer["remote_id"]
        elif peer["state"] in ("dead", "dropped"):
            dead_because = f"peer #{peer['id']} is {peer['state']}: {peer['last_error']}"
    if not dead_because:
        earlier = conn.execute(
            "SELECT id, last_error FROM offline_queue WHERE saga_id=? AND state='dead' "
            "ORDER BY id LIMIT 1", (saga_id,)).fetchone()
        if earlier is not None:
            dead_because = f"peer #{earlier['id']} is dead: {earlier['last_error']}"
    conn.execute(
        "INSERT INTO offline_queue(saga_id, operation, idempotency_key, payload, reason, "
        "local_id, remote_id, state, outcome, depends_on, last_error, created_at, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(idempotency_key) DO NOTHING",
        (saga_id, operation, key, dumps(body), reason, local_id, remote_id,
         "dead" if dead_because else "pending", outcome, depends_on, dead_because[:300],
         now, now))


def _peer_by_local_id(conn: sqlite3.Connection, local_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT id, state, remote_id, outcome, last_error FROM offline_queue "
        "WHERE local_id=? ORDER BY id DESC LIMIT 1", (local_id,)).fetchone()
    return row


@dataclass(frozen=True)
class Undo:
    """What undoing a queued create takes. ``action``: ``dropped`` (it was never sent: it
    never will be), ``nothing`` (the central service does not hold it: refused, or never
    sent and dead-lettered), ``cancel`` (it is there as ``remote_id``: cancel that),
    ``follow`` (it may be there: the cancel is queued after it, row ``row_id``)."""

    action: str
    remote_id: str | None = None
    row_id: int | None = None


def undo_create(conn: sqlite3.Connection, local_id: str, now: str) -> Undo:
    """Undo the queued create that stands for ``local_id``, compare-and-set: a row that was
    never sent is dropped; one sent and not answered (or in flight now) must be replayed
    with its key and then cancelled, so the caller queues the cancel after it."""
    # campaign switch (tests/reliability): without the compare-and-set, a create sent and
    # not answered (or in flight) is dropped as if it had never been sent
    cas = "" if planted("queue_undo_unconditional") else "AND state='pending' AND outcome='unsent' "
    cur = conn.execute(
        "UPDATE offline_queue SET state='dropped', version=version+1, updated_at=? "
        f"WHERE local_id=? {cas}AND operation LIKE 'create%'", (now, local_id))
    if cur.rowcount > 0:
        return Undo("dropped")
    peer = _peer_by_local_id(conn, local_id)
    if peer is None or peer["state"] == "dropped":
        return Undo("nothing")
    if peer["state"] == "sent":
        return Undo("cancel", remote_id=peer["remote_id"]) if peer["remote_id"] \
            else Undo("nothing")
    if peer["state"] == "dead" and peer["outcome"] in ("unsent", "refused"):
        return Undo("nothing")
    return Undo("follow", row_id=int(peer["id"]))  # waiting, in flight, or dead unknown


def remote_id_for(conn: sqlite3.Connection, local_id: str) -> str | None:
    row = conn.execute("SELECT remote_id FROM offline_queue WHERE local_id=? AND state='sent'",
                       (local_id,)).fetchone()
    return str(row[0]) if row and row[0] else None


def resolved_id(conn: sqlite3.Connection, value: Any) -> str | None:
    """The central service's id for ``value`` if it stands for a queued record (a local
    id, or the backup service's) that has been sent; else ``value`` as it is."""
    if not value:
        return None
    return remote_id_for(conn, str(value)) or str(value)


def due(conn: sqlite3.Connection, now: float, limit: int = 20) -> list[dict[str, Any]]:
    """Rows to send now, oldest first: pending, their backoff over, none they wait for."""
    rows = conn.execute(
        f"SELECT q.* FROM offline_queue q WHERE q.state='pending' AND q.next_attempt_at <= ? "
        f"AND NOT ({_BLOCKED}) ORDER BY q.id LIMIT ?", (now, limit)).fetchall()
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


def next_due_at(conn: sqlite3.Connection) -> float | None:
    """When the next row can be sent; a row that waits for another is not counted (it
    becomes due when that one is sent, which the sync sees at once)."""
    row = conn.execute(
        f"SELECT min(q.next_attempt_at) FROM offline_queue q WHERE q.state='pending' "
        f"AND NOT ({_BLOCKED})").fetchone()
    return None if row[0] is None else float(row[0])


def claim(conn: sqlite3.Connection, row_id: int, version: int, now: str) -> int | None:
    """``pending`` → ``sending`` before the row is sent; its outcome is unknown from now on.
    The new version, or ``None`` if the row changed since it was read."""
    cur = conn.execute(
        "UPDATE offline_queue SET state='sending', version=version+1, "
        "outcome=CASE outcome WHEN 'done' THEN 'done' ELSE 'unknown' END, updated_at=? "
        "WHERE id=? AND state='pending' AND version=?", (now, row_id, version))
    return version + 1 if cur.rowcount > 0 else None


def unclaim(conn: sqlite3.Connection, row_id: int, version: int, outcome: str,
            now: str) -> bool:
    """``sending`` → ``pending`` for a call that never left (the breaker refused it): the
    outcome it had before the claim, no attempt counted, due as it was."""
    cur = conn.execute(
        "UPDATE offline_queue SET state='pending', outcome=?, version=version+1, updated_at=? "
        "WHERE id=? AND state='sending' AND version=?", (outcome, now, row_id, version))
    return cur.rowcount > 0


def due_now(conn: sqlite3.Connection, now: float, stamp: str) -> int:
    """The central service answers again: every pending row backing off is due now (its
    backoff measured the outage, not the row). The number of rows moved. Not a state
    change, so the version stays (a row already read can still be claimed)."""
    return conn.execute(
        "UPDATE offline_queue SET next_attempt_at=?, updated_at=? "
        "WHERE state='pending' AND next_attempt_at > ?", (now, stamp, now)).rowcount


def release_claims(conn: sqlite3.Connection, now: str) -> int:
    """Rows a stopped sync left in flight go back to ``pending``, outcome unknown."""
    return conn.execute(
        "UPDATE offline_queue SET state='pending', version=version+1, updated_at=? "
        "WHERE state='sending'", (now,)).rowcount


def mark_sent(conn: sqlite3.Connection, row_id: int, version: int, remote_id: str | None,
              now: str) -> bool:
    """``sending`` → ``sent``; the rows that refer to it get the central service's id."""
    cur = conn.execute(
        "UPDATE offline_queue SET state='sent', outcome='done', "
        "remote_id=coalesce(?, remote_id), attempts=attempts+1, version=version+1, "
        "updated_at=? WHERE id=? AND state='sending' AND version=?",
        (remote_id, now, row_id, version))
    if cur.rowcount == 0:
        return False
    row = conn.execute("SELECT local_id, remote_id FROM offline_queue WHERE id=?",
                       (row_id,)).fetchone()
    if row["local_id"] and row["remote_id"] and row["local_id"] != row["remote_id"]:
        for dep in conn.execute("SELECT id, payload FROM offline_queue "
                                "WHERE depends_on=? AND state='pending'", (row_id,)).fetchall():
            body = json.loads(dep["payload"])
            changed = {f: row["remote_id"] for f in ID_FIELDS if body.get(f) == row["local_id"]}
            if changed:
                conn.execute("UPDATE offline_queue SET payload=?, version=version+1, "
                             "updated_at=? WHERE id=? AND state='pending'",
                             (dumps({**body, **changed}), now, dep["id"]))
    return True


def mark_failed(conn: sqlite3.Connection, row_id: int, version: int, error: str,
                next_at: float, now: str) -> bool:
    """``sending`` → ``pending`` again, after ``next_at`` (its dependents wait with it)."""
    cur = conn.execute(
        "UPDATE offline_queue SET state='pending', attempts=attempts+1, last_error=?, "
        "next_attempt_at=?, version=version+1, updated_at=? "
        "WHERE id=? AND state='sending' AND version=?",
        (error[:300], next_at, now, row_id, version))
    return cur.rowcount > 0


def mark_dead(conn: sqlite3.Connection, row_id: int, version: int, error: str,
              now: str) -> list[int]:
    """``sending`` → ``dead`` (refused for good: nothing was made), and every row that
    waits for it, transitively, with it. The ids dead-lettered (empty: the race was lost)."""
    cur = conn.execute(
        "UPDATE offline_queue SET state='dead', outcome='refused', attempts=attempts+1, "
        "last_error=?, version=version+1, updated_at=? "
        "WHERE id=? AND state='sending' AND version=?", (error[:300], now, row_id, version))
    if cur.rowcount == 0:
        return []
    dead = [row_id]
    frontier = [row_id]
    while frontier:
        peer = frontier.pop()
        saga = conn.execute("SELECT saga_id FROM offline_queue WHERE id=?",
                            (peer,)).fetchone()[0]
        for dep in conn.execute(
                "SELECT id FROM offline_queue WHERE state='pending' "
                "AND (depends_on=? OR (saga_id=? AND id>?)) ORDER BY id",
                (peer, saga, peer)).fetchall():
            moved = conn.execute(
                "UPDATE offline_queue SET state='dead', last_error=?, version=version+1, "
                "updated_at=? WHERE id=? AND state='pending'",
                (f"peer #{peer} is dead: {error}"[:300], now, dep[0])).rowcount
            if moved:
                dead.append(int(dep[0]))
                frontier.append(int(dep[0]))
    return dead


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    out = {"pending": 0, "sending": 0, "sent": 0, "dead": 0, "dropped": 0}
    for r in conn.execute("SELECT state, count(*) FROM offline_queue GROUP BY state"):
        out[r[0]] = r[1]
    return out


def dead_letters(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("id", "saga_id", "operation", "idempotency_key", "attempts",
                               "last_error", "updated_at", "outcome")}
            for r in conn.execute("SELECT * FROM offline_queue WHERE state='dead' "
                                  "ORDER BY id DESC LIMIT ?", (limit,))]
