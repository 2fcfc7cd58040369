"""Webhooks to a real HTTP receiver on loopback: signed, retried, given up on politely."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from netfleet.services.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify
from tests.conftest import free_port

SECRET = b"shared-secret"


class Receiver:
    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.fail_first = fail_first
        self.status = status
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def endpoint(self, request: Request) -> Response:
        self.seen.append((dict(request.headers), await request.body()))
        if len(self.seen) <= self.fail_first:
            return Response(status_code=self.status)
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await task


async def test_delivery_is_signed_and_verifiable() -> None:
    receiver = Receiver()
    sender = WebhookSender(SECRET)
    async with serving(receiver) as url:
        assert await sender.deliver(url, "job.finished", {"id": "j1", "status": "succeeded"})
        await sender.close()
    [(headers, body)] = receiver.seen
    assert verify(SECRET, headers[TIMESTAMP_HEADER.lower()], body,
                  headers[SIGNATURE_HEADER.lower()])
    assert not verify(b"wrong", headers[TIMESTAMP_HEADER.lower()], body,
                      headers[SIGNATURE_HEADER.lower()])
    assert not verify(SECRET, headers[TIMESTAMP_HEADER.lower()], body + b" ",
                      headers[SIGNATURE_HEADER.lower()])


async def test_failures_are_retried_with_backoff_then_delivered() -> None:
    receiver = Receiver(fail_first=2)
    sender = WebhookSender(SECRET, base_delay=0.05)
    async with serving(receiver) as url:
        assert await sender.deliver(url, "job.finished", {"id": "j2"})
        await sender.close()
    assert len(receiver.seen) == 3
    deliveries = {h["x-netfleet-delivery"] for h, _ in receiver.seen}
    assert len(deliveries) == 1  # the same delivery id on every retry


@pytest.mark.parametrize(("status", "expected_calls"), [(400, 1), (503, 3)])
async def test_gives_up_on_client_errors_at_once_and_on_server_errors_after_attempts(
        status: int, expected_calls: int) -> None:
    receiver = Receiver(fail_first=99, status=status)
    sender = WebhookSender(SECRET, attempts=3, base_delay=0.02)
    async with serving(receiver) as url:
        assert not await sender.deliver(url, "job.finished", {"id": "j3"})
        await sender.close()
    assert len(receiver.seen) == expected_calls and sender.failed == 1


async def test_unreachable_receiver_is_a_counted_failure_not_an_exception() -> None:
    sender = WebhookSender(SECRET, attempts=2, base_delay=0.01)
    task: Any = sender.fire(f"http://127.0.0.1:{free_port()}/hook", "job.finished", {})
    assert await task is False
    await sender.close()
