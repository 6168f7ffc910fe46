"""One ASGI application for `hub serve`: the exchange (API + pages), the open-data portal and the stewards' queue.

统一入口：共享交换接口与页面（/exchange/…，OpenAPI /openapi.json）、开放数据门户（/opendata/…，CKAN /api/3/action/…）、
部门数据专员工单（/quality/…，/api/quality/…）。

Dispatch is by path prefix to three separate apps (not Starlette mounts), so each keeps its own paths, error
handlers and middleware: the portal keeps its PortalGuard (rate limit, size limits, headers) and is the only
public part; the exchange and the stewards' app require their own credentials on every route and sit behind
GuardMiddleware (size limits, security headers). The exchange's hot route (person lookup) is answered by
exchange.api.FastLookup, a pure-ASGI path in front of its FastAPI app that hands every other case to the app.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from exchange.security import GuardMiddleware

EXCHANGE_PATHS = ("/exchange", "/openapi.json", "/docs")
QUALITY_PATHS = ("/quality", "/api/quality")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a path is one of the prefixes or below one."""
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class HubApp:
    """Path dispatcher over the three apps (lifespan events go to all of them)."""

    def __init__(self, exchange: Any, portal: Any, quality: Any | None) -> None:
        """The wrapped apps."""
        self.exchange, self.portal, self.quality = exchange, portal, quality

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """Route one connection by path."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        if _under(path, EXCHANGE_PATHS):
            await self.exchange(scope, receive, send)
        elif self.quality is not None and _under(path, QUALITY_PATHS):
            await self.quality(scope, receive, send)
        else:
            await self.portal(scope, receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        """Accept startup and shutdown; on shutdown flush and sign this worker's audit chain."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                from catalog.audit import close_writers

                close_writers()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(engine: sa.Engine | None = None, data_root: Path | str | None = None, *, with_quality: bool = True) -> HubApp:
    """The hub's web application over one database and data root (default: the settings')."""
    from exchange.api import FastLookup, create_exchange_api
    from exchange.pages import add_pages
    from hub.db import engine_for
    from hub.settings import get_settings
    from opendata.portal import create_portal

    settings = get_settings()
    engine = engine or engine_for(settings.database_url)
    exchange = create_exchange_api(engine)
    add_pages(exchange, engine)
    portal = create_portal(Path(data_root or settings.data_root), engine)
    quality = None
    if with_quality:
        from quality.api import create_app as create_quality

        quality = GuardMiddleware(create_quality(engine))
    return HubApp(GuardMiddleware(FastLookup(exchange)), portal, quality)


def app_factory() -> HubApp:
    """Factory for uvicorn workers (`hub.web:app_factory`, factory=True): each worker builds its own app,
    so each gets its own database pool, authoriser snapshot and audit chain."""
    import gc
    import sys

    from catalog.access import reset_caches
    from hub.db import dispose_engines

    dispose_engines()  # never share a pooled connection inherited from a parent process
    reset_caches()
    # The audit flusher thread and the event loop share the GIL; a 1 ms switch interval (default 5 ms) stops the
    # loop from waiting a whole interval after each database call that released it (measured: +35 % requests/s).
    sys.setswitchinterval(0.001)
    app = create_app()
    # Everything built so far (catalogue, routes, models, SQLAlchemy metadata) lives as long as the worker: move it
    # out of the cyclic collector's reach, so a full collection scans only what requests left behind instead of
    # pausing every request in flight for the whole heap.
    gc.collect()
    gc.freeze()
    return app


__all__ = ["HubApp", "app_factory", "create_app"]
