"""The test service every contender of ``bench/engine_peers.py`` calls: the central plate
service's contract (contracts/central-api.md) for ``POST /v1/plates/verify`` and
``POST /v1/entries`` (with its ``Idempotency-Key``: the same key again answers 200 with the
same ``entry_id``), and ``GET /v1/health``. Lean on purpose, and the same for everyone: every
plate is a visitor let in, the records are kept in memory, nothing is delayed.

    python bench/peers/service.py --port N     (prints one line when it listens)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import UTC, datetime

from aiohttp import web

ENTRIES: dict[str, str] = {}  # Idempotency-Key -> entry_id
CALLS = {"verify": 0, "create": 0, "replayed": 0}


def reply(body: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body), status=status, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return reply({"status": "ok", "calls": CALLS, "entries": len(ENTRIES)})


async def verify(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    CALLS["verify"] += 1
    plate = str(body.get("license_plate") or "").upper().replace(" ", "")
    if not plate:
        return reply({"error": "no_plate_found"}, 422)
    return reply({"license_plate": plate, "confidence": 0.97, "authorized": True,
                  "reason": "visitor", "cacheable_for_s": 3600})


async def create(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        return reply({"error": "idempotency_key_required"}, 400)
    body = json.loads(await request.read())
    CALLS["create"] += 1
    if key in ENTRIES:
        CALLS["replayed"] += 1
        return reply({"entry_id": ENTRIES[key]})
    if not body.get("license_plate") or not body.get("space_id"):
        return reply({"error": "invalid_record"}, 422)
    entry_id = ENTRIES[key] = f"e-{len(ENTRIES) + 1:08d}"
    return reply({"entry_id": entry_id}, 201)


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/v1/health", health)
    app.router.add_post("/v1/plates/verify", verify)
    app.router.add_post("/v1/entries", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"test service listening on http://127.0.0.1:{port} at "
          f"{datetime.now(UTC).isoformat(timespec='seconds')}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    p.add_argument("--port", type=int, required=True)
    asyncio.run(serve(p.parse_args().port))


if __name__ == "__main__":
    main()
