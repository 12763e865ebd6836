"""The central service's HTTP session: no timer waking an idle gate for plain HTTP."""

from __future__ import annotations

from gateway.sagas.factory import central_session
from gateway.settings import parse_settings


def _settings(url: str):
    return parse_settings(f'[gate]\nid = "g"\n[central]\nbase_urls = ["{url}"]\n', "t.toml")


async def test_a_plain_http_central_leaves_no_periodic_timer() -> None:
    # aiohttp's clean-up of closed TLS transports reschedules itself every 2 s for the
    # session's life: a wake-up of an idle gate that only a TLS server needs
    session = central_session(_settings("http://127.0.0.1:9"))
    try:
        assert session.connector is not None
        assert session.connector._cleanup_closed_handle is None
    finally:
        await session.close()


async def test_a_tls_central_keeps_the_clean_up_of_closed_transports() -> None:
    session = central_session(_settings("https://central.example:8443"))
    try:
        assert session.connector is not None
        assert session.connector._cleanup_closed_handle is not None
    finally:
        await session.close()
