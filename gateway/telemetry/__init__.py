"""MQTT: the one connection of the gateway (shared by telemetry and the backup client)."""
