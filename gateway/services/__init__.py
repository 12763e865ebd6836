"""Clients of other services and the local space service, behind one registry."""
