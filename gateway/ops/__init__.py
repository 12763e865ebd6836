"""Operations commands for the person looking after a gate: ``status``, ``backup``,
``export``, the daily summary and the per-vehicle log line. Each is a pure part (what to
print, what to count, how to write a row) behind a thin adapter (HTTP, SQLite, MQTT)."""
