# The parking gate gateway in a container: a slim Debian, a venv with the gateway installed
# from this repository, Debian's mosquitto (for the demo's private broker and compose.yaml's
# broker service), a non-root user, the data directory as a volume, a health check on
# /healthz. The default command is the whole demo in one container:
#
#   podman build --format docker -t parking-gateway .
#   podman run --rm -p 127.0.0.1:8080:8080 parking-gateway      # http://127.0.0.1:8080
#
# With no registry, from a base made locally by mmdebstrap (see the README, "Containers"):
#   podman build --format docker --build-arg BASE=localhost/gateway-base:bookworm -t parking-gateway .
#
# `--format docker` keeps HEALTHCHECK (the OCI image format has no health check; podman
# drops it with a warning); docker build keeps it always.
#
# At a real gate: mount the configuration, keep the data in a volume and pass the devices
# the configuration names (the README, "A real gate in a container"):
#   podman run -d --name gate --restart=always --network host \
#     -v /etc/parking-gateway/gateway.toml:/etc/parking-gateway/gateway.toml:ro \
#     -v parking-data:/var/lib/parking-gateway \
#     --device /dev/gpiochip0 --device /dev/ttyUSB0 --device /dev/video0 \
#     --group-add "$(stat -c %g /dev/gpiochip0)" \
#     parking-gateway run --config /etc/parking-gateway/gateway.toml
#
# RUN --mount needs BuildKit with docker (the default builder since Docker 23) or buildah.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ARG DEBIAN_FRONTEND=noninteractive
# python3 and its venv; passwd for useradd (not in a minimal mmdebstrap base); mosquitto
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates passwd mosquitto \
 && rm -rf /var/lib/apt/lists/*

# The daemon's user: not root; in dialout and video for a serial loop detector and a USB
# camera (their usual groups on Debian and Raspberry Pi OS); a gpiochip's group differs
# between systems (gpio on Raspberry Pi OS): pass its number with --group-add (see above).
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --groups dialout,video \
      --home-dir /var/lib/parking-gateway --no-create-home --shell /usr/sbin/nologin gateway \
 && install -d -o gateway -g gateway -m 0750 /var/lib/parking-gateway

ENV VIRTUAL_ENV=/opt/parking-gateway \
    PATH=/opt/parking-gateway/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The dependencies first (their own layer, rebuilt only when the requirements change), from
# requirements.lock with its hashes where the repository has the lock (else the pins of
# requirements.txt), then the gateway itself, as a wheel built from the repository. Both
# come from PyPI, or, when container/wheels/ holds wheels (a wheelhouse made with
# `pip download`, see the README), from there only, with no index at all: a machine whose
# build containers cannot reach PyPI (no network, or TLS through a proxy with its own CA)
# builds from that. The wheelhouse is bind-mounted for the install, never copied into a layer.
COPY requirements.* /tmp/src/
RUN --mount=type=bind,source=container/wheels,target=/tmp/wheels \
    if ls /tmp/wheels/*.whl > /dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels; echo "installing from the wheelhouse"; \
    fi \
 && python3 -m venv /opt/parking-gateway \
 && if [ -f /tmp/src/requirements.lock ]; then \
      pip install -q --require-hashes -r /tmp/src/requirements.lock; \
    else \
      pip install -q -r /tmp/src/requirements.txt; \
    fi
COPY pyproject.toml /tmp/src/pyproject.toml
COPY gateway /tmp/src/gateway
COPY hardware /tmp/src/hardware
RUN --mount=type=bind,source=container/wheels,target=/tmp/wheels \
    if ls /tmp/wheels/*.whl > /dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels; \
    fi \
 && pip install -q --no-deps /tmp/src \
 && rm -rf /tmp/src \
 && parking-gateway --help > /dev/null

COPY container/demo.toml container/compose.toml container/mosquitto.conf /etc/parking-gateway/
COPY container/entrypoint.sh /usr/local/bin/gateway-entry
COPY container/healthcheck.py /usr/local/lib/parking-gateway/healthcheck.py
RUN chmod 0755 /usr/local/bin/gateway-entry \
 && parking-gateway check-config /etc/parking-gateway/demo.toml \
 && parking-gateway check-config /etc/parking-gateway/compose.toml

VOLUME /var/lib/parking-gateway
WORKDIR /var/lib/parking-gateway
USER gateway
EXPOSE 8080
STOPSIGNAL SIGTERM
# the plate reader loads its models in the first seconds; a lane fault, an open breaker,
# a broker refusing publishes ... make /healthz answer 503 and the container "unhealthy"
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "/usr/local/lib/parking-gateway/healthcheck.py"]
ENTRYPOINT ["/usr/local/bin/gateway-entry"]
CMD ["run", "--config", "/etc/parking-gateway/demo.toml"]
