"""HTTP client of the central plate service (contracts/central-api.md).

One ``CentralInstance`` per base URL; ``CentralPool`` load-balances over them with a circuit
breaker per instance. Replies are untrusted: size-capped, decoded and schema-checked with
msgspec; anything unexpected is a transient failure, never a crash.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import aiohttp
import msgspec

from gateway.clock import Clock
from gateway.core.balancing import Balancer, Candidate
from gateway.core.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerTransition,
    CircuitState,
    refusal,
)
from gateway.core.call_stats import CallStats
from gateway.core.errors import (
    CircuitOpenError,
    DeadlineExceeded,
    PermanentError,
    TransientError,
)

Json = dict[str, Any]
_OPEN = CircuitState.OPEN  # a plain name: Python 3.11 finds an enum member through a descriptor
_ALL_OPEN = "every central instance's breaker is open"
PLATE = msgspec.Meta(pattern=r"^[A-Z0-9]{1,12}$")
ID = msgspec.Meta(min_length=1, max_length=128)


class VerifyReply(msgspec.Struct, frozen=True):
    license_plate: Any  # checked against PLATE below, so a bad plate names itself
    authorized: bool
    confidence: float = 1.0
    reason: Literal["permit", "visitor", "paid", "unpaid", "blocked", "unknown_vehicle"] = (
        "unknown_vehicle"
    )
    cacheable_for_s: float = 0.0


class EntryReply(msgspec.Struct, frozen=True):
    entry_id: Any


class ExitReply(msgspec.Struct, frozen=True):
    exit_id: Any


class CancelReply(msgspec.Struct, frozen=True):
    status: str = "cancelled"


class Permit(msgspec.Struct, frozen=True):
    license_plate: Any
    kind: Literal["resident", "staff", "delivery"] = "resident"
    valid_from: str | None = None
    valid_until: str | None = None
    deleted: bool = False


class PermitsReply(msgspec.Struct, frozen=True):
    permits: Annotated[list[Permit], msgspec.Meta(max_length=50_000)]
    as_of: str


PERMITS_MAX_BODY = 8 * 1024 * 1024  # a whole list (50,000 permits fit), asked for rarely


_ROUTES: dict[str, tuple[str, type[msgspec.Struct], str | None]] = {
    # operation: (path template, reply type, id key for the path)
    "verify_license_plate": ("/v1/plates/verify", VerifyReply, None),
    "create_entry_record": ("/v1/entries", EntryReply, None),
    "cancel_entry_record": ("/v1/entries/{id}/cancel", CancelReply, "entry_id"),
    "create_exit_record": ("/v1/exits", ExitReply, None),
    "cancel_exit_record": ("/v1/exits/{id}/cancel", CancelReply, "exit_id"),
    "list_permits": ("/v1/permits", PermitsReply, None),  # a GET (since= in the query)
}


def _checked(value: Any, meta: msgspec.Meta, what: str) -> str:
    """A reply field as a bounded, well-formed string (plates with markup are refused)."""
    try:
        return str(msgspec.convert(value, Annotated[str, meta]))
    except msgspec.ValidationError:
        raise TransientError(f"bad_field: {what} is invalid: {str(value)[:40]!r}") from None


def validate_reply(operation: str, data: Any) -> Json:
    """An answer's body checked against the contract; a wrong shape is a
    ``TransientError`` whose message starts with the reason (``wrong_shape``,
    ``bad_field``), never a crash and never trusted."""
    _, reply_type, _ = _ROUTES[operation]
    try:
        reply = msgspec.convert(data, reply_type)
    except msgspec.ValidationError as exc:
        raise TransientError(f"wrong_shape: {str(exc)[:120]}") from None
    out: Json = msgspec.structs.asdict(reply)
    if isinstance(reply, VerifyReply):
        out["license_plate"] = _checked(reply.license_plate, PLATE, "license_plate")
    elif isinstance(reply, EntryReply):
        out["entry_id"] = _checked(reply.entry_id, ID, "entry_id")
    elif isinstance(reply, ExitReply):
        out["exit_id"] = _checked(reply.exit_id, ID, "exit_id")
    elif isinstance(reply, PermitsReply):
        out["permits"] = [_permit(p) for p in reply.permits]
        _time(reply.as_of, "as_of")
    return out


def _time(value: str | None, what: str) -> None:
    if value is None:
        return
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise TransientError(f"bad_field: {what} is not an RFC 3339 time: "
                             f"{value[:40]!r}") from None


def _permit(p: Permit) -> Json:
    _time(p.valid_from, "valid_from")
    _time(p.valid_until, "valid_until")
    return {**msgspec.structs.asdict(p),
            "license_plate": _checked(p.license_plate, PLATE, "license_plate")}


class CentralInstance:
    """One base URL of the central service."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, *,
                 max_body_bytes: int = 65536) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = self.base_url
        self._session = session
        self._max_body = max_body_bytes
        self.outstanding = 0
        self.rejected: Counter[str] = Counter()  # replies refused, by reason

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        try:
            path, _, id_key = _ROUTES[operation]
        except KeyError:
            raise PermanentError(f"central service has no operation {operation!r}",
                                 service=self.name) from None
        body = dict(payload)
        if id_key is not None:
            ident = str(body.pop(id_key, "") or "")
            if not ident:
                raise PermanentError(f"{operation} needs {id_key}", service=self.name)
            path = path.format(id=quote(ident, safe=""))
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        self.outstanding += 1
        try:
            async with asyncio.timeout(deadline_s):
                if operation == "list_permits":
                    since = str(body.get("since") or "")
                    return await self._send("GET", operation, path, None, headers,
                                            id_key, {"since": since} if since else None)
                return await self._send("POST", operation, path, body, headers, id_key)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within {deadline_s:g}s",
                                   service=self.name) from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}", service=self.name) from None
        finally:
            self.outstanding -= 1

    async def _send(self, method: str, operation: str, path: str, body: Json | None,
                    headers: dict[str, str], id_key: str | None,
                    params: dict[str, str] | None = None) -> Json:
        cap = PERMITS_MAX_BODY if operation == "list_permits" else self._max_body
        async with self._session.request(method, self.base_url + path, json=body,
                                         headers=headers, params=params) as resp:
            try:  # read(n) would return the first segment only: wait for all (or too much)
                raw = await resp.content.readexactly(cap + 1)
            except asyncio.IncompleteReadError as exc:
                raw = exc.partial  # the whole body, within the cap
            if len(raw) > cap:
                self.rejected["too_large"] += 1
                raise TransientError(f"reply larger than {cap} bytes",
                                     service=self.name, status=resp.status)
            status = resp.status
        if status == 404 and id_key is not None:
            # Cancelling a record the central service never created: nothing to undo.
            return {"status": "not_found"}
        if status in (408, 429) or status >= 500:
            raise TransientError(f"HTTP {status}", service=self.name, status=status)
        if status >= 400:
            try:
                error = str(msgspec.json.decode(raw).get("error", ""))[:80]
            except (msgspec.DecodeError, AttributeError, RecursionError):
                error = ""
            raise PermanentError(f"HTTP {status} {error}".strip(), service=self.name,
                                 status=status)
        try:
            data = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: arrays or objects nested past msgspec's depth limit
            self.rejected["not_json"] += 1
            raise TransientError(f"malformed reply: {str(exc)[:120]}", service=self.name,
                                 status=status) from None
        try:
            return validate_reply(operation, data)
        except TransientError as exc:
            self.rejected[exc.args[0].split(":")[0]] += 1
            exc.service = self.name
            raise


