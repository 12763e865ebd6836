"""The image's HEALTHCHECK: GET /healthz (no curl in a slim image); exit 0 when healthy.

The address is GATEWAY_HEALTH_URL (default http://127.0.0.1:8080/healthz); a 503 prints
the daemon's problems, so `podman healthcheck run` and `podman inspect` say why."""

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("GATEWAY_HEALTH_URL", "http://127.0.0.1:8080/healthz")


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=4) as reply:
            print(reply.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{URL}: {exc.code} {exc.read().decode(errors='replace')}")
    except OSError as exc:
        print(f"{URL}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
