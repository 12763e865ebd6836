#!/usr/bin/env bash
# container/make-base.sh [TAG [MIRROR...]]: the image's Debian bookworm base made locally
# with mmdebstrap and imported into podman, for machines that reach a Debian mirror but no
# container registry:
#
#   container/make-base.sh                      # localhost/gateway-base:bookworm
#   podman build --format docker --build-arg BASE=localhost/gateway-base:bookworm -t parking-gateway .
#
# MIRROR: as mmdebstrap takes it (none: deb.debian.org with bookworm-updates and the security
# archive; a URL; a "deb ..." line; or a sources file such as /etc/apt/sources.list.d/x.sources,
# pasted as it is). The apt variant is Essential plus apt (about debian:bookworm-slim), with
# python3, its venv and ca-certificates (and passwd, for useradd); documentation and locales
# left out as the slim image does. Needs root, or podman's rootless set-up (uidmap).
set -euo pipefail
tag=${1:-localhost/gateway-base:bookworm}
[ $# -gt 0 ] && shift
mmdebstrap --variant=apt --format=tar \
    --include=python3,python3-venv,ca-certificates,passwd \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm - "$@" \
  | podman import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' \
      - "$tag"
