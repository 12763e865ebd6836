"""What the orchestrator needs of a service.

A remote service answers ``call(operation, payload, idempotency_key=…, deadline_s=…)`` with a
JSON object, or raises ``TransientError`` / ``PermanentError``. A local service changes the
SQLite database inside the transaction that also writes the saga log record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from gateway.core.breaker import BreakerTransition
from gateway.core.errors import PermanentError, TransientError

Json = dict[str, Any]


@runtime_checkable
class RemoteService(Protocol):
    name: str

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json: ...


@runtime_checkable
class LocalService(Protocol):
    name: str

    def apply(self, conn: sqlite3.Connection, operation: str, payload: Json, *,
              saga_id: str, now: str) -> Json: ...

    def on_finished(self, conn: sqlite3.Connection, *, kind: str, status: str, saga_id: str,
                    context: Json, results: dict[str, Json], now: str) -> None: ...


class HasBreakers(Protocol):
    """A service that protects its instances with its own breakers."""

    def take_transitions(self) -> list[BreakerTransition]: ...


@runtime_checkable
class HasCircuit(Protocol):
    """A service whose breakers can say when a call could next go through."""

    def circuit_wait_s(self) -> float: ...


class CallableService:
    """Adapts a seed-style ``async def service(operation, data)`` to ``RemoteService``.

    Exceptions other than the project's own count as transient failures."""

    def __init__(self, name: str, func: Callable[[str, Json], Awaitable[Any]]) -> None:
        self.name = name
        self._func = func

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        data = dict(payload)
        if idempotency_key:
            data.setdefault("idempotency_key", idempotency_key)
        try:
            result = await self._func(operation, data)
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}", service=self.name) from exc
        return result if isinstance(result, dict) else {"result": result}


class ServiceRegistry:
    """Maps the seed's service names to services."""

    def __init__(self) -> None:
        self.remote: dict[str, RemoteService] = {}
        self.local: dict[str, LocalService] = {}

    def register(self, name: str, service: RemoteService | LocalService
                 | Callable[[str, Json], Awaitable[Any]]) -> None:
        if isinstance(service, LocalService):
            self.local[name] = service
        elif isinstance(service, RemoteService):
            self.remote[name] = service
        elif callable(service):
            self.remote[name] = CallableService(name, service)
        else:
            raise TypeError(f"{name}: not a service: {service!r}")

    def __contains__(self, name: object) -> bool:
        return name in self.remote or name in self.local

    def names(self) -> list[str]:
        return sorted([*self.remote, *self.local])
