#!/usr/bin/env bash
# Install, upgrade, roll back or remove the gateway on a Raspberry Pi OS / Debian machine,
# from a checkout of this repository:
#   sudo systemd/install.sh                      install, or upgrade to this checkout
#   sudo systemd/install.sh --wheel FILE.whl     install or upgrade to a built wheel
#   sudo systemd/install.sh --rollback           back to the previous release
#   sudo systemd/install.sh --uninstall [--purge]   (keeps /etc and /var/lib unless --purge)
# Releases live side by side in /opt/parking-gateway/releases/<version> (one venv each),
# /opt/parking-gateway/current points at the one the unit runs; the configuration is in
# /etc/parking-gateway (kept if present), the database in /var/lib/parking-gateway.
# The work is done by `python3 -m gateway.install` (gateway/install/); other options:
#   python3 -m gateway.install install --help
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
src="$(cd "$(dirname "$0")/.." && pwd)"

command -v python3 >/dev/null && python3 -c "import venv, ensurepip" 2>/dev/null || {
  apt-get update -qq && apt-get install -y -qq python3 python3-venv; }

command=install
case "${1:-}" in
  --rollback) command=rollback; shift ;;
  --uninstall) command=uninstall; shift ;;
  --releases) command=releases; shift ;;
esac
# the checkout's gateway package, without changing directory (a relative --wheel path stays
# relative to where the command was typed); -P: not the current directory's packages
PYTHONPATH="$src" exec python3 -P -m gateway.install "$command" "$@"
