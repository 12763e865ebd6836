# Two commands do all the set-up on a fresh Debian-like machine (Raspberry Pi OS included):
#   make demo   run the daemon on the embedded demo configuration (http://127.0.0.1:8080)
#   make test   ruff, mypy and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest soak bench bench-quick bench-venv bench-lock system-deps venv clean diagrams test-container container-deps lock screenshots

demo: venv
	$(PY) -m gateway run

test: venv lint typecheck pytest bench-quick

lint: venv
	$(VENV)/bin/ruff check gateway hardware tests bench

typecheck: venv
	$(VENV)/bin/mypy

# Two worker processes (pytest-xdist): most tests wait on processes, brokers and sockets, so
# two cores run the suite in about 8 minutes instead of 13.
PYTEST_WORKERS ?= 2
pytest: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not privileged and not soak and not container"

# The container test (tests/container, not part of make test): podman builds the image from
# a Debian base made here by mmdebstrap (no registry needed) and runs the demo container and
# compose.yaml's demo. About 8 min the first time, 2 min with the base and layers cached.
test-container: venv container-deps
	$(VENV)/bin/pip install -q -r container/requirements-container.txt
	$(PY) -m pytest -m container -s tests/container

# podman and mmdebstrap; runc for hosts where crun cannot start containers (hybrid cgroups);
# aardvark-dns for compose's service names. Installed only when missing.
CONTAINER_PACKAGES := podman mmdebstrap runc aardvark-dns
container-deps:
	@missing=""; \
	for p in $(CONTAINER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

soak: venv
	$(PY) -m pytest -m crash --crash-rounds=400 tests/integration/test_crash_recovery.py
	$(PY) -m pytest -m privileged
	$(PY) -m pytest -m soak
	HYPOTHESIS_PROFILE=soak $(PY) -m pytest tests/fuzz

# The bench suite (README: Performance): every benchmark with its figures and, where it has
# a baseline, the ratio measured in the same run; JSON into bench/results/, from which the
# README's table is regenerated. bench-quick runs each briefly (part of make test, so no
# benchmark rots); its figures go to a temporary directory and are not judged.
bench: venv bench-venv
	$(PY) -m bench
	$(PY) -m bench.readme

bench-quick: venv bench-venv
	$(PY) -m bench --quick

# What the product is compared with (DBOS Transact, tenacity, stamina, pybreaker,
# aiobreaker) lives in its own virtual environment, never in the product's.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): bench/requirements.lock | system-deps
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q --require-hashes -r bench/requirements.lock
	touch $(BENCH_STAMP)

bench-lock: venv
	$(PY) -m pip install -q uv==0.13.8
	$(VENV)/bin/uv pip compile bench/requirements.txt --universal --python-version 3.11 --generate-hashes -o bench/requirements.lock

venv: $(STAMP)

# Every package from the lock, with its hash (README: Dependencies and the lock files).
$(STAMP): requirements-dev.lock pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# System packages the product and its tests use (python3-venv, mosquitto, chromium, the
# DejaVu fonts the plate scenes are drawn with), installed only when missing, so a machine
# that has everything is not touched.
system-deps:
	@missing=""; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The README's screenshots, taken by the browser tests against the demo (35-55 s).
screenshots: venv
	GATEWAY_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest tests/browser

# Re-lock after editing pyproject.toml's dependencies or requirements-dev.txt (README,
# "Dependencies and the lock files"); commit both locks.
lock: venv
	$(PY) -m pip install -q uv==0.13.8
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml requirements-dev.txt --universal --python-version 3.11 --generate-hashes -c requirements.lock -o requirements-dev.lock

diagrams: venv
	$(PY) -c "import pathlib; from gateway.core.diagrams import update; p = pathlib.Path('README.md'); p.write_text(update(p.read_text()))"

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache
