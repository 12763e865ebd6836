"""The backup service's MQTT replies (``gateway.services.backup.decode_reply``): any payload
is a checked result, the service's own error (``TransientError`` / ``PermanentError``), or
raises one of ``MALFORMED`` (dropped and counted; the request keeps waiting); never another
exception."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.errors import PermanentError, ServiceError, TransientError
from gateway.services.backup import MALFORMED, MAX_REPLY, OPERATIONS, decode_reply
from tests.fuzz.strategies import Deep, fuzz_settings, json_bytes, json_values, text
from tests.fuzz.test_fuzz_central import VALID, check_result

SERVICE = "alternative_license_plate_service"


@st.composite
def envelopes(draw: st.DrawFn, operation: str) -> Any:
    """An envelope near the contract (a field changed, added or removed), or anything."""
    if draw(st.booleans()):
        return draw(json_values)
    ok = draw(st.booleans())
    body: dict[str, Any] = {"ok": ok, "result": dict(VALID[operation])} if ok else {
        "ok": False, "error": "backup unavailable", "retryable": draw(st.booleans())}
    where = body["result"] if ok and draw(st.booleans()) else body
    key = draw(st.sampled_from(sorted(where)) | text)
    if draw(st.booleans()):
        where.pop(key, None)
    else:
        where[key] = draw(json_values)
    return body


payloads = st.one_of(
    st.sampled_from(OPERATIONS).flatmap(
        lambda op: st.tuples(st.just(op), envelopes(op).map(json_bytes))),
    st.tuples(st.sampled_from(OPERATIONS), st.binary(max_size=200)),
    st.tuples(st.sampled_from(OPERATIONS),
              st.integers(MAX_REPLY - 2, MAX_REPLY + 2).map(
                  lambda n: b'{"ok": false, "error": ""}'.ljust(n))))


@fuzz_settings(3.0)
@given(payloads)
# RecursionError: nested past msgspec's depth limit, in the result or in an unknown key
@example(("verify_license_plate", b'{"ok": true, "result": ' + json_bytes(Deep(10_000)) + b"}"))
@example(("create_entry_record", b'{"ok": true, "x": ' + json_bytes(Deep(10_000)) + b"}"))
def test_any_payload_is_a_reply_an_error_or_dropped(tried, case: tuple[str, bytes]):
    tried("backup replies")
    operation, payload = case
    try:
        outcome = decode_reply(operation, payload, SERVICE)
    except MALFORMED:
        return
    if isinstance(outcome, ServiceError):
        assert isinstance(outcome, TransientError | PermanentError)
        assert outcome.service == SERVICE and str(outcome).startswith("backup: ")
    else:
        check_result(operation, outcome)
