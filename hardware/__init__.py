"""Device adapters behind small interfaces: loop sensors (GPIO, serial), barrier and
indicator relays (GPIO), cameras (OpenCV), and simulated backends that go through the same
interfaces. Adapters translate library errors into ``DeviceError`` and make no decisions."""
