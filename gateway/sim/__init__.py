"""Simulated services and devices for the demo and the tests."""
