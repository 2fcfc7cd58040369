"""The memory backend: the same streams, groups, leases and state as Redis, in one process.

For one process (and for tests of everything above the port): no serialisation, but bodies
are copied on the way in and out, as JSON through Redis would, so no caller shares a dict
with another. Ids are "<ms>-<seq>", increasing within a stream, like Redis's.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netfleet.backends import keys
from netfleet.backends.base import Body, Message


@dataclass
class _Group:
    delivered: int = 0  # index into the stream's entries: everything before was handed out
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> consumer, count


@dataclass
class _Stream:
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    trimmed: int = 0  # entries dropped from the front (indexes shift by this much)
    groups: dict[str, _Group] = field(default_factory=dict)
    last: tuple[int, int] = (0, 0)

    def next_id(self) -> str:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self.last
        self.last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self.last[0]}-{self.last[1]}"

    def index(self, entry_id: str) -> int | None:
        lo, hi, key = 0, len(self.entries), _order(entry_id)
        while lo < hi:
            mid = (lo + hi) // 2
            if _order(self.entries[mid][0]) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.entries) and self.entries[lo][0] == entry_id:
            return lo
        return None

    def after(self, entry_id: str) -> int:
        """Index of the first entry with an id greater than `entry_id`."""
        key = _order(entry_id)
        lo, hi = 0, len(self.entries)
        while lo < hi:
            mid = (lo + hi) // 2
            if _order(self.entries[mid][0]) <= key:
                lo = mid + 1
            else:
                hi = mid
        return lo


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self._partitions: int | None = None
        self._members: dict[str, dict[str, float]] = {}
        self._leases: dict[str, tuple[str, int, float]] = {}  # name -> holder, token, expiry
        self._fences: dict[str, int] = {}
        self._streams: dict[str, _Stream] = {}
        self._state: dict[int, dict[str, dict[str, Any]]] = {}
        self._added = asyncio.Condition()

    async def init_cluster(self, partitions: int) -> int:
        if self._partitions is None:
            self._partitions = partitions
        return self._partitions

    async def ping(self) -> None:
        return None

    # -- membership ------------------------------------------------------------------------
    async def heartbeat(self, role: str, member: str, ttl: float) -> None:
        self._members.setdefault(role, {})[member] = time.monotonic() + ttl

    async def leave(self, role: str, member: str) -> None:
        self._members.get(role, {}).pop(member, None)

    async def members(self, role: str) -> list[str]:
        now = time.monotonic()
        live = self._members.setdefault(role, {})
        for member in [m for m, until in live.items() if until <= now]:
            del live[member]
        return sorted(live)

    # -- leases ----------------------------------------------------------------------------
    def _held(self, name: str) -> tuple[str, int, float] | None:
        held = self._leases.get(name)
        if held is not None and held[2] <= time.monotonic():
            del self._leases[name]
            return None
        return held

    async def acquire(self, name: str, holder: str, ttl: float) -> int | None:
        if self._held(name) is not None:
            return None
        token = self._fences[name] = self._fences.get(name, 0) + 1
        self._leases[name] = (holder, token, time.monotonic() + ttl)
        return token

    async def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        held = self._held(name)
        if held is None or held[:2] != (holder, token):
            return False
        self._leases[name] = (holder, token, time.monotonic() + ttl)
        return True

    async def release(self, name: str, holder: str, token: int) -> bool:
        held = self._held(name)
        if held is None or held[:2] != (holder, token):
            return False
        del self._leases[name]
        return True

    async def lease(self, name: str) -> tuple[str, int] | None:
        held = self._held(name)
        return None if held is None else (held[0], held[1])

    # -- streams ---------------------------------------------------------------------------
    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    def _append(self, name: str, body: Body, maxlen: int | None = None) -> str:
        stream = self._stream(name)
        entry_id = stream.next_id()
        stream.entries.append((entry_id, copy.deepcopy(dict(body))))
        if maxlen is not None and len(stream.entries) > maxlen:
            over = len(stream.entries) - maxlen
            del stream.entries[:over]
            stream.trimmed += over
            for group in stream.groups.values():
                group.delivered = max(0, group.delivered - over)
        return entry_id

    async def add(self, entries: Mapping[str, Sequence[Body]],
                  *, maxlen: int | None = None) -> None:
        for name, bodies in entries.items():
            for body in bodies:
                self._append(name, body, maxlen)
        async with self._added:
            self._added.notify_all()

    def _group(self, name: str, group: str) -> tuple[_Stream, _Group]:
        stream = self._stream(name)
        found = stream.groups.get(group)
        if found is None:
            found = stream.groups[group] = _Group()
        return stream, found

    def _take(self, group: str, consumer: str, streams: Sequence[str],
              count: int) -> list[Message]:
        out = []
        for name in streams:
            stream, state = self._group(name, group)
            new = stream.entries[state.delivered:state.delivered + count]
            state.delivered += len(new)
            for entry_id, body in new:
                state.pending[entry_id] = (consumer, 1)
                out.append(Message(name, entry_id, copy.deepcopy(body)))
        return out

    async def read(self, group: str, consumer: str, streams: Sequence[str], *, count: int,
                   block: float) -> list[Message]:
        found = self._take(group, consumer, streams, count)
        if found or block <= 0:
            return found
        deadline = time.monotonic() + block
        async with self._added:
            while not found:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._added.wait(), left)
                except TimeoutError:
                    break
                found = self._take(group, consumer, streams, count)
        return found or self._take(group, consumer, streams, count)

    async def takeover(self, group: str, consumer: str, stream: str) -> list[Message]:
        log, state = self._group(stream, group)
        out = []
        for entry_id in sorted(state.pending, key=_order):
            index = log.index(entry_id)
            if index is None:  # trimmed away meanwhile: nothing to hand over
                del state.pending[entry_id]
                continue
            count = state.pending[entry_id][1] + 1
            state.pending[entry_id] = (consumer, count)
            out.append(Message(stream, entry_id, copy.deepcopy(log.entries[index][1]), count))
        return out

    async def ack(self, group: str, stream: str, ids: Sequence[str]) -> None:
        _, state = self._group(stream, group)
        for entry_id in ids:
            state.pending.pop(entry_id, None)

    async def backlog(self, group: str, stream: str) -> int:
        log, state = self._group(stream, group)
        return len(log.entries) - state.delivered + len(state.pending)

    async def length(self, stream: str) -> int:
        return len(self._stream(stream).entries)

    async def entries(self, stream: str, *, after: str = "0", count: int = 100) -> list[Message]:
        log = self._stream(stream)
        start = log.after(after if after != "0" else "0-0")
        return [Message(stream, i, copy.deepcopy(b))
                for i, b in log.entries[start:start + count]]

    # -- desired state ---------------------------------------------------------------------
    async def set_state(self, partition: int, entries: Mapping[str, Body | None]) -> None:
        state = self._state.setdefault(partition, {})
        for device, entry in entries.items():
            if entry is None:
                state.pop(device, None)
            else:
                state[device] = copy.deepcopy(dict(entry))
            self._append(keys.state_changes(partition), {"device": device, "entry": entry},
                         maxlen=10_000)
        async with self._added:
            self._added.notify_all()

    async def replace_state(self, partition: int, entries: Mapping[str, Body]) -> None:
        self._state[partition] = {d: copy.deepcopy(dict(e)) for d, e in entries.items()}
        self._append(keys.state_changes(partition), {"snapshot": True}, maxlen=10_000)
        async with self._added:
            self._added.notify_all()

    async def load_state(self, partition: int) -> tuple[dict[str, dict[str, Any]], str]:
        changes = self._stream(keys.state_changes(partition)).entries
        return (copy.deepcopy(self._state.get(partition, {})),
                changes[-1][0] if changes else "0-0")

    def _follow(self, positions: Mapping[str, str], count: int) -> list[Message]:
        out = []
        for name, position in positions.items():
            log = self._stream(name)
            start = log.after(position)
            out += [Message(name, i, copy.deepcopy(b))
                    for i, b in log.entries[start:start + count]]
        return out

    async def follow(self, positions: Mapping[str, str], *, count: int,
                     block: float) -> list[Message]:
        found = self._follow(positions, count)
        if found or block <= 0:
            return found
        deadline = time.monotonic() + block
        async with self._added:
            while not found:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._added.wait(), left)
                except TimeoutError:
                    break
                found = self._follow(positions, count)
        return found

    async def close(self) -> None:
        return None


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
