"""The child processes of bench/web_status.py (run by it, not by hand):

    python bench/web_load.py bare                 a bare aiohttp app: GET /bare -> small JSON
    python bench/web_load.py load URL -c N -t S -w W
                                                  N keep-alive connections GET URL for W s of
                                                  warm-up, then S s measured; prints JSON
    python bench/web_load.py sse URL -n N --after SEQ
                                                  N clients on URL/api/events/stream; reads
                                                  "until SEQ" on stdin, prints JSON

Each child ignores SIGINT (a Ctrl-C reaches the whole process group; the parent stops its
children itself) and dies with its parent (PR_SET_PDEATHSIG). Lines on stdout are the
protocol: "listening PORT", "measuring", "connected", then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import signal
import sys
import time
from collections import Counter

import aiohttp
from aiohttp import web

PR_SET_PDEATHSIG = 1
BARE_BODY = b'{"gate_id": "bench", "ok": true, "uptime_s": 12.3}'


def die_with_parent() -> None:
    """For subprocess preexec_fn: SIGTERM when the parent dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def bare() -> None:
    """The same aiohttp, the same loop (asyncio.run, the default policy) and the same runner
    settings as the daemon (gateway/app.py: AppRunner with access_log=None)."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=BARE_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/bare", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    say(f"listening {runner.addresses[0][1]}")
    await stop.wait()
    await runner.cleanup()


async def load(url: str, connections: int, seconds: float, warmup: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end = start + seconds
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    last_done = start
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal last_done
            while (t0 := loop.time()) < end:
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if t0 >= start:
                        errors[type(exc).__name__] += 1
                    continue
                t1 = loop.time()
                if t0 < start:
                    continue
                if status != 200:
                    errors[f"HTTP {status}"] += 1
                    continue
                latencies.append(t1 - t0)
                sizes[len(body)] += 1
                last_done = t1

        tasks = [asyncio.create_task(worker()) for _ in range(connections)]
        await asyncio.sleep(warmup)
        say("measuring")
        cpu0 = cpu_s()
        await asyncio.gather(*tasks)
        cpu1 = cpu_s()
    window = last_done - start if latencies else seconds
    latencies.sort()
    say(json.dumps({
        "requests": len(latencies), "errors": dict(errors), "window_s": window,
        "rate": len(latencies) / window, "p50_ms": pct(latencies, 0.5) * 1000,
        "p90_ms": pct(latencies, 0.9) * 1000, "p99_ms": pct(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "body_bytes": sizes.most_common(1)[0][0] if sizes else 0,
        "client_cpu_s": cpu1 - cpu0}))


async def sse(url: str, clients: int, after: int) -> None:
    """Every client records each event's seq and, for permit_changed events, when it came
    (time.monotonic: one clock for every process of the machine) by plate."""
    seqs: list[list[int]] = [[] for _ in range(clients)]
    arrivals: list[dict[str, float]] = [{} for _ in range(clients)]
    bad: Counter[str] = Counter()
    connected = 0
    all_connected = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:

        async def client(i: int) -> None:
            nonlocal connected
            async with session.get(f"{url}/api/events/stream?after_seq={after}") as resp:
                connected += 1
                if connected == clients:
                    all_connected.set()
                seq = None
                async for raw in resp.content:
                    line = raw.rstrip(b"\n")
                    if line.startswith(b"id: "):
                        seq = int(line[4:])
                    elif line.startswith(b"data: "):
                        event = json.loads(line[6:])
                        if event["seq"] != seq:
                            bad["id and data disagree"] += 1
                        seqs[i].append(event["seq"])
                        if event["type"] == "permit_changed":
                            arrivals[i][event["data"]["license_plate"]] = time.monotonic()

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.wait_for(all_connected.wait(), 30)
        say("connected")
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        line = (await reader.readline()).decode().split()  # "until SEQ"
        until = int(line[1])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 - another process writes
                (s[-1] if s else after) < until for s in seqs):
            await asyncio.sleep(0.01)
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    say(json.dumps({"seqs": seqs, "arrivals": arrivals, "bad": dict(bad),
                    "client_errors": [repr(t.exception()) for t in failed]}))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    sub.add_parser("bare")
    p = sub.add_parser("load")
    p.add_argument("url")
    p.add_argument("-c", "--connections", type=int, default=16)
    p.add_argument("-t", "--seconds", type=float, default=5.0)
    p.add_argument("-w", "--warmup", type=float, default=1.0)
    s = sub.add_parser("sse")
    s.add_argument("url")
    s.add_argument("-n", "--clients", type=int, default=20)
    s.add_argument("--after", type=int, default=0)
    args = parser.parse_args()
    if args.role == "bare":
        asyncio.run(bare())
    elif args.role == "load":
        asyncio.run(load(args.url, args.connections, args.seconds, args.warmup))
    else:
        asyncio.run(sse(args.url, args.clients, args.after))


if __name__ == "__main__":
    main()
