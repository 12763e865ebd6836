"""Sagas: the orchestrator the daemon uses, and the seed's public names over it."""

from gateway.sagas.fallback_strategies import (
    AlternativeServiceStrategy,
    CacheFallbackStrategy,
    CircuitBreaker,
    LoadBalancingStrategy,
    retry_with_backoff,
)
from gateway.sagas.policy import SagaOutcome, StepPolicy
from gateway.sagas.runner import SagaRunner
from gateway.sagas.saga_with_fallbacks import (
    EnhancedSaga,
    EnhancedSagaOrchestrator,
    EnhancedSagaStep,
)

__all__ = [
    "AlternativeServiceStrategy",
    "CacheFallbackStrategy",
    "CircuitBreaker",
    "EnhancedSaga",
    "EnhancedSagaOrchestrator",
    "EnhancedSagaStep",
    "LoadBalancingStrategy",
    "SagaOutcome",
    "SagaRunner",
    "StepPolicy",
    "retry_with_backoff",
]
