"""The project's exception tree: who is at fault, and whether a retry can help.

    GatewayError
    ├── ConfigError            the configuration is wrong (fix the file; exit code 2)
    ├── StoreError             the database cannot be used
    │   ├── ForeignDatabaseError   not a gateway database, or corrupt
    │   └── SchemaTooNewError      written by a newer gateway version
    ├── ServiceError           a call to another service did not give an answer we can use
    │   ├── TransientError         retry, breaker and fallbacks apply
    │   │   ├── DeadlineExceeded       no answer within the call's deadline
    │   │   └── CircuitOpenError       the breaker refused the call without trying
    │   └── PermanentError         a definitive answer (4xx): no retry, no fallback
    │       └── NoSpaceAvailable       the allocation policy found no space
    └── DeviceError            a device (loop, relay, camera) failed

Adapters translate library errors into these; the core and the orchestrator only ever
see these.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid. ``problems`` holds every problem, not only the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(GatewayError):
    """The database cannot be opened or used."""


class ForeignDatabaseError(StoreError):
    """The file is not a gateway database (another application's, or corrupt)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer version of the gateway; it is left untouched."""


class ServiceError(GatewayError):
    """A call to another service failed. ``service`` names which one."""

    retryable: bool = False

    def __init__(self, message: str, *, service: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.status = status


class TransientError(ServiceError):
    """The call may succeed if tried again or elsewhere (timeouts, 5xx, 429, bad bodies)."""

    retryable = True


class DeadlineExceeded(TransientError):
    """No answer within the deadline."""


class CircuitOpenError(TransientError):
    """The circuit breaker refused the call without trying it."""


class PermanentError(ServiceError):
    """A definitive refusal: retrying or asking another instance will not change it."""


class NoSpaceAvailable(PermanentError):
    """The allocation policy found no free space this vehicle may use."""


class DeviceError(GatewayError):
    """A device failed: a loop, a relay, a camera, a serial port."""


class LaneTableError(GatewayError):
    """The lane machine met a (state, trigger) its table does not name, or a handler moved
    to a state its row does not list: a gap in the design, never to be silently ignored."""


class DiskFullError(StoreError):
    """The database could not write: its disk (or its size limit) is full. The write was
    rolled back and nothing of it was kept; writes resume by themselves once there is space
    again (no restart needed)."""
