"""SQLite storage: schema and migrations, spaces and sessions, saga log, outbox and events,
plate cache. ``Store`` runs all database work on one dedicated thread."""

from gateway.store.db import Database
from gateway.store.store import Store

__all__ = ["Database", "Store"]
