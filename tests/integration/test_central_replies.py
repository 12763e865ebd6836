"""Every malformed reply of the central service is a transient failure with a counted
reason: never a crash, never trusted."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from gateway.core.errors import PermanentError, TransientError
from gateway.services.central import CentralInstance

BODIES = {
    "wrong_types": (b'{"license_plate": 34, "authorized": "yes"}', "wrong_shape"),
    "missing_fields": (b'{"confidence": 0.9}', "wrong_shape"),
    "huge": (b'{"license_plate": "' + b"A" * 100_000 + b'", "authorized": true}',
             "too_large"),
    "invalid_utf8": (b'{"license_plate": "\xff\xfe", "authorized": true}', "not_json"),
    "markup_plate": (b'{"license_plate": "<script>x</script>", "authorized": true}',
                     "bad_field"),
    "not_an_object": (b"[1, 2, 3]", "wrong_shape"),
    "bad_reason": (b'{"license_plate": "AB1", "authorized": true, "reason": "bribe"}',
                   "wrong_shape"),
}


@pytest.fixture
async def server():
    current: dict[str, bytes] = {}

    async def reply(request: web.Request) -> web.Response:
        return web.Response(body=current["body"], content_type="application/json")

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "bad"}, status=422)

    app = web.Application()
    app.router.add_post("/v1/plates/verify", reply)
    app.router.add_post("/v1/entries", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", current
    await runner.cleanup()


@pytest.mark.parametrize("case", sorted(BODIES))
async def test_malformed_reply_is_transient_and_counted(server, case):
    url, current = server
    body, reason = BODIES[case]
    current["body"] = body
    async with aiohttp.ClientSession() as session:
        central = CentralInstance(url, session, max_body_bytes=4096)
        with pytest.raises(TransientError):
            await central.call("verify_license_plate", {"license_plate": "AB1"},
                               idempotency_key=None, deadline_s=0.5)
        assert central.rejected == {reason: 1}


async def test_a_definitive_4xx_is_permanent(server):
    url, _ = server
    async with aiohttp.ClientSession() as session:
        central = CentralInstance(url, session)
        with pytest.raises(PermanentError, match="422 bad"):
            await central.call("create_entry_record", {"license_plate": "AB1"},
                               idempotency_key="k", deadline_s=0.5)
