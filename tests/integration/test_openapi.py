"""The OpenAPI document is true: every route of the app is in it and nothing else, it is a
valid OpenAPI 3.1 document, and schemathesis, driving the running daemon from the document
alone, finds no 5xx, no status, content type or body outside what the document says, no
admin route that acts without the token, and no malformed input accepted.

The daemon runs the demo's configuration (everything simulated and online: the sim central
and the sim backup on a private Mosquitto, telemetry, Home Assistant discovery, traffic)
in a thread of this process with its own event loop, its web server on a free 127.0.0.1
port, so the schemathesis run (synchronous: requests) talks to a real server over TCP.
The event stream is left out of the run (it never ends); tests/integration/test_web_api.py
covers it in-process. Admin calls carry the token, so their 200 paths are run too (and
schemathesis probes each without and with a wrong token).

Every error the daemon logs during a call fails that call too (a saga crashing after a
fault switch, a reply refused by its type).

Cost: about 20 s of CPU in make test (10 generated examples per operation besides the
document's own and schemathesis' coverage cases, derandomised: the same cases each run;
35 s wall on an idle 2-core machine); the soak run (``-m soak``) takes 300 per operation."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.web.app import make_app
from gateway.web.openapi import OPENAPI, ROUTES
from tests.e2e.daemon import ADMIN_TOKEN, demo_text

STREAM = "/api/events/stream"


class ServedGateway:
    """A Gateway started in a thread with its own loop; ``url`` once it serves."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.url = ""
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="served gateway", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self.error is not None:
            raise RuntimeError(f"the gateway did not start: {self.error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        gw = Gateway(parse_settings(self.config, env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}))
        try:
            await gw.start()
            self.url = f"http://127.0.0.1:{gw.web_port}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await gw.stop()




class Errors(logging.Handler):
    """Every error the daemon logs while schemathesis drives it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    server = ServedGateway(demo_text(tmp_path_factory.mktemp("openapi")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logged_errors() -> Iterator[Errors]:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_every_route_is_documented_and_nothing_else() -> None:
    class _NoGateway:  # only the routes are read
        stopping = None

    app = make_app(_NoGateway())
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    documented = {(m.upper(), p) for p, ops in OPENAPI["paths"].items() for m in ops}
    assert routes == documented
    assert {(r.method, r.path) for r in ROUTES} == documented


def test_the_document_is_valid_openapi_3_1() -> None:
    schema = schemathesis.openapi.from_dict(OPENAPI)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    # every reply and body is described by a named type, none is left as "any object"
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                for media, content in response.get("content", {}).items():
                    if media == "application/json" and path != "/api/openapi.json":
                        assert "$ref" in content["schema"] or \
                            "$ref" in content["schema"].get("items", {}), (method, path, status)


def test_the_served_document_is_the_generated_one(served: ServedGateway) -> None:
    reply = requests.get(served.url + "/api/openapi.json", timeout=10)
    assert reply.status_code == 200 and reply.json() == OPENAPI


def _schema(max_examples: int) -> Any:
    schema = schemathesis.openapi.from_dict(OPENAPI)
    schema.config.generation.update(max_examples=max_examples, deterministic=True)
    return schema.exclude(path=STREAM)


# (schemathesis.pytest.from_fixture needs pytest's private Function._nodeid, gone in
# pytest 9; the schema is loaded here and the served daemon's URL given to each call)
API, SOAK = _schema(10), _schema(300)


def _ends_before_it_starts(case: Any) -> bool:
    """A permit whose validity ends before it starts: a rule across two fields that JSON
    Schema cannot say, refused with a 400 that says so (checked here instead)."""
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.label != "PUT /api/permits/{plate}" or case.meta is None \
            or not case.meta.generation.mode.is_positive or not (
            isinstance(body.get("valid_from"), str) and isinstance(body.get("valid_until"), str)):
        return False
    try:
        start, end = (datetime.fromisoformat(body[k].upper()) for k in ("valid_from",
                                                                          "valid_until"))
    except ValueError:
        return False
    return end <= start


def _call(case: Any, served: ServedGateway, logged_errors: Errors) -> None:
    logged_errors.records.clear()
    kwargs = _call_kwargs(served)
    _validate(case, case.call(**kwargs), served, logged_errors, kwargs)


def _call_kwargs(served: ServedGateway) -> dict[str, Any]:
    return {"base_url": served.url, "timeout": 10,
            "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}


def _validate(case: Any, response: Any, served: ServedGateway, logged_errors: Errors,
              kwargs: dict[str, Any]) -> None:
    """The checks, told what the call added (the token header), so that a case generated
    without the header is not taken as sent without it."""
    if case.operation.label == "POST /api/sim/faults":
        # a fault switched on deliberately (a full disk): the daemon logs what fails while
        # it lasts, as it should; the next case starts without it
        requests.post(served.url + "/api/sim/faults", json=RESET, timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).raise_for_status()
        logged_errors.records.clear()
    if _ends_before_it_starts(case):
        assert response.status_code == 400 and "after valid_from" in response.text
        case.validate_response(response, excluded_checks=[positive_data_acceptance],
                               transport_kwargs=kwargs)
    else:
        case.validate_response(response, transport_kwargs=kwargs)
    assert not logged_errors.records, [r.getMessage() for r in logged_errors.records]


RESET = {"disk_full": False, "wall_offset_s": 0.0, "wall_synced": None}


@API.parametrize()  # type: ignore[untyped-decorator]
@settings(deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
def test_the_api_holds_to_its_document(case: Any, served: ServedGateway,
                                       logged_errors: Errors) -> None:
    _call(case, served, logged_errors)


@pytest.mark.soak
@SOAK.parametrize()  # type: ignore[untyped-decorator]
@settings(deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
def test_the_api_holds_to_its_document_at_length(case: Any, served: ServedGateway,
                                                 logged_errors: Errors) -> None:
    _call(case, served, logged_errors)


@pytest.mark.soak
def test_linked_calls_hold_to_the_document(served: ServedGateway,
                                           logged_errors: Errors) -> None:
    """Stateful (make soak): schemathesis follows the document's links
    (gateway.web.openapi.LINKS: a sim vehicle sent, then read by its id; a saga from the
    lists, then its view, then its images; a permit set, then deleted) and those it infers,
    so the routes behind an id also run with real ids. Which chains it reaches depends on
    what the daemon holds at the time, so only the replies are asserted, not the reach."""
    linked = _schema(50)
    linked.config.update(parameters={"lane_id": "entry-1"})  # a lane that exists
    # valid requests only: the stateless run sends the invalid ones (and schemathesis'
    # stateful negation of the token header is undone by the call's own header)
    linked.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE])

    class Workflow(linked.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return _call_kwargs(served)

        def before_call(self, case: Any) -> None:
            logged_errors.records.clear()

        def validate_response(self, response: Any, case: Any, *args: Any,
                              **kwargs: Any) -> None:
            _validate(case, response, served, logged_errors, kwargs)

    Workflow.run(settings=settings(max_examples=50, deadline=None, derandomize=True,
                                   suppress_health_check=list(HealthCheck),
                                   stateful_step_count=8))
