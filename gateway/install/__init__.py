"""Installing the gateway on a gate: releases side by side, upgrades that roll themselves
back, rollback by hand, uninstall (see ``lifecycle.py`` for the order of the steps).

Standard library only: ``systemd/install.sh`` runs it from a checkout on the system's
Python, before any virtual environment exists.
"""
