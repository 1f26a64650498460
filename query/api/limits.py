"""Request limits of the HTTP API: a body size cap (413) and a per-key rate limit (429).

Both are plain ASGI middleware so they act before any body is parsed. The rate limit is
a token bucket per API key (per client address when no valid key is given), in this
process: behind several API processes each enforces it on its own share of the traffic.
It is on by default whenever keys are configured (:func:`rate_per_minute`).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable

from starlette.datastructures import Headers

from esrag.keys import identify, keyed
from esrag.settings import Settings
from query.api.asgi import ASGIApp, Message, Receive, Scope, Send, reply
from query.api.security import presented_key

EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


class BodySizeLimit:
    """413 for a request body over ``max_bytes`` (by Content-Length, or counted as it streams)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body over {self.max_bytes} bytes (ESRAG_MAX_BODY_BYTES)"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await reply(send, 413, detail)
                    return
        if any(name == b"content-length" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)  # the server holds the body to its Content-Length
            return
        # a streamed (chunked) body: read it up to the limit, then hand it on in one piece
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await reply(send, 413, detail)
                return
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}],
                                      receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}
    return receive


class TokenBuckets:
    """Token buckets by key: ``rate`` tokens a minute, at most ``burst`` stored."""

    def __init__(self, per_minute: int, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when a request may pass now, else the seconds until one token is back."""
        now = self.clock()
        with self.lock:
            tokens, last = self.buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                if len(self.buckets) > 100_000:  # forget idle clients rather than grow forever
                    self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 60 / self.rate}
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def client_key(scope: Scope, settings: Settings) -> str:
    """Who a request counts against: its key's name when the key is valid, else its client
    address (so that made-up keys cannot each get a fresh bucket)."""
    key = presented_key(Headers(scope=scope))
    principal = identify(settings, key) if key and keyed(settings) else None
    if principal is not None:
        return "key:" + hashlib.sha256(principal.name.encode()).hexdigest()[:32]
    client = scope.get("client") or ("?", 0)
    return f"ip:{client[0]}"


class RateLimit:
    """429 with Retry-After once a key has spent its bucket (health probes are exempt)."""

    def __init__(self, app: ASGIApp, per_minute: int, burst: int | None, settings: Settings):
        self.app = app
        self.buckets = TokenBuckets(per_minute, burst)
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in EXEMPT_PATHS:
            wait = self.buckets.take(client_key(scope, self.settings))
            if wait > 0:
                await reply(send, 429, "rate limit exceeded (ESRAG_RATE_LIMIT_PER_MINUTE); retry later",
                             [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
                return
        await self.app(scope, receive, send)


DEFAULT_KEYED_RATE = 600  # requests a minute per key when keys are configured and the setting is unset


def rate_per_minute(settings: Settings) -> int:
    """ESRAG_RATE_LIMIT_PER_MINUTE, or 600 when it is unset and the API has keys (0: off)."""
    if settings.rate_limit_per_minute is not None:
        return settings.rate_limit_per_minute
    return DEFAULT_KEYED_RATE if keyed(settings) else 0
