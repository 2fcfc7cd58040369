"""Group commit: many small writes from many coroutines in one transaction.

SQLite has one writer at a time, so a thousand deployment nodes each committing its own
transition queue behind one another (p50 2.7 s per write at 500 nodes, `netfleet bench
deploy`). Here each caller hands over its write as a function of the transaction and awaits
its own result; whatever arrived meanwhile is committed together. A write that raises a
NetfleetError (an illegal transition, a node that is gone) fails alone — it raised before it
wrote — while any other error fails the batch it was in, and every caller in it hears so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from netfleet.domain.errors import NetfleetError
from netfleet.store.db import Store, Tx

T = TypeVar("T")
MAX_BATCH = 500


class WriteBatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: list[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0

    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `work(tx)` in the next batch's transaction; its result once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="netfleet-write-batcher")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # writes handed over in this same moment join the batch
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            try:
                async with self.store.transaction() as tx:
                    for work, future in batch:
                        try:
                            outcomes.append((future, await work(tx), None))
                        except NetfleetError as exc:
                            outcomes.append((future, None, exc))
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception)
                                             else asyncio.CancelledError())
                        future.exception()  # a caller that gave up must not log "never retrieved"
                if not isinstance(exc, Exception):
                    raise
                continue
            self.batches += 1
            self.writes += len(batch)
            for future, result, error in outcomes:
                if future.done():
                    continue
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
                    future.exception()

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
