"""Webhooks: an HTTP POST per event, signed with HMAC-SHA256, retried with backoff.

A receiver checks `X-Netfleet-Signature: sha256=<hex>` over `<timestamp>.<body>` with the
shared secret (see `verify`), and may drop deliveries whose timestamp is too old (replays).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

import httpx
import structlog

log = structlog.get_logger("netfleet.webhooks")

SIGNATURE_HEADER = "X-Netfleet-Signature"
TIMESTAMP_HEADER = "X-Netfleet-Timestamp"
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str,
           max_age: float = 300.0) -> bool:
    """True if `signature` is ours for this body and the timestamp is fresh."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender:
    """Delivers events in the background; a slow or dead receiver never blocks the caller."""

    def __init__(self, secret: bytes, *, attempts: int = 5, base_delay: float = 0.5,
                 max_delay: float = 30.0, timeout: float = 10.0, concurrency: int = 16) -> None:
        self._secret = secret
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._client = httpx.AsyncClient(timeout=timeout)
        self._gate = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[bool]] = set()
        self.delivered = 0
        self.failed = 0

    def fire(self, url: str, event: str, payload: dict[str, Any]) -> asyncio.Task[bool]:
        task = asyncio.create_task(self.deliver(url, event, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def deliver(self, url: str, event: str, payload: dict[str, Any]) -> bool:
        body = json.dumps({"event": event, "data": payload}, default=str).encode()
        delivery = uuid.uuid4().hex
        async with self._gate:
            for attempt in range(1, self.attempts + 1):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "X-Netfleet-Event": event,
                    "X-Netfleet-Delivery": delivery,
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                }
                try:
                    response = await self._client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}"
                else:
                    if response.status_code < 300:
                        self.delivered += 1
                        return True
                    outcome = f"HTTP {response.status_code}"
                    if response.status_code not in RETRYABLE:
                        break
                if attempt < self.attempts:
                    delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            self.failed += 1
            log.warning("webhook not delivered", url=url, event_type=event, delivery=delivery,
                        outcome=outcome, attempts=attempt)
            return False

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
