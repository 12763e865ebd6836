#!/usr/bin/env bash
# Install the gateway as a systemd service on a Raspberry Pi OS / Debian machine.
#   sudo systemd/install.sh            (from a checkout of this repository)
# Puts the code in /opt/parking-gateway with its own virtual environment, the configuration
# in /etc/parking-gateway (kept if present), the database in /var/lib/parking-gateway.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
src="$(cd "$(dirname "$0")/.." && pwd)"
dest=/opt/parking-gateway
etc=/etc/parking-gateway

command -v python3 >/dev/null && python3 -c "import venv, ensurepip" 2>/dev/null || {
  apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
id parking-gateway >/dev/null 2>&1 || useradd --system --home /var/lib/parking-gateway \
  --shell /usr/sbin/nologin parking-gateway
for group in gpio dialout video; do
  getent group "$group" >/dev/null && usermod -aG "$group" parking-gateway
done

mkdir -p "$dest"
cp -a "$src/gateway" "$src/hardware" "$src/config" "$src/systemd" "$src/pyproject.toml" \
  "$src/requirements.txt" "$src/README.md" "$dest/"
python3 -m venv "$dest/.venv"
"$dest/.venv/bin/pip" install -q --upgrade pip
"$dest/.venv/bin/pip" install -q -r "$dest/requirements.txt"
"$dest/.venv/bin/pip" install -q --no-deps "$dest"

install -d -m 0750 -o root -g parking-gateway "$etc"
[ -f "$etc/gateway.toml" ] || install -m 0640 -o root -g parking-gateway \
  "$src/config/example.toml" "$etc/gateway.toml"
if [ ! -f "$etc/environment" ]; then
  umask 077
  token="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  printf 'GATEWAY_ADMIN_TOKEN=%s\n# GATEWAY_MQTT_PASSWORD=\n' "$token" > "$etc/environment"
  chown root:parking-gateway "$etc/environment"
  chmod 0640 "$etc/environment"
  echo "admin token written to $etc/environment"
fi

install -m 0644 "$src/systemd/parking-gateway.service" /etc/systemd/system/
systemctl daemon-reload
echo "edit $etc/gateway.toml, check it with:"
echo "  $dest/.venv/bin/parking-gateway check-config $etc/gateway.toml"
echo "  $dest/.venv/bin/parking-gateway hw-test --config $etc/gateway.toml"
echo "then: systemctl enable --now parking-gateway"
