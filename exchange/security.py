"""Security plumbing shared by the exchange API, its pages and `hub serve`: headers, size limits, tokens.

- `GuardMiddleware`: a plain ASGI middleware (no per-request task or body copy unless a body is sent): URL and body
  size limits answered 413/414 in Chinese, and security headers on every response.
- Subject-access tokens `sat1.<subject HMAC>.<expiry>.<mac>`: issued to a data subject after real-name checks
  (e.g. by the government service portal), they carry only the subject's HMAC, never the ID, and are verified
  with an HMAC under the hub's index key — nothing is stored.
- Page sessions and CSRF tokens: HMACs of the API key id and a nonce; cookies HttpOnly, SameSite=Strict.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                 b"script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TOKEN_PREFIX = "sat1"


class GuardMiddleware:
    """URL/body size limits and security headers for every HTTP response of the wrapped app."""

    def __init__(self, app: Any, max_body_bytes: int = 256 * 1024, max_url_bytes: int = 4096) -> None:
        """Wrap an ASGI app."""
        self.app = app
        self.max_body = max_body_bytes
        self.max_url = max_url_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """Refuse oversized requests, then pass on with the headers added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if url_bytes > self.max_url:
            await plain_error(send, 414, "请求地址过长")
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_body):
                await plain_error(send, 413, f"请求体过大（上限 {self.max_body} 字节）")
                return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            receive = self._limited(receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in present]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except _TooLarge:
            await plain_error(send, 413, f"请求体过大（上限 {self.max_body} 字节）")

    def _limited(self, receive: Callable, send: Callable) -> Callable:
        """A receive that stops a chunked body as soon as it exceeds the limit."""
        seen = 0

        async def wrapped() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        return wrapped


class _TooLarge(Exception):
    """A streamed body went over the limit."""


async def plain_error(send: Callable, status: int, message: str) -> None:
    """A JSON error answered by the middleware itself, with the security headers."""
    body = json.dumps({"error": {"status": status, "message": message}}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------
# Subject-access tokens
# ---------------------------------------------------------------------------------------------


def _mac(text: str) -> str:
    """HMAC of a text under the hub's index key (the key ring), hex."""
    from hub.crypto import get_cipher

    return get_cipher().index_hash(text)


def subject_token(subject: str, valid_seconds: int = 3600, now: float | None = None) -> str:
    """A token letting a data subject (resident ID or USCC, or its HMAC) see who looked at their data."""
    from catalog.audit import subject_key

    key = subject_key(subject)
    expires = int((now if now is not None else time.time()) + valid_seconds)
    return f"{TOKEN_PREFIX}.{key}.{expires}.{_mac(f'subject-access|{key}|{expires}')}"


def subject_of_token(token: str | None, now: float | None = None) -> str | None:
    """The subject HMAC of a valid, unexpired token; None otherwise."""
    if not token or len(token) > 300:
        return None
    parts = token.strip().split(".")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not HEX64.match(parts[1]) or not parts[2].isdigit():
        return None
    if int(parts[2]) < (now if now is not None else time.time()):
        return None
    expected = _mac(f"subject-access|{parts[1]}|{parts[2]}")
    return parts[1] if hmac.compare_digest(expected, parts[3]) else None


# ---------------------------------------------------------------------------------------------
# Page sessions and CSRF
# ---------------------------------------------------------------------------------------------


def csrf_token(session: str) -> str:
    """The CSRF token bound to a page session (double submit: the form must echo it)."""
    return _mac(f"csrf|{session}")[:32]


def csrf_ok(session: str | None, token: str | None) -> bool:
    """Whether a submitted form carries the session's CSRF token."""
    return bool(session and token) and hmac.compare_digest(csrf_token(session), token)


__all__ = ["GuardMiddleware", "SECURITY_HEADERS", "csrf_ok", "csrf_token", "plain_error", "subject_of_token", "subject_token"]
