"""The memory backend: the same streams, groups, leases and state as Redis, in one process.

For one process (and for tests of everything above the port). Bodies are kept as JSON text and
read back from it, as through Redis: no caller shares a dict with another, and a body Redis
could not carry fails here too. (JSON is also cheaper than copying the dicts.) Ids are
"<ms>-<seq>", strictly increasing within a stream, like Redis's.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netfleet.backends import keys
from netfleet.backends.base import Body, Message

CHANGES_MAXLEN = 10_000  # entries kept in a partition's change stream, as on Redis

Order = tuple[int, int]  # an id as (ms, seq), for comparing


@dataclass(frozen=True, slots=True)
class _Entry:
    order: Order
    id: str
    data: str  # the body, as JSON

    @property
    def body(self) -> dict[str, Any]:
        return _decode(self.data)


@dataclass
class _Group:
    last: Order = (0, 0)  # the last id handed out: everything up to it was delivered
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> consumer, count


@dataclass
class _Stream:
    entries: list[_Entry] = field(default_factory=list)
    groups: dict[str, _Group] = field(default_factory=dict)
    last: Order = (0, 0)  # the last id given out, kept when entries are trimmed

    def append(self, body: Body) -> None:
        ms = int(time.time() * 1000)
        # A clock stepping back must not make an id smaller: stay on the last ms, count on.
        self.last = (ms, 0) if ms > self.last[0] else (self.last[0], self.last[1] + 1)
        self.entries.append(_Entry(self.last, f"{self.last[0]}-{self.last[1]}",
                                   _encode(body)))

    def trim(self, maxlen: int | None) -> None:
        if maxlen is not None and len(self.entries) > maxlen:
            del self.entries[:len(self.entries) - maxlen]

    def after(self, order: Order) -> int:
        """Index of the first entry with an id greater than `order`."""
        if order >= self.last:  # the common case, a reader up to date: nothing to search
            return len(self.entries)
        return bisect.bisect_right(self.entries, order, key=lambda e: e.order)

    def find(self, entry_id: str) -> _Entry | None:
        order = _order(entry_id)
        index = bisect.bisect_left(self.entries, order, key=lambda e: e.order)
        if index < len(self.entries) and self.entries[index].order == order:
            return self.entries[index]
        return None


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self._partitions: int | None = None
        self._epoch: tuple[str, float] | None = None
        self._members: dict[str, dict[str, float]] = {}  # role -> member -> alive until
        self._statuses: dict[tuple[str, str], tuple[float, str]] = {}
        self._leases: dict[str, tuple[str, int, float]] = {}  # name -> holder, token, until
        self._fences: dict[str, int] = {}  # name -> last token handed out
        self._streams: dict[str, _Stream] = {}
        self._state: dict[int, dict[str, str]] = {}  # partition -> device -> entry as JSON
        # Readers waiting, by the streams they wait on: an append wakes only its stream's. A
        # reader registers before it sleeps and nothing runs between its look and that, so it
        # cannot miss an append.
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    async def init_cluster(self, partitions: int) -> int:
        if self._partitions is None:
            self._partitions = partitions
        if self._epoch is None:
            self._epoch = (uuid.uuid4().hex, time.time())
        return self._partitions

    async def epoch(self) -> tuple[str, float] | None:
        return self._epoch

    async def ping(self) -> None:
        return None

    # -- membership ------------------------------------------------------------------------
    async def heartbeat(self, role: str, member: str, ttl: float) -> None:
        self._members.setdefault(role, {})[member] = time.monotonic() + ttl

    async def put_status(self, role: str, member: str, status: Body, ttl: float) -> None:
        self._statuses[(role, member)] = (time.monotonic() + ttl, _encode(status))

    async def statuses(self, role: str, members: Sequence[str]) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        out = {}
        for member in members:
            found = self._statuses.get((role, member))
            if found is not None and found[0] > now:
                out[member] = _decode(found[1])
        return out

    async def leave(self, role: str, member: str) -> None:
        self._members.get(role, {}).pop(member, None)

    async def members(self, role: str) -> list[str]:
        now = time.monotonic()
        live = self._members.get(role, {})
        for member in [m for m, until in live.items() if until <= now]:
            del live[member]
        return sorted(live)

    # -- leases ----------------------------------------------------------------------------
    def _held(self, name: str) -> tuple[str, int] | None:
        held = self._leases.get(name)
        if held is None:
            return None
        if held[2] <= time.monotonic():
            del self._leases[name]
            return None
        return held[0], held[1]

    async def acquire(self, name: str, holder: str, ttl: float) -> int | None:
        if self._held(name) is not None:
            return None
        token = self._fences[name] = self._fences.get(name, 0) + 1
        self._leases[name] = (holder, token, time.monotonic() + ttl)
        return token

    async def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        if self._held(name) != (holder, token):
            return False
        self._leases[name] = (holder, token, time.monotonic() + ttl)
        return True

    async def release(self, name: str, holder: str, token: int) -> bool:
        if self._held(name) != (holder, token):
            return False
        del self._leases[name]
        return True

    async def lease(self, name: str) -> tuple[str, int] | None:
        return self._held(name)

    # -- streams ---------------------------------------------------------------------------
    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    def _append(self, name: str, bodies: Sequence[Body], maxlen: int | None) -> None:
        stream = self._stream(name)
        for body in bodies:
            stream.append(body)
        stream.trim(maxlen)

    def _appended(self, names: Collection[str]) -> None:
        for name in names:
            for waiter in self._waiting.pop(name, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def _wait(self, names: Collection[str], take: Callable[[], list[Message]],
                    block: float) -> list[Message]:
        """What `take` finds, waiting up to `block` seconds for appends to `names` until it
        finds some."""
        found = take()
        if found or block <= 0:
            return found
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(block):
                while not found:
                    waiter = loop.create_future()
                    for name in names:
                        self._waiting.setdefault(name, set()).add(waiter)
                    try:
                        await waiter
                    finally:
                        for name in names:
                            waiting = self._waiting.get(name)
                            if waiting is not None:
                                waiting.discard(waiter)
                    found = take()
        return found

    async def add(self, entries: Mapping[str, Sequence[Body]],
                  *, maxlen: int | None = None) -> None:
        for name, bodies in entries.items():
            self._append(name, bodies, maxlen)
        self._appended(entries)

    def _group(self, stream: _Stream, group: str) -> _Group:
        found = stream.groups.get(group)
        if found is None:  # created at the stream's start, as Redis's read does
            found = stream.groups[group] = _Group()
        return found

    def _take(self, group: str, consumer: str, streams: Sequence[str],
              count: int) -> list[Message]:
        out = []
        for name in streams:
            stream = self._stream(name)
            state = self._group(stream, group)
            start = stream.after(state.last)
            for entry in stream.entries[start:start + count]:
                state.pending[entry.id] = (consumer, 1)
                state.last = entry.order
                out.append(Message(name, entry.id, entry.body))
        return out

    async def read(self, group: str, consumer: str, streams: Sequence[str], *, count: int,
                   block: float) -> list[Message]:
        return await self._wait(streams, lambda: self._take(group, consumer, streams, count),
                                block)

    async def takeover(self, group: str, consumer: str, stream: str, *,
                       skip: Collection[str] = ()) -> list[Message]:
        log = self._stream(stream)
        state = self._group(log, group)
        out = []
        for entry_id in sorted(state.pending, key=_order):
            if entry_id in skip:
                continue
            entry = log.find(entry_id)
            if entry is None:  # trimmed away meanwhile: nothing left to hand over
                del state.pending[entry_id]
                continue
            deliveries = state.pending[entry_id][1] + 1
            state.pending[entry_id] = (consumer, deliveries)
            out.append(Message(stream, entry_id, entry.body, deliveries))
        return out

    async def ack(self, group: str, stream: str, ids: Sequence[str]) -> None:
        log = self._streams.get(stream)
        state = None if log is None else log.groups.get(group)
        if state is not None:
            for entry_id in ids:
                state.pending.pop(entry_id, None)

    async def ack_all(self, group: str, entries: Mapping[str, Sequence[str]]) -> None:
        for stream, ids in entries.items():
            await self.ack(group, stream, ids)

    async def trim_done(self, group: str, stream: str) -> None:
        log = self._streams.get(stream)
        state = None if log is None else log.groups.get(group)
        if log is None or state is None:
            return
        bound = min((_order(i) for i in state.pending), default=state.last)
        del log.entries[:bisect.bisect_left(log.entries, bound, key=lambda e: e.order)]

    async def backlog(self, group: str, stream: str) -> int:
        log = self._streams.get(stream)
        if log is None:
            return 0
        state = log.groups.get(group, _Group())  # a missing group would start at the start
        return len(log.entries) - log.after(state.last) + len(state.pending)

    async def length(self, stream: str) -> int:
        log = self._streams.get(stream)
        return 0 if log is None else len(log.entries)

    def _after(self, name: str, position: str, count: int) -> list[Message]:
        log = self._streams.get(name)
        if log is None:
            return []
        start = log.after(_order(position))
        return [Message(name, e.id, e.body)
                for e in log.entries[start:start + count]]

    async def entries(self, stream: str, *, after: str = "0", count: int = 100) -> list[Message]:
        return self._after(stream, after, count)

    # -- desired state ---------------------------------------------------------------------
    async def set_state(self, partition: int, entries: Mapping[str, Body | None]) -> None:
        if not entries:
            return
        state = self._state.setdefault(partition, {})
        for device, entry in entries.items():
            if entry is None:
                state.pop(device, None)
            else:
                state[device] = _encode(entry)
        self._append(keys.state_changes(partition),
                     [{"device": device, "entry": entry} for device, entry in entries.items()],
                     CHANGES_MAXLEN)
        self._appended([keys.state_changes(partition)])

    async def replace_state(self, partition: int, entries: Mapping[str, Body]) -> None:
        self._state[partition] = {d: _encode(e) for d, e in entries.items()}
        self._append(keys.state_changes(partition), [{"snapshot": True}], CHANGES_MAXLEN)
        self._appended([keys.state_changes(partition)])

    async def load_state(self, partition: int) -> tuple[dict[str, dict[str, Any]], str]:
        changes = self._streams.get(keys.state_changes(partition))
        position = changes.entries[-1].id if changes and changes.entries else "0-0"
        return {d: _decode(e) for d, e in self._state.get(partition, {}).items()}, position

    async def follow(self, positions: Mapping[str, str], *, count: int,
                     block: float) -> list[Message]:
        def take() -> list[Message]:
            return [m for name, position in positions.items()
                    for m in self._after(name, position, count)]

        return await self._wait(positions, take, block)

    async def close(self) -> None:
        return None


def _encode(body: Body) -> str:
    return json.dumps(body, separators=(",", ":"))


def _decode(data: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(data)
    return body


def _order(entry_id: str) -> Order:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
