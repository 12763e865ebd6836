"""Parking gate gateway: the daemon that operates one parking gate on its own."""

__version__ = "0.1.0"
