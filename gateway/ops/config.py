"""Which configuration the operations commands read: ``--config FILE``, else the
installed one (``/etc/parking-gateway/gateway.toml``, as the systemd unit runs it), else the
embedded demo (what ``parking-gateway run`` uses without ``--config``)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.settings import Settings, load_default, load_settings

INSTALLED_CONFIG = Path("/etc/parking-gateway/gateway.toml")


def ops_settings(path: str | None) -> Settings:
    """Raises ``ConfigError`` (every problem listed) for a file that does not parse."""
    if path:
        return load_settings(path, os.environ)
    if INSTALLED_CONFIG.is_file():
        return load_settings(INSTALLED_CONFIG, os.environ)
    return load_default(os.environ)
