"""The aiohttp application of contracts/web-api.md: the routes of each module, the error
and security-header middlewares, and a shutdown that ends every event stream at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.web import admin_api, read_api, sim_api
from gateway.web.http import GATEWAY, LATENCIES, error
from gateway.web.image_routes import add_image_routes
from gateway.web.page import add_page_routes
from gateway.web.prometheus import StageLatencies

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["GATEWAY", "make_app"]

# No inline script or style anywhere (the page's script and style are served files), no
# framing, no form posts, images from the gateway only (blob: for those fetched with the
# token): text that came from outside cannot run even if it were set as HTML somewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        if request.method != "GET":
            request.app[GATEWAY].changed()  # what it changed shows in the next status
        return response
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        request.app.logger.exception("error serving %s", request.path)
        return error(500, "internal error")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=64 * 1024)
    app[GATEWAY] = gateway
    app[LATENCIES] = StageLatencies()
    app[read_api.EVENT_PAGES] = {}
    app.on_response_prepare.append(_security_headers)  # errors and streams included
    add_page_routes(app)  # "/" and the page's static files (gateway/web/page.py)
    read_api.add_routes(app.router)
    admin_api.add_routes(app.router)
    sim_api.add_routes(app.router)
    add_image_routes(app)  # a decision's crop and frame (gateway/web/image_routes.py)

    async def wake_streams(app: web.Application) -> None:
        # an open status page would otherwise hold a SIGTERM shutdown for 30 s
        gateway.stopping.set()
        gateway.notify_commit()

    app.on_shutdown.append(wake_streams)
    return app
