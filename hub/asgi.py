"""Small ASGI pieces shared by the hub's guards (the open-data portal's and the stewards' API's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def replay(body: bytes) -> Callable:
    """A receive callable that hands the already-read body to the app once, then reports a disconnect.

    A guard reads the body to check its size before the app runs; the app then reads it again through this.
    (The exchange's fast path has its own variant that waits instead of disconnecting: exchange.api._replay.)"""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
