"""What a step answers when no service could: the lane's policy for a verification, the
offline queue for a record. Records created by the backup service are queued too, to be
confirmed at the central service (the system of record) under the same key.

A queued record is ``unsent`` only if none of its saga's calls can have reached a service;
anything sent and not answered is "outcome unknown". Undoing a queued create
(``undo_queued_create``) drops it only if it is unsent and not in flight; otherwise the
cancel is queued after it, so the create is replayed with its key (the central service
answers a replay with the id it made, or makes it now) and then cancelled."""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

from gateway.core.saga import StepSpec
from gateway.sagas.chain import CallScope
from gateway.sagas.policy import StepPolicy
from gateway.store import offline_queue

Json = dict[str, Any]
ID_FIELDS = {"create_entry_record": "entry_id", "create_exit_record": "exit_id",
             "cancel_entry_record": "entry_id", "cancel_exit_record": "exit_id"}
LOCAL_PREFIX = "local-"


def policy_answer(policy: StepPolicy, scope: CallScope, step: StepSpec,
                  error: Exception) -> Json | None:
    """A verification nobody could answer: allowed by the lane's policy, or ``None``."""
    if policy.when_unverifiable != "allow":
        return None
    scope.emit("fallback_used", {"saga_id": scope.saga_id, "step": step.name,
                                 "source": "policy", "after": str(error)})
    return {"license_plate": scope.plate, "authorized": True, "reason": "policy",
            "confidence": 0.0}


def queue_record(policy: StepPolicy, scope: CallScope, operation: str, payload: Json,
                 key: str, now: str, error: Exception, *, maybe_sent: bool = False,
                 force: bool = False) -> Json | None:
    """A record nobody could take: queued for later (same key), or ``None`` by policy.
    ``maybe_sent``: an earlier call under this key may have reached the service (a
    re-ask after a restart), so its outcome is unknown whatever this scope saw.
    ``force``: it refers to a queued record, so it can only follow that one, whatever
    the policy says."""
    if not policy.queue_when_unreachable and not force:
        return None
    id_field = ID_FIELDS[operation]
    local_id = f"{LOCAL_PREFIX}{scope.saga_id}" if operation.startswith("create_") else None
    scope.defer(partial(offline_queue.enqueue, saga_id=scope.saga_id, operation=operation,
                        key=key, payload=payload, reason="unreachable", now=now,
                        local_id=local_id,
                        outcome="unknown" if maybe_sent or scope.maybe_sent else "unsent"))
    scope.emit("fallback_used", {"saga_id": scope.saga_id, "step": operation,
                                 "source": "queue", "after": str(error)})
    if local_id is None:
        return {id_field: payload.get(id_field), "status": "queued", "queued": True}
    return {id_field: local_id, "queued": True}


def references(operation: str, payload: Json) -> tuple[str, ...]:
    """The fields of ``payload`` that refer to another record (its own id aside): what
    ``resolve_references`` looks up. An entry's create has none, so it needs no read."""
    own = ID_FIELDS[operation] if operation.startswith("create_") else ""
    return tuple(f for f in offline_queue.ID_FIELDS if f != own and payload.get(f))


def resolve_references(conn: sqlite3.Connection, *, operation: str, payload: Json,
                       ) -> tuple[Json, str]:
    """The payload with every reference to a queued record that has been sent replaced by
    the central service's id, and the first reference still only local (``""``: none):
    such a record is sent from the queue after the one it refers to."""
    body = dict(payload)
    waiting = ""
    for field in references(operation, payload):
        value = str(body.get(field) or "")
        if not value:
            continue
        body[field] = offline_queue.resolved_id(conn, value)
        if str(body[field]).startswith(LOCAL_PREFIX) and not waiting:
            waiting = str(body[field])
    return body, waiting


def undo_queued_create(conn: sqlite3.Connection, *, saga_id: str, operation: str,
                       payload: Json, key: str, local_id: str, now: str) -> offline_queue.Undo:
    """Undo a create that went to the queue (``local_id``), in the saga's transaction: drop
    it if it was never sent, else queue the cancel ``operation`` after it (``follow``)."""
    undo = offline_queue.undo_create(conn, local_id, now)
    if undo.action == "follow":
        offline_queue.enqueue(conn, saga_id=saga_id, operation=operation, key=key,
                              payload=payload, reason="unreachable", now=now)
    return undo


def queue_cancel_after_confirm(scope: CallScope, operation: str, payload: Json, key: str,
                               now: str) -> None:
    scope.defer(partial(offline_queue.enqueue, saga_id=scope.saga_id, operation=operation,
                        key=key, payload=payload, reason="confirm", now=now))


def confirm_at_central(scope: CallScope, operation: str, payload: Json, key: str,
                       result: Json, now: str) -> None:
    """The backup service answered a write: the central service must hear it too."""
    id_field = ID_FIELDS[operation]
    # the id the gate holds (the backup's) maps to the central service's once confirmed
    held = str(result.get(id_field) or "") or None
    scope.defer(partial(offline_queue.enqueue, saga_id=scope.saga_id, operation=operation,
                        key=key, payload=payload, reason="confirm", now=now,
                        local_id=held if operation.startswith("create_") else None))