class CentralPool:
    """The ``license_plate_service``: instances load-balanced, each behind its breaker."""

    def __init__(self, instances: list[CentralInstance], balancer: Balancer,
                 breaker_policy: BreakerPolicy, clock: Clock,
                 rng: random.Random | None = None) -> None:
        if not instances:
            raise ValueError("the central pool needs at least one instance")
        self.name = "license_plate_service"
        self.instances = instances
        self.balancer = balancer
        self.breakers = {i.name: Breaker(i.name, breaker_policy) for i in instances}
        # every call of the pool (the sagas', the offline sync's, the permit sync's), for the
        # page's words: the sync's calls after an outage tell that central is back
        self.stats = CallStats()
        self._clock = clock
        self._rng = rng or random.Random()

    def take_transitions(self) -> list[BreakerTransition]:
        out: list[BreakerTransition] = []
        for b in self.breakers.values():  # asked after every call: most have none
            if b.unreported:
                out += b.take_transitions()
        return out

    def circuit(self) -> str:
        """The pool's overall state: closed if any instance is closed, else the best."""
        now = self._clock.monotonic()
        states = {b.current_state(now) for b in self.breakers.values()}
        for s in (CircuitState.CLOSED, CircuitState.HALF_OPEN):
            if s in states:
                return s.value
        return CircuitState.OPEN.value

    def circuit_wait_s(self) -> float:
        """Seconds until some instance's breaker would admit a call (0: one would now)."""
        now = self._clock.monotonic()
        return min(b.wait_s(now) for b in self.breakers.values())

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        """One call, to the instance the balancer chooses among those whose breaker admits
        it. Raises ``CircuitOpenError`` when every instance's breaker is open (the chain then
        moves on to its next fallback at once).

        Asked at every call of a saga: one clock reading before the call (the breakers' and
        the statistics' start) and one after it; with one instance no choice is made."""
        clock = self._clock
        now = clock.monotonic()
        instances, breakers = self.instances, self.breakers
        if len(instances) == 1:  # no choice to make
            instance = instances[0]
            breaker = breakers[instance.name]
            if not breaker.allow(now):
                raise refusal(CircuitOpenError, _ALL_OPEN, self.name)
        else:
            for index in self.balancer.order(
                    [Candidate(i.name, breakers[i.name].current_state(now) is not _OPEN,
                               i.outstanding) for i in instances], self._rng.random()):
                instance = instances[index]
                breaker = breakers[instance.name]
                if breaker.allow(now):
                    break
            else:
                raise refusal(CircuitOpenError, _ALL_OPEN, self.name)
        try:
            result = await instance.call(operation, payload, idempotency_key=idempotency_key,
                                         deadline_s=deadline_s)
        except TransientError as exc:
            end = clock.monotonic()
            breaker.record_failure(end)
            self.stats.record(now, end - now, False, str(exc))
            raise
        except PermanentError:
            end = clock.monotonic()
            breaker.record_success(end)  # it answered
            self.stats.record(now, end - now, True)
            raise
        end = clock.monotonic()
        breaker.record_success(end)
        self.stats.record(now, end - now, True)
        result["_instance"] = instance.name
        return result
