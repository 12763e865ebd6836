"""The seed's fallback strategies, as thin faces over the core the daemon uses.

Each ``execute`` returns ``(success, result)``: the service's result on success, the last
exception on failure. Run ``python -m gateway.sagas.fallback_strategies`` to see each one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from gateway.clock import Clock, SystemClock
from gateway.core.backoff import cached_schedule
from gateway.core.balancing import Balancer, Candidate
from gateway.core.breaker import Breaker, BreakerPolicy
from gateway.core.errors import CircuitOpenError, PermanentError

T = TypeVar("T")
AsyncFn = Callable[..., Awaitable[Any]]
_SYSTEM_CLOCK = SystemClock()  # the clock when none is given (it keeps no per-call state)


async def retry_with_backoff(
    func: AsyncFn, *args: Any, retry_count: int = 3, initial_delay: float = 0.5,
    backoff_factor: float = 2.0, max_delay: float = 30.0, jitter: float = 0.0,
    deadline: float = float("inf"), clock: Clock | None = None, **kwargs: Any,
) -> tuple[bool, Any]:
    """Call ``func`` and retry it up to ``retry_count`` times, waiting longer each time.
    A ``PermanentError`` is not retried."""
    clock = clock or _SYSTEM_CLOCK
    schedule = cached_schedule(initial_delay, backoff_factor, max_delay, jitter, retry_count,
                               deadline)
    begin = clock.monotonic()
    failures = 0
    while True:
        try:
            return True, await func(*args, **kwargs)
        except PermanentError as exc:
            return False, exc
        except Exception as exc:
            failures += 1
            delay = schedule.next_delay(failures, clock.monotonic() - begin, random.random())
            if delay is None:
                return False, exc
            await clock.sleep(delay)


class CircuitBreaker:
    """Blocks calls to a failing service for ``reset_timeout`` seconds."""

    def __init__(self, name: str, failure_threshold: int = 5, reset_timeout: float = 30.0,
                 half_open_probes: int = 1, clock: Clock | None = None) -> None:
        self.name = name
        self.clock = clock or SystemClock()
        self.breaker = Breaker(name, BreakerPolicy(failure_threshold=failure_threshold,
                                                   reset_timeout_s=reset_timeout,
                                                   half_open_probes=half_open_probes))

    @property
    def state(self) -> str:
        return self.breaker.current_state(self.clock.monotonic()).value

    async def execute(self, func: AsyncFn, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if not self.breaker.allow(self.clock.monotonic()):
            return False, CircuitOpenError(f"circuit {self.name} is open", service=self.name)
        try:
            result = await func(*args, **kwargs)
        except PermanentError as exc:
            self.breaker.record_success(self.clock.monotonic())  # it answered, definitively
            return False, exc
        except Exception as exc:
            self.breaker.record_failure(self.clock.monotonic())
            return False, exc
        self.breaker.record_success(self.clock.monotonic())
        return True, result


class AlternativeServiceStrategy:
    """Tries the primary service, then each alternative in order."""

    def __init__(self, primary_service: str, alternative_services: Sequence[str]) -> None:
        self.primary_service = primary_service
        self.alternative_services = list(alternative_services)
        self.last_used: str | None = None

    async def execute(self, primary_func: AsyncFn, alternative_funcs: Sequence[AsyncFn],
                      *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        names = [self.primary_service, *self.alternative_services]
        last: Exception | None = None
        for i, func in enumerate([primary_func, *alternative_funcs]):
            try:
                result = await func(*args, **kwargs)
            except PermanentError as exc:
                return False, exc  # a definitive answer: asking elsewhere will not change it
            except Exception as exc:
                last = exc
                continue
            self.last_used = names[i] if i < len(names) else f"alternative_{i}"
            return True, result
        return False, last


class CacheFallbackStrategy:
    """Calls the service and remembers its answer; when the service fails, answers from
    the cache if the entry is younger than ``cache_ttl_seconds``."""

    def __init__(self, cache_ttl_seconds: float = 300, clock: Clock | None = None,
                 max_entries: int = 10_000) -> None:
        self.cache_ttl_seconds = cache_ttl_seconds
        self.clock = clock or SystemClock()
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Any]] = {}
        self.last_from_cache = False

    async def execute(self, func: AsyncFn, *args: Any, cache_key: str,
                      **kwargs: Any) -> tuple[bool, Any]:
        try:
            result = await func(*args, **kwargs)
        except PermanentError as exc:
            return False, exc
        except Exception as exc:
            hit = self._cache.get(cache_key)
            if hit and self.clock.monotonic() - hit[0] < self.cache_ttl_seconds:
                self.last_from_cache = True
                return True, hit[1]
            return False, exc
        if len(self._cache) >= self.max_entries:
            self._cache.pop(next(iter(self._cache)))
        self._cache[cache_key] = (self.clock.monotonic(), result)
        self.last_from_cache = False
        return True, result


class LoadBalancingStrategy:
    """Chooses one of several service instances."""

    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LEAST_OUTSTANDING = "least_outstanding"
    LEAST_CONNECTIONS = "least_outstanding"
    WEIGHTED = "weighted"

    def __init__(self, strategy: str = ROUND_ROBIN, weights: Sequence[float] | None = None,
                 is_available: Callable[[Any], bool] | None = None,
                 rng: random.Random | None = None) -> None:
        self.strategy = strategy
        self.balancer = Balancer(strategy)
        self.weights = list(weights) if weights else None
        self.is_available = is_available or (lambda _service: True)
        self.rng = rng or random.Random()
        self.outstanding: dict[int, int] = {}

    def get_service(self, services: Sequence[T]) -> T:
        candidates = [
            Candidate(str(i), self.is_available(s), self.outstanding.get(id(s), 0),
                      self.weights[i] if self.weights and i < len(self.weights) else 1.0)
            for i, s in enumerate(services)
        ]
        index = self.balancer.choose(candidates, self.rng.random())
        if index is None:
            raise CircuitOpenError("no service instance is available")
        return services[index]

    async def call(self, services: Sequence[AsyncFn], *args: Any, **kwargs: Any) -> Any:
        """Choose an instance and call it, counting it as outstanding meanwhile (what
        ``LEAST_OUTSTANDING`` balances on)."""
        service = self.get_service(services)
        self.outstanding[id(service)] = self.outstanding.get(id(service), 0) + 1
        try:
            return await service(*args, **kwargs)
        finally:
            self.outstanding[id(service)] -= 1


async def _demo() -> None:
    calls = {"n": 0}

    async def flaky(operation: str, data: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"attempt {calls['n']}: connection refused")
        return {"license_plate": data["license_plate"], "authorized": True}

    async def down(operation: str, data: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("service down")

    async def backup(operation: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"license_plate": data["license_plate"], "authorized": True, "via": "backup"}

    data = {"license_plate": "34ABC123"}
    print("1. retry_with_backoff: fails twice, then succeeds")
    ok, result = await retry_with_backoff(flaky, "verify_license_plate", data, retry_count=3,
                                          initial_delay=0.05, backoff_factor=2.0)
    print(f"   success={ok} after {calls['n']} calls: {result}")

    print("2. CircuitBreaker: opens after 3 failures, then refuses without calling")
    cb = CircuitBreaker("license_plate_service", failure_threshold=3, reset_timeout=0.2)
    for i in range(5):
        ok, result = await cb.execute(down, "verify_license_plate", data)
        print(f"   call {i + 1}: success={ok} state={cb.state} ({result})")
    await asyncio.sleep(0.25)
    ok, result = await cb.execute(backup, "verify_license_plate", data)
    print(f"   after the reset timeout: success={ok} state={cb.state}")

    print("3. AlternativeServiceStrategy: primary down, backup answers")
    alt = AlternativeServiceStrategy("primary_service", ["backup_service1", "backup_service2"])
    ok, result = await alt.execute(down, [down, backup], "verify_license_plate", data)
    print(f"   success={ok} via {alt.last_used}: {result}")

    print("4. CacheFallbackStrategy: a cached answer when the service fails")
    cache = CacheFallbackStrategy(cache_ttl_seconds=300)
    ok, _ = await cache.execute(backup, "verify_license_plate", data, cache_key="34ABC123")
    ok, result = await cache.execute(down, "verify_license_plate", data, cache_key="34ABC123")
    print(f"   success={ok} from_cache={cache.last_from_cache}: {result}")

    print("5. LoadBalancingStrategy: round robin over three instances")
    lb = LoadBalancingStrategy(LoadBalancingStrategy.ROUND_ROBIN)
    instances = [flaky, backup, down]
    chosen = [instances.index(lb.get_service(instances)) for _ in range(6)]
    print(f"   chosen instances: {chosen}")


if __name__ == "__main__":
    asyncio.run(_demo())
