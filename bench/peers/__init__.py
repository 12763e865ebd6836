"""The contenders of ``bench/engine_peers.py``, each run as its own process (see common.py)."""
