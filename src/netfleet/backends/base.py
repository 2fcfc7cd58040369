"""The backend port: how work goes down to agents and observations come back up.

Two implementations: `memory` (one process, the default) and `redis` (Redis Streams with
consumer groups, leases and a membership set, for a cluster). Everything above this port —
agents, the recorder, the dispatcher — is the same code on both.

Streams are append-only logs of JSON-able dicts, each entry with an id that increases within
its stream. A consumer group hands every entry to one consumer; the entry stays *pending*
(delivered, not acknowledged) until acknowledged, so an entry whose consumer died is taken
over by the next owner (`takeover`) with its delivery count, in id order.

Leases name an owner for a while (`ttl` seconds) and carry a fencing token that grows with
every acquisition of that name, so work done under an older token can be told apart.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Body = Mapping[str, Any]  # a stream entry: JSON-able values only


@dataclass(frozen=True, slots=True)
class Message:
    stream: str
    id: str  # "<ms>-<seq>", increasing within the stream
    body: dict[str, Any]
    deliveries: int = 1  # times the group handed it out; 2+ means a consumer died with it


class Backend(Protocol):
    name: str  # "memory" or "redis"

    async def init_cluster(self, partitions: int) -> int:
        """Fix the partition count (and start an epoch) the first time any process asks;
        return the count in force (a later process asking for another count gets the first
        one)."""
        ...

    async def epoch(self) -> tuple[str, float] | None:
        """The cluster's epoch: an id `init_cluster` made when it first ran, and when (epoch
        seconds). None when the backend lost it (Redis restarted without its data)."""
        ...

    async def ping(self) -> None:
        """Raise BackendUnavailable unless the backend answers."""
        ...

    # -- membership ------------------------------------------------------------------------
    async def heartbeat(self, role: str, member: str, ttl: float) -> None:
        """`member` of `role` is alive for `ttl` more seconds."""
        ...

    async def leave(self, role: str, member: str) -> None: ...

    async def put_status(self, role: str, member: str, status: Body, ttl: float) -> None:
        """What `member` reports about itself (counters), kept for `ttl` seconds."""
        ...

    async def statuses(self, role: str, members: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The last status of each of these members that has one."""
        ...

    async def members(self, role: str) -> list[str]:
        """Live members of `role` (heartbeat not run out), sorted."""
        ...

    # -- leases ----------------------------------------------------------------------------
    async def acquire(self, name: str, holder: str, ttl: float) -> int | None:
        """Take the lease if nobody holds it; return the new fencing token (greater than any
        before for this name), or None when it is held (by anyone, `holder` included)."""
        ...

    async def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        """Extend the lease by `ttl` from now if `holder` still holds it with `token`."""
        ...

    async def release(self, name: str, holder: str, token: int) -> bool:
        """Give the lease up if `holder` holds it with `token`; True if it did."""
        ...

    async def lease(self, name: str) -> tuple[str, int] | None:
        """(holder, token) of the lease, or None when nobody holds it."""
        ...

    # -- streams ---------------------------------------------------------------------------
    async def add(self, entries: Mapping[str, Sequence[Body]],
                  *, maxlen: int | None = None) -> None:
        """Append entries to streams (stream -> bodies, kept in order), in one round trip.
        `maxlen` trims each stream to about that many entries (the oldest go)."""
        ...

    async def read(self, group: str, consumer: str, streams: Sequence[str], *, count: int,
                   block: float) -> list[Message]:
        """Entries never yet handed to `group`, oldest first within each stream, at most
        `count` per stream; now pending for `consumer`. Waits up to `block` seconds when none
        is there (0: do not wait). A missing group is created at the stream's start."""
        ...

    async def takeover(self, group: str, consumer: str, stream: str, *,
                       skip: Collection[str] = ()) -> list[Message]:
        """Every entry of `stream` pending in `group` for any consumer, moved to `consumer`,
        in id order, each delivery count raised by one; entries whose id is in `skip` are left
        as they are. Entries trimmed away meanwhile are acknowledged and left out."""
        ...

    async def ack(self, group: str, stream: str, ids: Sequence[str]) -> None: ...

    async def ack_all(self, group: str, entries: Mapping[str, Sequence[str]]) -> None:
        """`ack` for several streams (stream -> ids), in one round trip."""
        ...

    async def trim_done(self, group: str, stream: str) -> None:
        """Drop the entries `group` has been handed and has acknowledged (those before its
        first pending entry, or before its last delivered one when none is pending): a work
        or observation stream stays as long as what is in flight, not as its history."""
        ...

    async def backlog(self, group: str, stream: str) -> int:
        """Entries not yet handed to `group` plus entries pending in it."""
        ...

    async def length(self, stream: str) -> int: ...

    async def entries(self, stream: str, *, after: str = "0", count: int = 100) -> list[Message]:
        """Entries after id `after` (no group, nothing changes): for tools and tests."""
        ...

    # -- desired state ---------------------------------------------------------------------
    async def set_state(self, partition: int, entries: Mapping[str, Body | None]) -> None:
        """Set (or, for None, delete) devices' entries in a partition's snapshot, and append
        each change, with the whole new entry, to the partition's change stream; atomically."""
        ...

    async def replace_state(self, partition: int, entries: Mapping[str, Body]) -> None:
        """Replace a partition's whole snapshot (devices left out are removed) and append a
        `{"snapshot": true}` change telling followers to load it again; atomically."""
        ...

    async def load_state(self, partition: int) -> tuple[dict[str, dict[str, Any]], str]:
        """The partition's snapshot and the id of the last change it includes (follow from
        there), read atomically."""
        ...

    async def follow(self, positions: Mapping[str, str], *, count: int,
                     block: float) -> list[Message]:
        """Entries after the given id of each stream (no group), waiting up to `block`
        seconds when there are none."""
        ...

    async def close(self) -> None: ...
