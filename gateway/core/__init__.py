"""Pure logic: no I/O, no clock reads. Time is always an argument.

Nothing in this package may import asyncio, aiohttp, paho, gpiozero, serial, cv2, sqlite3
or time; ``tests/unit/test_core_purity.py`` holds that rule.
"""
