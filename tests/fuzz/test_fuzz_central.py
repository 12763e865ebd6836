"""The central service's replies (``gateway.services.central``): whatever body and status a
server answers, a call returns a reply checked against the contract or raises the
project's ``TransientError`` / ``PermanentError``; never another exception. The pure check
(``validate_reply``) is fuzzed on its own, and the whole decoding through a real aiohttp
server on 127.0.0.1 answering what Hypothesis chose."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.errors import PermanentError, TransientError
from gateway.services.central import (
    _ROUTES,
    PERMITS_MAX_BODY,
    CentralInstance,
    validate_reply,
)
from tests.fuzz.strategies import Deep, fuzz_settings, json_bytes, json_values, text

OPERATIONS = sorted(_ROUTES)
VALID: dict[str, dict[str, Any]] = {
    "verify_license_plate": {"license_plate": "AB123", "authorized": True, "confidence": 0.9,
                             "reason": "permit", "cacheable_for_s": 60.0},
    "create_entry_record": {"entry_id": "e-1"}, "create_exit_record": {"exit_id": "x-1"},
    "cancel_entry_record": {"status": "cancelled"},
    "cancel_exit_record": {"status": "cancelled"},
    "list_permits": {"permits": [{"license_plate": "AB123", "kind": "resident",
                                  "valid_from": "2026-12-01T00:00:00+00:00",
                                  "valid_until": None, "deleted": False}],
                     "as_of": "2026-12-01T10:00:00.000+00:00"}}
MAX_BODY = 65536  # the default: room for nesting past the recursion limit


@st.composite
def replies(draw: st.DrawFn, operation: str) -> Any:
    """A body near the contract (one field changed, added or removed), or anything."""
    if draw(st.booleans()):
        return draw(json_values)
    body = dict(VALID[operation])
    key = draw(st.sampled_from(sorted(body)) | text)
    if draw(st.booleans()):
        body.pop(key, None)
    else:
        body[key] = draw(json_values)
    return body


def check_result(operation: str, result: dict[str, Any]) -> None:
    """A reply that got through is the contract's shape."""
    if operation == "verify_license_plate":
        assert re.fullmatch(r"[A-Z0-9]{1,12}", result["license_plate"])
        assert isinstance(result["authorized"], bool)
    for permit in result.get("permits", []):
        assert re.fullmatch(r"[A-Z0-9]{1,12}", permit["license_plate"])
    for key in ("entry_id", "exit_id"):
        if key in result:
            assert isinstance(result[key], str) and 1 <= len(result[key]) <= 128


@fuzz_settings(3.0)
@given(st.sampled_from(OPERATIONS).flatmap(lambda op: st.tuples(st.just(op), replies(op))))
@example(("verify_license_plate", {"license_plate": Deep(2000), "authorized": True}))
def test_any_decoded_reply_is_checked_or_a_transient_failure(tried, case: tuple[str, Any]):
    tried("central replies (decoded)")
    operation, reply = case
    try:
        data = msgspec.json.decode(json_bytes(reply))
    except (msgspec.DecodeError, RecursionError):
        return  # not JSON: the HTTP test below covers what the client does with it
    try:
        result = validate_reply(operation, data)
    except TransientError as exc:
        refused = str(exc)
    else:
        return check_result(operation, result)
    assert refused.startswith(("wrong_shape: ", "bad_field: ")), refused


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    cuts: tuple[int, ...] = ()  # written in parts, cut here: a reply in several TCP segments


@dataclass
class Peer:
    answer: Answer
    central: CentralInstance


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    answer = Answer()

    async def reply(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not answer.cuts:
            return web.Response(status=answer.status, body=answer.body,
                                content_type=answer.content_type)
        resp = web.StreamResponse(status=answer.status)
        resp.content_type = answer.content_type
        await resp.prepare(request)
        bounds = [0, *answer.cuts, len(answer.body)]
        for start, end in itertools.pairwise(bounds):
            await resp.write(answer.body[start:end])
            await asyncio.sleep(0.002)  # the network's gap between segments: no event to await
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reply)  # list_permits is a GET
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield Peer(answer, CentralInstance(f"http://127.0.0.1:{port}", session,
                                           max_body_bytes=MAX_BODY))
    await runner.cleanup()


bodies = st.one_of(
    st.sampled_from(OPERATIONS).flatmap(replies).map(json_bytes),
    st.binary(max_size=200),
    st.integers(MAX_BODY - 2, MAX_BODY + 2).map(lambda n: b" " * (n - 2) + b"{}"),
    st.builds(Deep, st.integers(1, 30_000)).map(json_bytes))
statuses = st.sampled_from([200, 201, 202, 204, 299, 300, 304, 400, 401, 404, 408, 409, 422,
                            429, 500, 502, 503, 599]) | st.integers(200, 599)


@fuzz_settings(0.5, io=True)
@given(st.sampled_from(OPERATIONS), statuses, bodies,
       st.sampled_from(["application/json", "text/html", "application/octet-stream"]))
@example("verify_license_plate", 200, b"[" * 10_000 + b"]" * 10_000, "application/json")
@example("verify_license_plate", 400, b"[" * 10_000 + b"]" * 10_000, "application/json")
@example("list_permits", 400, b" " * MAX_BODY + b"{}", "application/json")  # a CI run found it
async def test_any_http_answer_is_a_reply_or_a_service_error(tried, peer: Peer, operation: str,
                                                       status: int, body: bytes, ctype: str):
    tried("central replies (HTTP)")
    peer.answer.status, peer.answer.body, peer.answer.content_type = status, body, ctype
    payload: dict[str, Any] = {"license_plate": "AB123", "entry_id": "e-1", "exit_id": "x-1"}
    try:
        result = await peer.central.call(operation, payload, idempotency_key="k-1",
                                         deadline_s=5.0)
    except (TransientError, PermanentError) as exc:
        failure: TransientError | PermanentError = exc
    else:
        assert status < 400 or (status == 404 and result == {"status": "not_found"})
        if result != {"status": "not_found"}:
            check_result(operation, result)
        return
    assert str(failure)
    # a bad or oversized body, a 408/429 or a 5xx may succeed if tried again; a 4xx will not
    # (the permit list's cap is its own: a whole list is far larger than any other reply)
    cap = PERMITS_MAX_BODY if operation == "list_permits" else MAX_BODY
    transient = status < 400 or status in (408, 429) or status >= 500 or len(body) > cap
    assert isinstance(failure, TransientError if transient else PermanentError), failure


@fuzz_settings(0.2, io=True)
@given(st.sampled_from(OPERATIONS).flatmap(lambda op: st.tuples(st.just(op), st.lists(
    st.integers(1, len(json_bytes(VALID[op])) - 1), min_size=1, max_size=3, unique=True))))
@example(("create_entry_record", [13]))  # was "malformed reply: Input data was truncated"
async def test_a_valid_reply_in_any_segments_is_accepted(tried, peer: Peer,
                                                        case: tuple[str, list[int]]):
    tried("central replies (segmented)")
    operation, cuts = case
    body = json_bytes(VALID[operation])
    peer.answer.status, peer.answer.body, peer.answer.cuts = 200, body, tuple(sorted(cuts))
    result = await peer.central.call(operation, {"entry_id": "e-1", "exit_id": "x-1"},
                                     idempotency_key="k-1", deadline_s=5.0)
    assert result == validate_reply(operation, msgspec.json.decode(body))
